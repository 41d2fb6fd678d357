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
from durably.sdk.attempt import IN_RUN, Attempt, pb_failure_to_error
from durably.sdk.errors import TerminalError, VMError
from durably.sdk.options import RunOptions
from durably.sdk.serde import BytesSerde, DefaultSerde, Serde, serde_for
from durably.sdk.vm import notification_value

T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    """The invocation's request: its id, the caller's headers and the raw input body."""

    id: str
    headers: dict[str, str]
    attempt_headers: dict[str, str]
    body: bytes
    idempotency_key: str | None = None


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


class SleepFuture(DurableFuture[None]):
    """The future of a durable `ctx.sleep`."""


def _hint_of(action: Callable[..., Any]) -> Any:
    try:
        hint = typing.get_type_hints(action).get("return")
    except Exception:
        return None
    if hint is None or hint is type(None):
        return None
    origin = typing.get_origin(hint)
    if origin is not None and getattr(origin, "__name__", "") in ("Coroutine", "Awaitable"):
        args = typing.get_args(hint)
        return args[-1] if args else None
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

    def _vm_call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except VMError as e:
            raise self._attempt.fail(e) from None

    # ---- request and determinism ----

    def request(self) -> Request:
        """The request that started this invocation."""
        inp = self._attempt.vm.input()
        return Request(
            id=self._invocation_id,
            headers={h.key: h.value for h in inp.headers},
            attempt_headers=dict(self._attempt.attempt_headers),
            body=inp.value.content,
            idempotency_key=self._attempt.vm.start.idempotency_key or None,
        )

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
        options = options if options is not None else RunOptions()
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


class ObjectSharedContext(Context):
    """The context of a shared virtual-object handler: the key and read-only state."""

    def key(self) -> str:
        """The object key this invocation runs on."""
        return self._key

    async def get(self, name: str, serde: Serde[T] | None = None, type_hint: type[T] | None = None) -> T | None:
        """Read a state value (None if unset)."""
        self._check_not_in_run("use ctx.get")
        s = serde_for(serde, type_hint)
        handle = self._vm_call(self._attempt.vm.sys_get_state, name.encode())
        fut: DurableFuture[T | None] = DurableFuture(self, handle, lambda v: None if v is None else s.deserialize(v))
        return await fut

    async def state_keys(self) -> list[str]:
        """The names of all state values of this key."""
        self._check_not_in_run("use ctx.state_keys")
        handle = self._vm_call(self._attempt.vm.sys_state_keys)
        fut: DurableFuture[list[str]] = DurableFuture(self, handle, lambda v: sorted(k.decode() for k in v))
        return await fut


class ObjectContext(ObjectSharedContext):
    """The context of an exclusive virtual-object handler: read and write the key's state."""

    def set(self, name: str, value: Any, serde: Serde[Any] | None = None) -> None:
        """Write a state value."""
        self._check_not_in_run("use ctx.set")
        s = serde if serde is not None else DefaultSerde(type(value))
        self._vm_call(self._attempt.vm.sys_set_state, name.encode(), s.serialize(value))

    def clear(self, name: str) -> None:
        """Delete a state value."""
        self._check_not_in_run("use ctx.clear")
        self._vm_call(self._attempt.vm.sys_clear_state, name.encode())

    def clear_all(self) -> None:
        """Delete every state value of this key."""
        self._check_not_in_run("use ctx.clear_all")
        self._vm_call(self._attempt.vm.sys_clear_all_state)


class WorkflowSharedContext(ObjectSharedContext):
    """The context of a workflow's shared handlers."""


class WorkflowContext(ObjectContext, WorkflowSharedContext):
    """The context of a workflow's main handler."""


class InvocationContext(WorkflowContext):
    """The one implementation every handler receives."""


__all__ = [
    "BytesSerde",
    "Context",
    "DurableFuture",
    "InvocationContext",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "RunFuture",
    "SleepFuture",
    "WorkflowContext",
    "WorkflowSharedContext",
    "m",
]
