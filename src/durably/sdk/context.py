"""What a handler receives: the Context family and the durable futures it hands out.

Every handler gets the same implementation; the class names say what a handler of each kind may do, and
the runtime refuses the rest (state writes from a shared handler, state in a plain service, promises
outside a workflow).
"""

from __future__ import annotations

import random as _random
import typing
import uuid as _uuid
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.protocol.ids import awakeable_id
from durably.sdk.attempt import IN_RUN, Attempt, AttemptFinishedEvent, pb_failure_to_error
from durably.sdk.errors import TerminalError, VMError
from durably.sdk.input_check import input_problem, is_checked
from durably.sdk.options import RunOptions
from durably.sdk.output_check import encode_or_fail
from durably.sdk.scope import FLOW_HEADERS, ScopedContext
from durably.sdk.serde import BytesSerde, DefaultSerde, Serde, serde_for
from durably.sdk.service import Handler, handler_of
from durably.sdk.vm import notification_value, signal_handle

T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    """The invocation's request: its id, the caller's headers and the raw input body."""

    id: str
    headers: dict[str, str]
    attempt_headers: dict[str, str]
    body: bytes
    idempotency_key: str | None = None
    attempt_finished_event: AttemptFinishedEvent | None = None
    scope: str | None = None
    limit_key: str | None = None


class DurableFuture(Generic[T]):
    """A journaled result that may not be there yet. `await` it; it is lazy until awaited."""

    def __init__(self, ctx: Context, handle: int, decode: Callable[[Any], T]) -> None:
        self._ctx = ctx
        self.handle = handle
        self._decode = decode

    def is_completed(self) -> bool:
        """Whether the result is already in the journal."""
        return self._ctx._attempt.vm.is_completed(self.handle)

    def _value(self) -> T:
        msg = self._ctx._attempt.vm.result(self.handle)
        value = notification_value(msg)
        if isinstance(value, pb.Failure):
            raise pb_failure_to_error(value)
        return self._decode(value)

    def __await__(self) -> Generator[Any, None, T]:
        self._ctx._check_not_in_run("await a durable future")
        if not self._ctx._attempt.vm.is_completed(self.handle):
            yield from self._ctx._attempt.wait_for([self.handle]).__await__()
        return self._value()


class RunFuture(DurableFuture[T]):
    """The future of a `ctx.run` step."""


class CallFuture(DurableFuture[T]):
    """The result of a call to another handler; also knows the callee's invocation id."""

    def __init__(self, ctx: Context, handle: int, decode: Callable[[Any], T], id_handle: int) -> None:
        super().__init__(ctx, handle, decode)
        self._id = DurableFuture(ctx, id_handle, lambda v: v)

    async def invocation_id(self) -> str:
        """The callee's invocation id (known once the runtime accepted the call)."""
        return await self._id

    async def cancel_invocation(self) -> None:
        """Cancel the callee."""
        self._ctx.cancel_invocation(await self.invocation_id())


class SendHandle:
    """A one-way call: the callee runs on its own; this only knows its invocation id."""

    def __init__(self, ctx: Context, id_handle: int) -> None:
        self._ctx = ctx
        self._id = DurableFuture(ctx, id_handle, lambda v: v)

    async def invocation_id(self) -> str:
        """The callee's invocation id."""
        return await self._id

    async def cancel_invocation(self) -> None:
        """Cancel the callee."""
        self._ctx.cancel_invocation(await self.invocation_id())


class DurablePromise(Generic[T]):
    """A workflow's durable promise: any handler of the workflow may await, peek, resolve or reject it."""

    def __init__(self, ctx: Context, name: str, serde: Serde[T]) -> None:
        self._ctx = ctx
        self.name = name
        self._serde = serde

    def value(self) -> DurableFuture[T]:
        """Wait for the promise's value (raises TerminalError if it was rejected)."""
        self._ctx._check_not_in_run("await a promise")
        cmd = pb.GetPromiseCommandMessage(key=self.name)
        handle = self._ctx._vm_call(self._ctx._attempt.vm.sys_completable, m.GET_PROMISE, cmd)
        return DurableFuture(self._ctx, handle, self._serde.deserialize)

    def __await__(self) -> Generator[Any, None, T]:
        return self.value().__await__()

    async def peek(self) -> T | None:
        """The value if the promise is resolved, None if it is not yet (raises if it was rejected)."""
        self._ctx._check_not_in_run("peek a promise")
        cmd = pb.PeekPromiseCommandMessage(key=self.name)
        handle = self._ctx._vm_call(self._ctx._attempt.vm.sys_completable, m.PEEK_PROMISE, cmd)
        return await DurableFuture(self._ctx, handle, lambda v: None if v is None else self._serde.deserialize(v))

    def resolve(self, value: T) -> DurableFuture[None]:
        """Resolve the promise; awaiting the result raises TerminalError 409 if it was already completed."""
        self._ctx._check_not_in_run("resolve a promise")
        cmd = pb.CompletePromiseCommandMessage(key=self.name)
        cmd.completion_value.content = encode_or_fail(self._serde, value, f"promise '{self.name}' was resolved with",
                                                      "pass a serde to ctx.promise", verb="resolve it with")
        handle = self._ctx._vm_call(self._ctx._attempt.vm.sys_completable, m.COMPLETE_PROMISE, cmd)
        return DurableFuture(self._ctx, handle, lambda _: None)

    def reject(self, message: str, code: int = 500) -> DurableFuture[None]:
        """Reject the promise: whoever awaits it gets TerminalError(message, code)."""
        self._ctx._check_not_in_run("reject a promise")
        cmd = pb.CompletePromiseCommandMessage(key=self.name)
        cmd.completion_failure.code = code
        cmd.completion_failure.message = message
        handle = self._ctx._vm_call(self._ctx._attempt.vm.sys_completable, m.COMPLETE_PROMISE, cmd)
        return DurableFuture(self._ctx, handle, lambda _: None)


class SleepFuture(DurableFuture[None]):
    """The future of a durable `ctx.sleep`."""


_HINTS: dict[Any, Any] = {}


def _hint_of(action: Callable[..., Any]) -> Any:
    """The return type of a run closure, for picking its serde (cached: it is on the hot path)."""
    if not getattr(action, "__annotations__", None):
        return None  # lambdas and unannotated functions
    code = getattr(action, "__code__", action)
    try:
        return _HINTS[code]
    except (KeyError, TypeError):
        pass
    try:
        hint = typing.get_type_hints(action).get("return")
    except Exception:
        hint = None
    if hint is type(None):
        hint = None
    origin = typing.get_origin(hint)
    if origin is not None and getattr(origin, "__name__", "") in ("Coroutine", "Awaitable"):
        args = typing.get_args(hint)
        hint = args[-1] if args else None
    try:
        if len(_HINTS) < 10_000:
            _HINTS[code] = hint
    except TypeError:
        pass
    return hint


class Context:
    """The context of a service handler: durable steps, timers, deterministic randomness, the request."""

    def __init__(self, attempt: Attempt, invocation_id: str, key: str = "") -> None:
        self._attempt = attempt
        self._invocation_id = invocation_id
        self._key = key
        self._random: _random.Random | None = None

    # ---- guards ----

    def _check_not_in_run(self, what: str) -> None:
        run = IN_RUN.get()
        if run is not None:
            raise TerminalError(
                f"cannot {what} inside the ctx.run closure '{run}': a run closure must not use the context "
                "(no ctx.run, ctx.sleep, ctx.get, calls or awaits of durable futures). Move the ctx call "
                "out of the closure and pass its result in.", 500)

    def _check_kind(self, what: str, write: bool = False, workflow: bool = False) -> None:
        h = self._attempt.handler
        kind = h.service.kind
        if workflow and kind != "workflow":
            raise TerminalError(f"cannot {what} in {h.service.name}/{h.name}: promises belong to workflows", 500)
        if kind == "service":
            raise TerminalError(f"cannot {what} in {h.service.name}/{h.name}: a service has no state; use a "
                                "VirtualObject or a Workflow", 500)
        if write and h.is_shared:
            raise TerminalError(f"cannot {what} in {h.service.name}/{h.name}: shared handlers read state but "
                                "never write it", 500)

    def _vm_call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except VMError as e:
            raise self._attempt.fail(e) from None

    # ---- request and determinism ----

    def request(self) -> Request:
        """The request that started this invocation."""
        inp = self._attempt.vm.input()
        start = self._attempt.vm.start
        if self._attempt.finished_event is None:
            self._attempt.finished_event = AttemptFinishedEvent()
        return Request(
            id=self._invocation_id,
            headers={h.key: h.value for h in inp.headers if h.key not in FLOW_HEADERS},
            attempt_headers=dict(self._attempt.attempt_headers),
            body=inp.value.content,
            idempotency_key=start.idempotency_key or None,
            attempt_finished_event=self._attempt.finished_event,
            scope=start.scope if start.HasField("scope") else None,
            limit_key=start.limit_key if start.HasField("limit_key") else None,
        )

    def scope(self, scope: str) -> ScopedContext:
        """Calls and sends within `scope` (flow control: concurrency limits per scope and limit key)."""
        return ScopedContext(self, scope)

    def random(self) -> _random.Random:
        """A random generator seeded by the invocation: the same numbers on every attempt.

        Not for cryptography. `uuid()` draws from the same generator, so call order matters.
        """
        self._check_not_in_run("use ctx.random()")
        if self._random is None:
            self._random = _random.Random(self._attempt.vm.start.random_seed)
        return self._random

    def uuid(self) -> _uuid.UUID:
        """A UUID (version 4 layout) that is the same on every attempt; good for idempotency keys."""
        return _uuid.UUID(int=self.random().getrandbits(128), version=4)

    def time(self) -> RunFuture[float]:
        """The current time in seconds since the epoch, journaled so every attempt sees the same value."""
        return self.run_typed("timestamp", self._attempt.clock)

    # ---- run ----

    def run_typed(self, name: str, action: Callable[..., T] | Callable[..., Awaitable[T]],
                  options: RunOptions[T] | None = None, /, *args: Any, **kwargs: Any) -> RunFuture[T]:
        """Run `action(*args, **kwargs)` once and journal its result; on replay the result is read back.

        Sync callables run on a thread pool, async ones on the event loop. A plain exception is retried
        (per `options`, else per the invocation's retry policy); a TerminalError is journaled as the
        step's result and raised at the `await`.
        """
        self._check_not_in_run("start a nested ctx.run")
        if options is None:
            options = RunOptions()
        elif not isinstance(options, RunOptions):
            # A common slip: the closure's first argument passed where the options go.
            raise TypeError(f"ctx.run_typed({name!r}, fn, options, *args): the third argument is RunOptions or None, "
                            f"got {type(options).__name__}; pass the closure's arguments after it, e.g. "
                            f"ctx.run_typed({name!r}, fn, RunOptions(), arg)")
        serde = serde_for(options.serde, options.type_hint or _hint_of(action))
        vm = self._attempt.vm
        was_replaying = vm.replaying
        handle = self._vm_call(vm.sys_run, name)
        if not vm.has_notification(handle):
            self._attempt.register_run(handle, name, action, args, kwargs, options, serde, was_replaying)
        return RunFuture(self, handle, serde.deserialize)

    def run(self, name: str, action: Callable[..., T] | Callable[..., Awaitable[T]],
            serde: Serde[T] | None = None, max_attempts: int | None = None,
            max_retry_duration: timedelta | None = None, type_hint: type[T] | None = None,
            args: tuple[Any, ...] | None = None) -> RunFuture[T]:
        """The older form of `run_typed`: options as keyword arguments, closure arguments as `args`."""
        opts: RunOptions[T] = RunOptions(max_attempts=max_attempts, max_duration=max_retry_duration,
                                         serde=serde, type_hint=type_hint)
        return self.run_typed(name, action, opts, *(args or ()))

    # ---- timers ----

    def sleep(self, delta: timedelta, name: str | None = None) -> SleepFuture:
        """A durable timer: survives restarts and never starts over from zero."""
        self._check_not_in_run("use ctx.sleep")
        wake = int(self._attempt.clock() * 1000 + delta.total_seconds() * 1000)
        handle = self._vm_call(self._attempt.vm.sys_sleep, wake, name or "")
        return SleepFuture(self, handle, lambda _: None)


    # ---- calling other handlers ----

    def _call(self, service: str, handler: str, param: bytes, key: str, idempotency_key: str | None,
              headers: dict[str, str] | None, decode: Callable[[Any], T], scope: str | None = None,
              limit_key: str | None = None) -> CallFuture[T]:
        self._check_not_in_run("call another handler")
        cmd = pb.CallCommandMessage(service_name=service, handler_name=handler, parameter=param, key=key)
        if idempotency_key:
            cmd.idempotency_key = idempotency_key
        if scope is not None:
            cmd.scope = scope
        if limit_key is not None:
            cmd.limit_key = limit_key
        for k, v in (headers or {}).items():
            cmd.headers.add(key=k, value=v)
        id_handle, handle = self._vm_call(self._attempt.vm.sys_call, cmd)
        return CallFuture(self, handle, decode, id_handle)

    def _send(self, service: str, handler: str, param: bytes, key: str, send_delay: timedelta | None,
              idempotency_key: str | None, headers: dict[str, str] | None, scope: str | None = None,
              limit_key: str | None = None) -> SendHandle:
        self._check_not_in_run("send to another handler")
        cmd = pb.OneWayCallCommandMessage(service_name=service, handler_name=handler, parameter=param, key=key)
        if scope is not None:
            cmd.scope = scope
        if limit_key is not None:
            cmd.limit_key = limit_key
        if send_delay:
            cmd.invoke_time = int(self._attempt.clock() * 1000 + send_delay.total_seconds() * 1000)
        if idempotency_key:
            cmd.idempotency_key = idempotency_key
        for k, v in (headers or {}).items():
            cmd.headers.add(key=k, value=v)
        return SendHandle(self, self._vm_call(self._attempt.vm.sys_send, cmd))

    # `scope`/`limit_key` (keyword-only) are what ctx.scope(...) passes; see durably.sdk.scope.

    def service_call(self, tpe: Callable[..., Awaitable[T]], arg: Any = None, idempotency_key: str | None = None,
                     headers: dict[str, str] | None = None, *, scope: str | None = None,
                     limit_key: str | None = None) -> CallFuture[T]:
        """Call a handler of a service and get a future of its result (exactly once, journaled)."""
        h = handler_of(tpe)
        return self._call(h.service.name, h.name, _encode_arg(h, arg), "", idempotency_key, headers,
                          _decoder(h), scope, limit_key)

    def object_call(self, tpe: Callable[..., Awaitable[T]], key: str, arg: Any = None,
                    idempotency_key: str | None = None, headers: dict[str, str] | None = None, *,
                    scope: str | None = None, limit_key: str | None = None) -> CallFuture[T]:
        """Call a handler of a virtual object on `key`."""
        h = handler_of(tpe)
        return self._call(h.service.name, h.name, _encode_arg(h, arg), key, idempotency_key, headers, _decoder(h),
                          scope, limit_key)

    def workflow_call(self, tpe: Callable[..., Awaitable[T]], key: str, arg: Any = None,
                      idempotency_key: str | None = None, headers: dict[str, str] | None = None, *,
                      scope: str | None = None, limit_key: str | None = None) -> CallFuture[T]:
        """Call a handler of a workflow on `key`."""
        return self.object_call(tpe, key, arg, idempotency_key, headers, scope=scope, limit_key=limit_key)

    def service_send(self, tpe: Callable[..., Awaitable[Any]], arg: Any = None, send_delay: timedelta | None = None,
                     idempotency_key: str | None = None, headers: dict[str, str] | None = None, *,
                     scope: str | None = None, limit_key: str | None = None) -> SendHandle:
        """Start a handler of a service without waiting for it (optionally after `send_delay`)."""
        h = handler_of(tpe)
        return self._send(h.service.name, h.name, _encode_arg(h, arg), "", send_delay, idempotency_key, headers,
                          scope, limit_key)

    def object_send(self, tpe: Callable[..., Awaitable[Any]], key: str, arg: Any = None,
                    send_delay: timedelta | None = None, idempotency_key: str | None = None,
                    headers: dict[str, str] | None = None, *, scope: str | None = None,
                    limit_key: str | None = None) -> SendHandle:
        """Start a handler of a virtual object on `key` without waiting for it."""
        h = handler_of(tpe)
        return self._send(h.service.name, h.name, _encode_arg(h, arg), key, send_delay, idempotency_key, headers,
                          scope, limit_key)

    def workflow_send(self, tpe: Callable[..., Awaitable[Any]], key: str, arg: Any = None,
                      send_delay: timedelta | None = None, idempotency_key: str | None = None,
                      headers: dict[str, str] | None = None, *, scope: str | None = None,
                      limit_key: str | None = None) -> SendHandle:
        """Start a handler of a workflow on `key` without waiting for it."""
        return self.object_send(tpe, key, arg, send_delay, idempotency_key, headers, scope=scope,
                                limit_key=limit_key)

    def generic_call(self, service: str, handler: str, arg: bytes, key: str | None = None,
                     idempotency_key: str | None = None, headers: dict[str, str] | None = None,
                     scope: str | None = None, limit_key: str | None = None) -> CallFuture[bytes]:
        """Call any handler by name with raw bytes; the result is raw bytes."""
        return self._call(service, handler, arg, key or "", idempotency_key, headers, lambda v: v or b"", scope,
                          limit_key)

    def generic_send(self, service: str, handler: str, arg: bytes, key: str | None = None,
                     send_delay: timedelta | None = None, idempotency_key: str | None = None,
                     headers: dict[str, str] | None = None, scope: str | None = None,
                     limit_key: str | None = None) -> SendHandle:
        """Start any handler by name with raw bytes, without waiting for it."""
        return self._send(service, handler, arg, key or "", send_delay, idempotency_key, headers, scope, limit_key)

    # ---- awakeables, cancellation, attaching ----

    def awakeable(self, serde: Serde[T] | None = None,
                  type_hint: type[T] | None = None) -> tuple[str, DurableFuture[T]]:
        """An id to hand to the outside world and a future completed when someone resolves that id.

        Resolve it from another handler (`ctx.resolve_awakeable`) or over HTTP
        (`POST /restate/awakeables/{id}/resolve` with the value as the body).
        """
        self._check_not_in_run("create an awakeable")
        s = serde_for(serde, type_hint)
        sid = self._attempt.vm.sys_awakeable()
        return (awakeable_id(self._attempt.vm.start.id, sid),
                DurableFuture(self, signal_handle(sid), lambda v: None if v is None else s.deserialize(v)))

    def resolve_awakeable(self, name: str, value: Any, serde: Serde[Any] | None = None) -> None:
        """Complete someone's awakeable with a value."""
        self._check_not_in_run("resolve an awakeable")
        s = serde if serde is not None else DefaultSerde(type(value))
        cmd = pb.CompleteAwakeableCommandMessage(awakeable_id=name)
        cmd.value.content = encode_or_fail(s, value, "resolve_awakeable got", "pass a serde", verb="resolve it with")
        self._vm_call(self._attempt.vm.sys_complete_awakeable, cmd)

    def reject_awakeable(self, name: str, failure_message: str, failure_code: int = 500) -> None:
        """Complete someone's awakeable with a failure (they get a TerminalError)."""
        self._check_not_in_run("reject an awakeable")
        cmd = pb.CompleteAwakeableCommandMessage(awakeable_id=name)
        cmd.failure.code = failure_code
        cmd.failure.message = failure_message
        self._vm_call(self._attempt.vm.sys_complete_awakeable, cmd)

    # ---- named signals ----

    def signal(self, name: str, serde: Serde[T] | None = None, type_hint: type[T] | None = None) -> DurableFuture[T]:
        """A future completed when someone resolves (or rejects) the signal `name` of this invocation.

        Other handlers send it with `ctx.resolve_signal(invocation_id, name, value)`. A signal sent before
        the handler asks for it is kept; use the future in select/gather like any other.
        """
        self._check_not_in_run("await a signal")
        s = serde_for(serde, type_hint)
        handle = self._vm_call(self._attempt.vm.sys_signal, name)
        return DurableFuture(self, handle, lambda v: None if v is None else s.deserialize(v))

    def resolve_signal(self, invocation_id: str, name: str, value: Any, serde: Serde[Any] | None = None) -> None:
        """Complete the signal `name` of another invocation with a value."""
        self._check_not_in_run("resolve a signal")
        s = serde if serde is not None else DefaultSerde(type(value))
        cmd = pb.SendSignalCommandMessage(target_invocation_id=invocation_id, name=name)
        cmd.value.content = s.serialize(value)
        self._vm_call(self._attempt.vm.sys_send_signal, cmd)

    def reject_signal(self, invocation_id: str, name: str, failure_message: str, failure_code: int = 500) -> None:
        """Complete the signal `name` of another invocation with a failure (its awaiter gets TerminalError)."""
        self._check_not_in_run("reject a signal")
        cmd = pb.SendSignalCommandMessage(target_invocation_id=invocation_id, name=name)
        cmd.failure.code = failure_code
        cmd.failure.message = failure_message
        self._vm_call(self._attempt.vm.sys_send_signal, cmd)

    def cancel_invocation(self, invocation_id: str) -> None:
        """Cancel another invocation: it gets TerminalError 409 at its next await and may compensate."""
        self._check_not_in_run("cancel an invocation")
        cmd = pb.SendSignalCommandMessage(target_invocation_id=invocation_id, idx=1)
        cmd.void.SetInParent()
        self._vm_call(self._attempt.vm.sys_send_signal, cmd)

    def attach_invocation(self, invocation_id: str, serde: Serde[T] | None = None,
                          type_hint: type[T] | None = None) -> DurableFuture[T]:
        """Wait for another invocation's result."""
        self._check_not_in_run("attach to an invocation")
        s = serde_for(serde, type_hint)
        cmd = pb.AttachInvocationCommandMessage(invocation_id=invocation_id)
        handle = self._vm_call(self._attempt.vm.sys_completable, m.ATTACH_INVOCATION, cmd)
        return DurableFuture(self, handle, lambda v: None if v is None else s.deserialize(v))


def waiting_attempt(future: DurableFuture[Any], what: str) -> Attempt:
    """The attempt a handler waits in when it awaits `future` (for the combinators of `durably.sdk.combinators`).

    Raises TerminalError inside a `ctx.run` closure, where waiting on durable futures is not allowed.
    """
    future._ctx._check_not_in_run(what)
    return future._ctx._attempt


def context_of(future: DurableFuture[Any]) -> Context:
    """The context that handed out `future` (all futures of one combinator must share it)."""
    return future._ctx


def is_replaying_in(ctx: Context) -> bool:
    """Whether the handler of `ctx` re-executes steps whose results come from the journal."""
    return bool(ctx._attempt.vm.replaying)


def _encode_arg(h: Handler, arg: Any) -> bytes:
    """The call's parameter, checked against the callee's type hint as the ingress would check it."""
    if not h.takes_input:
        return b""
    target = f"{h.service.name}/{h.name}"
    body = encode_or_fail(h.input_serde, arg, f"the call to {target} passes", "set the handler's input serde",
                          verb="pass")
    if body and is_checked(h.input_type):
        problem = input_problem(target, h.input_type, h.input_serde, body)
        if problem is not None:
            raise TerminalError(problem, 400)
    return body


def _decoder(h: Handler) -> Callable[[Any], Any]:
    return lambda v: h.output_serde.deserialize(v or b"")


class ObjectSharedContext(Context):
    """The context of a shared virtual-object handler: the key and read-only state."""

    def key(self) -> str:
        """The object key this invocation runs on."""
        return self._key

    async def get(self, name: str, serde: Serde[T] | None = None, type_hint: type[T] | None = None) -> T | None:
        """Read a state value (None if unset)."""
        self._check_not_in_run("use ctx.get")
        self._check_kind("use ctx.get")
        s = serde_for(serde, type_hint)
        handle = self._vm_call(self._attempt.vm.sys_get_state, name.encode())
        fut: DurableFuture[T | None] = DurableFuture(self, handle, lambda v: None if v is None else s.deserialize(v))
        return await fut

    async def state_keys(self) -> list[str]:
        """The names of all state values of this key."""
        self._check_not_in_run("use ctx.state_keys")
        self._check_kind("use ctx.state_keys")
        handle = self._vm_call(self._attempt.vm.sys_state_keys)
        fut: DurableFuture[list[str]] = DurableFuture(self, handle, lambda v: sorted(k.decode() for k in v))
        return await fut


class ObjectContext(ObjectSharedContext):
    """The context of an exclusive virtual-object handler: read and write the key's state."""

    def set(self, name: str, value: Any, serde: Serde[Any] | None = None) -> None:
        """Write a state value."""
        self._check_not_in_run("use ctx.set")
        self._check_kind("use ctx.set", write=True)
        s = serde if serde is not None else DefaultSerde(type(value))
        data = encode_or_fail(s, value, f"ctx.set('{name}') got", "pass a serde to ctx.set", verb="store")
        self._vm_call(self._attempt.vm.sys_set_state, name.encode(), data)

    def clear(self, name: str) -> None:
        """Delete a state value."""
        self._check_not_in_run("use ctx.clear")
        self._check_kind("use ctx.clear", write=True)
        self._vm_call(self._attempt.vm.sys_clear_state, name.encode())

    def clear_all(self) -> None:
        """Delete every state value of this key."""
        self._check_not_in_run("use ctx.clear_all")
        self._check_kind("use ctx.clear_all", write=True)
        self._vm_call(self._attempt.vm.sys_clear_all_state)


class WorkflowSharedContext(ObjectSharedContext):
    """The context of a workflow's shared handlers."""

    def promise(self, name: str, serde: Serde[T] | None = None, type_hint: type[T] | None = None) -> DurablePromise[T]:
        """The workflow's durable promise called `name`."""
        self._check_kind("use ctx.promise", workflow=True)
        return DurablePromise(self, name, serde_for(serde, type_hint))


class WorkflowContext(ObjectContext, WorkflowSharedContext):
    """The context of a workflow's main handler."""


class InvocationContext(WorkflowContext):
    """The one implementation every handler receives."""


__all__ = [
    "BytesSerde",
    "CallFuture",
    "Context",
    "DurableFuture",
    "DurablePromise",
    "InvocationContext",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "RunFuture",
    "SendHandle",
    "SleepFuture",
    "WorkflowContext",
    "WorkflowSharedContext",
]
