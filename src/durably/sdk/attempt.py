"""The driver of one attempt: runs the handler over a VM and a transport.

The transport is how the VM talks to the runtime. In process it is the engine itself (messages are handed
over as objects); for a remote deployment it is an HTTP stream of frames. Either way the runtime calls
`deliver` with notifications and `close_input` when it will send nothing more, and receives every message
the VM writes through `Transport.send`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
import traceback
import types
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol

from google.protobuf.message import Message

from durably.protocol import protocol_pb2 as pb
from durably.sdk import current
from durably.sdk.errors import (
    JOURNAL_MISMATCH,
    AttemptEndedException,
    RetryableError,
    SdkInternalBaseException,
    SuspendedException,
    TerminalError,
    VMError,
)
from durably.sdk.input_check import BadInput, decode_input
from durably.sdk.misuse import report, sdk_misuse
from durably.sdk.options import RunOptions
from durably.sdk.output_check import encode_or_fail, unencodable_message
from durably.sdk.replay_log import CURRENT_VM
from durably.sdk.service import Handler
from durably.sdk.vm import VM, failure, notification_value

log = logging.getLogger("durably.attempt")

# Set while a ctx.run closure executes, so ctx calls made from inside it can be refused.
IN_RUN: contextvars.ContextVar[str | None] = contextvars.ContextVar("durably_in_run", default=None)


class Transport(Protocol):
    """Where the VM's messages go."""

    def send(self, messages: list[tuple[int, Message]]) -> None:
        """Take the messages the VM wrote, in order."""


class _PendingRun:
    __slots__ = ("action", "args", "finished", "kwargs", "name", "options", "serde", "task")

    def __init__(self, name: str, action: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 options: RunOptions[Any], serde: Any) -> None:
        self.name = name
        self.action = action
        self.args = args
        self.kwargs = kwargs
        self.options = options
        self.serde = serde
        self.task: asyncio.Future[Any] | None = None
        # Set once the outcome was handed over (proposed or failed the attempt). A task can be done
        # before its done-callback ran; until then the run still counts as executing.
        self.finished = False


class AttemptFinishedEvent:
    """Set when this attempt is over (completed, suspended, failed or aborted): `ctx.request()
    .attempt_finished_event`. Resources tied to the attempt, such as a pending third-party call started in a
    `ctx.run`, can be released once it is set."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def is_set(self) -> bool:
        """Whether the attempt is over."""
        return self._event.is_set()

    async def wait(self) -> None:
        """Wait until the attempt is over."""
        await self._event.wait()

    def set(self) -> None:
        """Mark the attempt as over (the runtime does it)."""
        self._event.set()


class Attempt:
    """Runs one attempt of a handler. Create it, then `await attempt.run(ctx_factory)`."""

    def __init__(self, handler: Handler, vm: VM, transport: Transport,
                 attempt_headers: dict[str, str] | None = None, executor: Executor | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.handler = handler
        self.vm = vm
        self.transport = transport
        self.attempt_headers = attempt_headers or {}
        self.executor = executor
        # Where ctx.sleep reads "now" (the runtime's clock, virtual in tests).
        self.clock = clock
        # The handler's wait for progress: a bare future is cheaper than an asyncio.Event per step.
        self._waiter: asyncio.Future[None] | None = None
        self._runs: dict[int, _PendingRun] = {}
        self._ended: BaseException | None = None
        self._replayed_run_pending = False
        # Set when the handler failed by using the SDK wrongly (see sdk/misuse.py): the error message.
        self.code_bug: str | None = None
        self.started_at = time.monotonic()
        # Created on the first ctx.request() only: most handlers never ask for it.
        self.finished_event: AttemptFinishedEvent | None = None
        # A sync closure's outcome left to the handler's task (see `_run_sync_inline`), and whether the
        # handler's task is over (ended or cancelled): then nobody proposes a late outcome.
        self._handback: tuple[int, _PendingRun, Any, BaseException | None, float] | None = None
        self._over = False

    # ---- runtime side ----

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def deliver(self, type_id: int, msg: Message) -> None:
        """A notification for this attempt (already durable)."""
        self.vm.notify(type_id, msg)
        self._wake()

    def close_input(self) -> None:
        """The runtime asks the attempt to suspend as soon as it waits on anything missing."""
        self.vm.notify_input_closed()
        self._wake()

    def abort(self) -> None:
        """End the attempt now without writing anything more (abort timeout, kill, shutdown)."""
        if self._ended is None:
            self._ended = AttemptEndedException("aborted")
            self.vm.closed = True
        if self.finished_event is not None:
            self.finished_event.set()
        self._wake()
        for run in self._runs.values():
            if run.task is not None and not run.task.done():
                run.task.cancel()

    # ---- handler side ----

    def flush(self) -> None:
        """Hand whatever the VM wrote to the transport."""
        if self.vm.output:
            self.transport.send(self.vm.take_output())

    def fail(self, e: VMError) -> BaseException:
        """End the attempt with a VM error; returns the exception that unwinds the handler."""
        if not self.vm.closed:
            self.vm.sys_error(e.code, e.message, "",
                              related=(e.related_index, e.related_type, e.related_name or "")
                              if e.related_index is not None else None)
            self.flush()
        self._ended = AttemptEndedException(e.message)
        return self._ended

    def register_run(self, handle: int, name: str, action: Callable[..., Any], args: tuple[Any, ...],
                     kwargs: dict[str, Any], options: RunOptions[Any], serde: Any, replayed: bool) -> None:
        """A run whose result is not in the journal: it executes when first awaited."""
        self._runs[handle] = _PendingRun(name, action, args, kwargs, options, serde)
        if replayed:
            # Its RunCommand came from the journal, so retry counters from Start apply to it (reference §4).
            self._replayed_run_pending = handle  # type: ignore[assignment]

    async def wait_for(self, handles: list[int], all_of: bool = False) -> None:
        """Wait until one (or all) of the handles is completed; suspends or ends the attempt if it must.

        A cancellation that arrives meanwhile is passed on to the calls made so far and raised here as
        TerminalError("cancelled", 409), so the handler can run compensations.
        """
        await self._wait(handles, all_of, cancellable=True)

    async def _wait(self, handles: list[int], all_of: bool, cancellable: bool) -> None:
        vm = self.vm
        # Most awaits are of one handle (a step, a call, a sleep): checked without the any/all machinery.
        one = len(handles) == 1
        first = handles[0] if one else 0
        while True:
            if self._ended is not None:
                raise self._ended
            if self._handback is not None:
                self._take_handback()
            if vm.output:
                self.transport.send(vm.take_output())
            if cancellable and vm.cancel_pending():
                await self._cancelled()
            if vm.is_completed(first) if one else self._satisfied(handles, all_of):
                return
            revealed = False
            while vm.reveal_next() is not None:
                if self._satisfied(handles, all_of) or (cancellable and vm.cancel_pending()):
                    revealed = True
                    break
            if revealed:
                continue
            if len(handles) == 1:
                run = self._runs.get(handles[0])
                if run is not None and run.task is None and not vm.has_notification(handles[0]):
                    await self._run_inline(handles[0], run)
                    continue
            executing = False
            for h in handles:
                run = self._runs.get(h)
                if run is not None and not vm.has_notification(h):
                    if run.task is None:
                        self._start_run(h, run)
                    # A proposed result is on its way; only an unfinished run keeps us from suspending.
                    executing = executing or not run.finished
            if not executing:
                if vm.replaying:
                    raise self.fail(VMError(
                        JOURNAL_MISMATCH,
                        "'await' could not be replayed: the journal holds no result for what the handler "
                        "awaits now, but has more recorded steps after it. The handler took a different "
                        "path than in the previous execution.", vm.command_index))
                if vm.input_closed:
                    vm.sys_suspend([h for h in handles if not vm.is_completed(h)])
                    self.flush()
                    self._ended = SuspendedException()
                    raise self._ended
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def _cancelled(self) -> None:
        vm = self.vm
        vm.cancel_consumed = True
        # Pass the cancellation down the call tree: every call made so far gets the cancel signal.
        ids = list(vm.call_id_handles)
        if ids:
            await self._wait(ids, all_of=True, cancellable=False)
        for h in ids:
            target = notification_value(vm.result(h))
            if isinstance(target, str) and target:
                cmd = pb.SendSignalCommandMessage(target_invocation_id=target, idx=1)
                cmd.void.SetInParent()
                try:
                    vm.sys_send_signal(cmd)
                except VMError as e:
                    raise self.fail(e) from None
        self.flush()
        raise TerminalError("cancelled", 409)

    def _satisfied(self, handles: list[int], all_of: bool) -> bool:
        done = self.vm.is_completed
        if all_of:
            for h in handles:
                if not done(h):
                    return False
            return True
        for h in handles:
            if done(h):
                return True
        return False

    # ---- runs ----

    def _run_context(self, run: _PendingRun) -> contextvars.Context:
        token = IN_RUN.set(run.name)
        try:
            return contextvars.copy_context()
        finally:
            IN_RUN.reset(token)

    def _start_run(self, handle: int, run: _PendingRun) -> None:
        """Run a closure beside the handler (several are awaited at once, e.g. in a combinator)."""
        action = run.action
        ctx = self._run_context(run)
        started = time.monotonic()
        if _is_async(action):
            task: asyncio.Future[Any] = asyncio.get_running_loop().create_task(
                action(*run.args, **run.kwargs), context=ctx)
        else:
            task = self._submit_sync(run, ctx)
        run.task = task

        def done(t: asyncio.Future[Any]) -> None:
            if t.cancelled():
                run.finished = True
                return
            exc = t.exception()
            self._run_outcome(handle, run, None if exc is not None else t.result(), exc, started)

        task.add_done_callback(done)

    async def _run_inline(self, handle: int, run: _PendingRun) -> None:
        """Run the one closure the handler awaits right in the handler's task: no extra task, no hop."""
        action = run.action
        run.task = asyncio.get_running_loop().create_future()  # marks it started
        started = time.monotonic()
        if not _is_async(action):
            self._run_sync_inline(handle, run, started)
            return
        result: Any = None
        exc: BaseException | None = None
        try:
            token = IN_RUN.set(run.name)
            try:
                result = await action(*run.args, **run.kwargs)
            finally:
                IN_RUN.reset(token)
        except asyncio.CancelledError:
            raise  # the attempt is being aborted
        except Exception as e:
            exc = e
        if not run.task.done():  # abort() cancels it while the closure still runs
            run.task.set_result(None)
        self._run_outcome(handle, run, result, exc, started)

    def _run_sync_inline(self, handle: int, run: _PendingRun, started: float) -> None:
        """Hand a sync closure to a thread; the handler's task then waits for the step's notification.

        Its outcome is proposed by the loop callback that learns the thread is done, not a turn later when the
        handler's task resumes: a worker killed in between loses a result the step already produced (issue 23),
        and the loop's turns are long when it is busy. The handler's task is not woken for it: the
        notification (after the commit) wakes it, once per step as for an async closure."""
        loop = asyncio.get_running_loop()
        task = run.task
        assert task is not None

        def report(result: Any, exc: BaseException | None) -> None:
            if not task.done():  # abort() cancels it while the closure still runs
                task.set_result(None)
            if self._ended is not None or self._over:
                return  # the attempt was aborted, or its task cancelled: nobody proposes
            if (exc is not None and not isinstance(exc, Exception)) or self.vm.input_closed:
                # The handler's task takes it (`_take_handback`): an exception that is not the closure's failure
                # (SystemExit, or CancelledError: it never ran) is the handler's; with nothing more to arrive,
                # the handler proposes and suspends in one step, as always-suspending mode expects (the result
                # comes back from the journal in a new attempt).
                self._handback = (handle, run, result, exc, started)
                self._wake()
            else:
                self._run_outcome(handle, run, result, exc, started, wake=False)

        # The callback runs in the handler's context, not the closure's (where ctx.run is forbidden).
        here = contextvars.copy_context()
        post_step = getattr(self.executor, "post_step", None)
        if post_step is not None:
            # The runtime's pool: the outcome comes back to this loop with those of other closures that finish
            # meanwhile, one wake-up for all of them (server/engine/threads.py).
            self._hand_over(run, lambda: post_step(run.name, self._run_context(run).run,
                                                   (_call_sync, run.action, run.args, run.kwargs), report, here))
        else:
            def reporting(*call: Any) -> None:  # on the executor's thread
                try:
                    outcome: tuple[Any, BaseException | None] = (_call_sync(*call), None)
                except BaseException as e:  # handed to the loop, which decides
                    outcome = (None, e)
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for the outcome
                    loop.call_soon_threadsafe(report, *outcome, context=here)

            ctx = self._run_context(run)
            self._hand_over(run, lambda: loop.run_in_executor(self.executor, ctx.run, reporting, run.action,
                                                              run.args, run.kwargs))

    def _take_handback(self) -> None:
        """On the handler's task: the outcome of a sync closure the loop callback left to it."""
        handback, self._handback = self._handback, None
        assert handback is not None
        handle, run, result, exc, started = handback
        if exc is not None and not isinstance(exc, Exception):
            raise exc
        self._run_outcome(handle, run, result, exc, started)

    def _submit_sync(self, run: _PendingRun, ctx: contextvars.Context) -> asyncio.Future[Any]:
        """Hand a sync closure to the executor; a future of its result. Ends the attempt (retryably) if no
        thread may run it."""
        loop = asyncio.get_running_loop()
        post_step = getattr(self.executor, "post_step", None)
        if post_step is None:
            return self._hand_over(run, lambda: loop.run_in_executor(self.executor, ctx.run, _call_sync, run.action,
                                                                     run.args, run.kwargs))
        fut: asyncio.Future[Any] = loop.create_future()

        def done(result: Any, exc: BaseException | None) -> None:
            if fut.done():
                return  # cancelled: the attempt was aborted
            if isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            elif exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        self._hand_over(run, lambda: post_step(run.name, ctx.run, (_call_sync, run.action, run.args, run.kwargs),
                                               done))
        return fut

    def _hand_over(self, run: _PendingRun, submit: Callable[[], Any]) -> Any:
        """`submit()`, ending the attempt (retryably) if no thread may run the closure."""
        try:
            return submit()
        except RetryableError as e:
            # Not the closure's failure (it never ran), so the run's own retry limits are not spent.
            delay = int(e.retry_after.total_seconds() * 1000) if e.retry_after is not None else None
            self.vm.sys_error(e.status_code, e.message, "", delay, (self.vm.command_index, 0x0411, run.name))
            self.flush()
            self._ended = AttemptEndedException(e.message)
            self._wake()
            raise self._ended from None

    def _run_outcome(self, handle: int, run: _PendingRun, result: Any, exc: BaseException | None,
                     started: float, wake: bool = True) -> None:
        run.finished = True
        if self._ended is not None or self.vm.closed:
            return  # late result of an aborted attempt: ignored
        if wake:
            self._wake()
        if exc is None:
            try:
                value = run.serde.serialize(result)
            except Exception as e:
                msg = unencodable_message(f"run '{run.name}' returned", result, e, "pass a serde in RunOptions")
                self.vm.propose_run_completion(handle, failure=failure(500, msg))
            else:
                self.vm.propose_run_completion(handle, value=value)
            self.flush()
            return
        if isinstance(exc, TerminalError):
            self.vm.propose_run_completion(handle, failure=failure(exc.status_code, exc.message, exc.metadata))
            self.flush()
            return
        if isinstance(exc, SdkInternalBaseException):
            return
        self._run_failed_retryably(handle, run, exc, time.monotonic() - started)

    def _run_failed_retryably(self, handle: int, run: _PendingRun, exc: BaseException, took: float) -> None:
        opts = run.options
        retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
        message = exc.message if isinstance(exc, RetryableError) else repr(exc)
        stack = "".join(traceback.format_exception(exc))
        related = (self.vm.command_index, 0x0411, run.name)
        if not opts.has_retry_policy:
            # No limits given: the invocation's own retry policy takes over.
            delay = int(retry_after.total_seconds() * 1000) if retry_after is not None else None
            self.vm.sys_error(500, message, stack, delay, related)
        else:
            count, duration_ms = 0, 0.0
            if self._replayed_run_pending == handle:
                count = self.vm.start.retry_count_since_last_stored_entry
                if count > 0:
                    duration_ms = float(self.vm.start.duration_since_last_stored_entry)
            count += 1
            duration_ms += took * 1000
            spent = (opts.max_attempts is not None and count >= opts.max_attempts) or (
                opts.max_duration is not None and duration_ms >= opts.max_duration.total_seconds() * 1000)
            if spent:
                self.vm.propose_run_completion(handle, failure=failure(500, message))
                self.flush()
                return
            delay_td = retry_after if retry_after is not None else opts.retry_delay(count)
            self.vm.sys_error(500, message, stack, int(delay_td.total_seconds() * 1000), related)
        self.flush()
        self._ended = AttemptEndedException(message)
        self._wake()

    # ---- the handler ----

    async def run(self, ctx: Any) -> None:
        """Run the handler until the attempt ends (output, suspension or error)."""
        vm = self.vm
        h = self.handler
        vm_token = CURRENT_VM.set(vm)  # durably.getLogger stays silent while this VM replays
        bound = current.bind(ctx)  # integrations find the handler's ctx through durably.extensions
        try:
            try:
                if h.takes_input:
                    # Checked here too: callers that bypass Durably's ingress (Restate's, a generic_call).
                    try:
                        arg = decode_input(f"{h.service.name}/{h.name}", h.input_type, h.input_serde,
                                           vm.input().value.content)
                    except BadInput as e:
                        raise TerminalError(str(e), 400) from None
                    result = await h.fn(ctx, arg)
                else:
                    result = await h.fn(ctx)
                out = encode_or_fail(h.output_serde, result, f"{h.service.name}/{h.name} returned",
                                     "set an output serde") if h.returns_output else b""
                vm.sys_output(value=out)
            except TerminalError as e:
                vm.sys_output(failure=failure(e.status_code, e.message, e.metadata))
            vm.sys_end()
        except SdkInternalBaseException:
            pass
        except VMError as e:
            self.fail(e)
        except asyncio.CancelledError:
            if self._ended is None:
                raise
        except RetryableError as e:
            if not vm.closed:
                delay = int(e.retry_after.total_seconds() * 1000) if e.retry_after is not None else None
                vm.sys_error(e.status_code, e.message, "".join(traceback.format_exception(e)), delay)
        except Exception as e:
            cause = _find_cause(e)
            if isinstance(cause, TerminalError) and not vm.closed:
                vm.sys_output(failure=failure(cause.status_code, cause.message, cause.metadata))
                vm.sys_end()
            elif not vm.closed:
                misuse = sdk_misuse(e)
                if misuse is not None:
                    # A bug in the handler, not a transient fault: retried all the same, but said loudly.
                    self.code_bug = report(e, misuse, h)
                vm.sys_error(500, self.code_bug or repr(e), "".join(traceback.format_exception(e)))
        finally:
            self._over = True
            current.unbind(bound, ctx)
            CURRENT_VM.reset(vm_token)
            if self.finished_event is not None:
                self.finished_event.set()
            if not (isinstance(self._ended, AttemptEndedException) and str(self._ended) == "aborted"):
                self.flush()
            for run in self._runs.values():
                if run.task is not None and not run.task.done() and isinstance(run.task, asyncio.Task):
                    run.task.cancel()


def _is_async(action: Callable[..., Any]) -> bool:
    if type(action) is types.FunctionType:
        # The common cases (a def or a lambda), without inspect's unwrapping: its code says it, unless it was
        # marked with inspect.markcoroutinefunction (Python 3.12+), which the full check below sees.
        if action.__code__.co_flags & inspect.CO_COROUTINE:
            return True
        if not hasattr(action, "_is_coroutine_marker"):
            return False
    return inspect.iscoroutinefunction(action) or inspect.iscoroutinefunction(
        getattr(action, "__call__", None))  # noqa: B004 - async callable objects


def _call_sync(action: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return action(*args, **kwargs)


def _find_cause(e: BaseException) -> BaseException:
    seen = e
    while seen is not None:
        if isinstance(seen, TerminalError | SdkInternalBaseException):
            return seen
        seen = seen.__cause__  # type: ignore[assignment]
    return e


def pb_failure_to_error(f: pb.Failure) -> TerminalError:
    """A journaled Failure as the TerminalError a handler catches."""
    md = {x.key: x.value for x in f.metadata} or None
    return TerminalError(f.message, f.code, md)
