"""The threads that run sync `ctx.run` closures.

A sync closure may block for ever (a network call without a timeout). Python cannot stop a thread, so
when its invocation is killed or its attempt aborted the thread stays busy; such a thread is *stuck*.
The pool is built so that stuck threads never hold up unrelated steps:

- a step never waits in a queue behind busy threads: it gets an idle thread, or a new one while there are
  fewer than `max_threads` (stuck ones included); past that, submitting fails at once with
  `StepThreadsBusy`, a retryable error, and the attempt is retried per the invocation's retry policy;
- every running closure is recorded with its invocation, handler and step name; the engine marks those
  of aborted attempts abandoned, and `stuck_report` says how many threads are stuck where, for how long
  (`3 threads stuck in Orders/place step 'charge' for 600 s`), in the log and on the admin API;
- a retry does not start a second thread for a step its previous attempt's thread is still stuck in: it waits
  for that thread (counted in `waiting_for_stuck`, and logged), and runs on it once the closure returns;
- threads stuck in steps of invocations that ended (killed, cancelled) stop counting against `max_threads`, so
  killing hung invocations frees the cap for other steps; the process still holds the threads until their
  closures return, at most `max_threads` of them beyond the cap;
- threads are daemons (one stuck closure must not keep `durably serve` from exiting; its result was never
  journaled, so it runs again after a restart) and idle ones exit after a while.

The hop is cheap (issue 21, item 3): a step of a 10-step handler with `lambda: i` closures should cost
little more than one with async closures.

- Going out: a closure is appended to one shared deque. The loop wakes at most one sleeping thread per
  batch of closures it hands out in a tick; a thread that takes a closure and sees more waiting wakes the
  next sleeper before it runs its own, so no closure waits behind a running one (the guarantee above), yet
  a thread that is already awake takes the next closure itself without any wake-up.
- Coming back: `post` takes a callback instead of returning a Future. A thread that finishes a closure
  appends it to the loop's inbox and wakes the loop only if no wake-up is pending already; the loop then
  runs the callbacks of every closure that finished meanwhile in one go, in the order they finished.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from contextvars import Context
from typing import Any

from durably.sdk.errors import RetryableError

log = logging.getLogger("durably.threads")

IDLE_EXIT_S = 60.0
# How long after a wave of closures was posted the commit waits for their results (see `StepThreads.arriving`).
ARRIVING_S = 0.0005

# Told (result, exception) on the event loop once a closure finished: exception is None when it returned,
# the exception it raised otherwise, and `asyncio.CancelledError()` when it never ran (its attempt was aborted
# or its invocation ended while it waited for a thread, or the pool shut down).
OnDone = Callable[[Any, BaseException | None], None]


class StepThreadsBusy(RetryableError):
    """No thread is free for a sync step and the pool is at its cap: the attempt is retried later."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 503)


class StepJob:
    """One closure submitted to the pool, and where it comes from."""

    __slots__ = ("abandoned_at", "args", "cancelled", "context", "exc", "fn", "future", "inbox", "invocation_id",
                 "kwargs", "on_done", "orphaned", "owner", "result", "started", "step", "target", "waiters",
                 "watcher")

    def __init__(self, owner: object, invocation_id: str, target: str, step: str) -> None:
        self.owner = owner
        self.invocation_id = invocation_id
        self.target = target
        self.step = step
        self.started: float | None = None  # monotonic time a thread began running it
        self.abandoned_at: float | None = None  # its attempt was aborted (kill, abort timeout, shutdown)
        self.orphaned = False  # its invocation ended: the thread no longer counts against the cap
        self.waiters: list[StepJob] = []  # the same step of later attempts, to run on this thread next
        self.cancelled = False  # dropped before it ran (see `OnDone`)
        self.fn: Callable[..., Any] | None = None
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}
        # How the outcome goes back: a concurrent Future (Executor.submit), or `on_done` called on the loop
        # of `inbox` (in `context` if given).
        self.future: Future[Any] | None = None
        self.inbox: _Inbox | None = None
        self.on_done: OnDone | None = None
        self.context: Context | None = None
        self.result: Any = None
        self.exc: BaseException | None = None
        self.watcher: asyncio.Future[None] | None = None  # made on demand by `live_futures`

    def _watch(self) -> asyncio.Future[None] | Future[Any]:
        """Something to await until the outcome was handed back (on the loop that posted it)."""
        if self.future is not None:
            return self.future
        if self.watcher is None:
            assert self.inbox is not None
            self.watcher = self.inbox.loop.create_future()
        return self.watcher


class _Inbox:
    """Closures finished on threads, on their way back to one event loop: one wake-up per batch."""

    __slots__ = ("done", "loop", "moved_at", "out", "pool", "scheduled")

    def __init__(self, pool: StepThreads, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.done: deque[StepJob] = deque()
        # A drain is queued on the loop and has not started: later arrivals ride on it.
        self.scheduled = False
        self.out = 0  # posted from this loop and not handed back yet (touched on the loop only)
        self.moved_at = 0.0  # when a closure was last posted or handed back

    def put(self, job: StepJob) -> None:
        """Hand a finished (or cancelled) job back (any thread)."""
        self.done.append(job)
        # Appended before the flag is read: a drain that cleared the flag after this read sees the job.
        if not self.scheduled:
            self.scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody waits for the outcome
                pass

    def _drain(self) -> None:
        self.scheduled = False  # cleared first: a job appended from now on wakes the loop again
        done = self.done
        pending = self.pool._pending
        self.moved_at = time.monotonic()
        while done:
            job = done.popleft()
            self.out -= 1
            pending.pop(job, None)
            on_done, job.on_done = job.on_done, None
            result, exc = job.result, job.exc
            job.result = job.exc = None  # nothing of the step stays alive in the job
            try:
                if on_done is not None:
                    if job.context is not None:
                        job.context.run(on_done, result, exc)
                    else:
                        on_done(result, exc)
            except Exception:
                log.exception("handing back the outcome of a sync ctx.run closure failed")
            w = job.watcher
            if w is not None and not w.done():
                w.set_result(None)


class StepThreads(Executor):
    """Up to `max_threads` daemon threads, started on demand; see the module docstring."""

    def __init__(self, max_threads: int, name: str = "durably-run", idle_exit_s: float = IDLE_EXIT_S) -> None:
        self.max_threads = max_threads
        self._name = name
        self._idle_exit_s = idle_exit_s
        self._work: deque[StepJob] = deque()  # handed out, not taken by a thread yet
        self._lock = threading.Lock()
        self._threads = 0
        # Threads not running a closure, less the closures in `_work` (each has one of them reserved).
        self._idle = 0
        self._started = 0
        self._running: dict[int, StepJob] = {}
        self._abandoned = 0  # running closures marked abandoned (only then can a retry find a stuck thread)
        self._sleepers: list[threading.Lock] = []  # idle threads blocked on their own (held) lock, newest last
        self._waking = 0  # sleepers released that have not taken the pool lock since
        self._shutdown = False
        self._orphans = 0  # running closures of ended invocations (not counted against the cap)
        self.refused = 0  # submissions refused at the cap
        self.waited = 0  # submissions that waited for their step's stuck thread instead of taking another
        # Every closure handed out and not handed back yet (queued, waiting, running or in an inbox), for
        # `live_futures`. Plain dict operations, atomic under the GIL.
        self._pending: dict[StepJob, None] = {}
        self._inboxes: dict[asyncio.AbstractEventLoop, _Inbox] = {}

    # ---- submitting ----

    def post(self, job: StepJob, fn: Callable[..., Any], args: tuple[Any, ...], on_done: OnDone,
             context: Context | None = None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Run `fn(*args)` for `job` on an idle or new thread, then call `on_done(result, exception)` on the
        running event loop (in `context` if given). Raises StepThreadsBusy at the cap (and calls nothing)."""
        loop = loop or asyncio.get_running_loop()
        inbox = self._inboxes.get(loop)
        if inbox is None:
            # One per loop (an engine has one; tests run several in turn): dropped with the loop's pool.
            inbox = self._inboxes[loop] = _Inbox(self, loop)
            for old in [lp for lp in self._inboxes if lp.is_closed()]:
                del self._inboxes[old]
        job.fn, job.args, job.on_done, job.context, job.inbox = fn, args, on_done, context, inbox
        self._hand_out(job)
        inbox.moved_at = time.monotonic()
        inbox.out += 1

    def arriving(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether closures posted from `loop` less than ARRIVING_S ago are still out: their results are about
        to want a commit.

        The group committer asks before it starts a commit. Handlers woken by one commit post their sync closures
        in one tick, and the threads hand the results back in a few drains; committing at the first drain splits
        the wave in two commits (two fsyncs), and the invocations stay in two out-of-phase groups from then on.
        Waiting for the rest keeps them in one commit, as async closures are. A closure that does not return
        quickly is not waited for once its wave is ARRIVING_S old: a blocking closure delays other invocations'
        commits by about a millisecond at most, once."""
        inbox = self._inboxes.get(loop)
        return inbox is not None and inbox.out > 0 and time.monotonic() - inbox.moved_at < ARRIVING_S

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run `fn(*args, **kwargs)` on a pool thread (unlabelled)."""
        return self.submit_job(StepJob(None, "", "", ""), fn, *args, **kwargs)

    def submit_job(self, job: StepJob, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run `fn` for `job` on an idle or new thread; raises StepThreadsBusy at the cap. (`post` is the cheaper
        way back to an event loop.)"""
        fut: Future[Any] = Future()
        job.fn, job.args, job.kwargs, job.future = fn, args, kwargs, fut
        self._hand_out(job)
        fut.add_done_callback(lambda _: self._pending.pop(job, None))
        return fut

    def _hand_out(self, job: StepJob) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("the pool is shut down")
            stuck = self._stuck_in(job) if self._abandoned and job.invocation_id else None
            if stuck is not None:
                # A retry of a step whose previous attempt's thread is still in it: wait for that thread
                # rather than take another one (retries of a hung step used to fill the cap).
                stuck.waiters.append(job)
                self.waited += 1
                log.warning("invocation %s: step '%s' waits for the thread of its previous attempt, still stuck in "
                            "that step for %.0f s (a retry does not start a second thread; see GET /threads)",
                            job.invocation_id, job.step, time.monotonic() - (stuck.started or time.monotonic()))
            elif self._idle > 0:
                self._idle -= 1
                self._work.append(job)
                self._wake_locked()
            elif self._threads - self._orphans < self.max_threads and self._threads < 2 * self.max_threads:
                self._threads += 1
                self._started += 1
                # Queued first: the new thread finds the closure as it starts.
                self._work.append(job)
                threading.Thread(target=self._work_loop, name=f"{self._name}-{self._started}", daemon=True).start()
            else:
                self.refused += 1
                raise StepThreadsBusy(self._busy_message())
            self._pending[job] = None

    def _wake_locked(self) -> None:
        """Release one sleeping thread if closures wait and no thread released before has come for them yet."""
        if self._work and not self._waking and self._sleepers:
            self._waking += 1
            self._sleepers.pop().release()

    def _take_locked(self) -> StepJob | None:
        """The next closure to run, registered as running (None if there is none); wakes a helper if more
        wait, so none of them waits behind the one this thread is about to run."""
        work = self._work
        while work:
            job = work.popleft()
            if self._claim_locked(job):
                if work:
                    self._wake_locked()
                return job
            self._idle += 1  # dropped: the thread reserved for it is free again
        return None

    def _claim_locked(self, job: StepJob) -> bool:
        if job.cancelled or (job.future is not None and not job.future.set_running_or_notify_cancel()):
            return False
        job.started = time.monotonic()
        self._running[id(job)] = job
        return True

    def live_futures(self) -> list[asyncio.Future[None] | Future[Any]]:
        """Awaitables for the closures handed out and not handed back yet, except those of aborted attempts
        (which may never return) and those waiting behind them: what `durably.testing.TestRuntime.settle`
        waits for. Call it on the event loop the closures were posted from."""
        with self._lock:
            # A closure waiting for a thread stuck in an aborted attempt moves only when that one returns.
            behind = {id(w) for j in self._running.values() if j.abandoned_at is not None for w in j.waiters}
        return [job._watch() for job in list(self._pending)
                if job.abandoned_at is None and not job.cancelled and id(job) not in behind]

    def _stuck_in(self, job: StepJob) -> StepJob | None:
        """The running closure of an aborted attempt of the same invocation in the same step, if any."""
        for other in list(self._running.values()):
            if (other.abandoned_at is not None and other.invocation_id == job.invocation_id
                    and other.step == job.step):
                return other
        return None

    def _busy_message(self) -> str:
        jobs = list(self._running.values())
        stuck = sum(1 for j in jobs if j.abandoned_at is not None and not j.orphaned)
        why = f" ({stuck} of them stuck in steps of aborted attempts)" if stuck else ""
        ended = f"; {self._orphans} more stuck in steps of ended invocations do not count" if self._orphans else ""
        return (f"all {self.max_threads} threads for sync ctx.run steps are busy{why}{ended}; see GET /threads on "
                "the admin API: the attempt is retried later. Make steps return (e.g. timeouts on the calls they "
                "make) or raise --run-threads")

    def _cancel_locked(self, job: StepJob) -> None:
        """Drop a closure that has not run (its thread slot, if it had one, is given back when it is taken)."""
        if job.cancelled:
            return
        job.cancelled = True
        if job.future is not None:
            job.future.cancel()
        elif job.inbox is not None:
            job.exc = asyncio.CancelledError()
            job.inbox.put(job)

    # ---- the threads ----

    def _work_loop(self) -> None:
        lock = self._lock
        me = threading.Lock()
        me.acquire()  # released by whoever wakes this thread
        job: StepJob | None = None
        while True:
            if job is None:
                with lock:
                    job = self._take_locked()
                    if job is None:
                        if self._shutdown:
                            self._threads -= 1
                            self._idle -= 1
                            return
                        self._sleepers.append(me)
                if job is None:
                    woken = me.acquire(timeout=self._idle_exit_s)
                    with lock:
                        if not woken:
                            try:
                                self._sleepers.remove(me)
                            except ValueError:  # released just now: take the release that was given
                                me.acquire()
                                woken = True
                        if woken:
                            self._waking -= 1
                        job = self._take_locked()
                        if job is None and not woken:
                            self._idle -= 1
                            self._threads -= 1
                            return
                    continue
            # The next: a closure that waited for this one's thread (a later attempt of the same step), or
            # the next one handed out.
            job = self._run(job)

    def _run(self, job: StepJob) -> StepJob | None:
        """Run one claimed closure and hand its outcome back; returns the next closure for this thread,
        already claimed, if any: one that waited for this thread, else the next one handed out."""
        fn = job.fn
        assert fn is not None
        args, kwargs, fut = job.args, job.kwargs, job.future
        job.fn, job.args, job.kwargs = None, (), {}  # nothing of the step stays alive while the thread idles
        try:
            result = fn(*args, **kwargs)
            exc = None
        except BaseException as e:  # handed to the awaiting attempt
            result, exc = None, e
        del fn, args, kwargs
        with self._lock:
            del self._running[id(job)]
            if job.orphaned:
                self._orphans -= 1
            if job.abandoned_at is not None:
                self._abandoned -= 1
            waiters, job.waiters = job.waiters, []
            nxt = None
            while waiters:
                candidate = waiters.pop(0)
                if self._claim_locked(candidate):
                    candidate.waiters.extend(waiters)  # any later ones wait for this one now
                    nxt = candidate
                    break
            if nxt is None:
                self._idle += 1
                nxt = self._take_locked()
        if job.abandoned_at is not None:
            assert job.started is not None
            log.info("a thread stuck in %s step '%s' is free again after %.0f s", job.target, job.step,
                     time.monotonic() - job.started)
        if fut is not None:
            if exc is None:
                fut.set_result(result)
            else:
                fut.set_exception(exc)
        elif job.inbox is not None:
            job.result, job.exc = result, exc
            job.inbox.put(job)
        return nxt

    # ---- what is running ----

    def abandon(self, owner: object) -> int:
        """Mark the running closures of `owner` (an aborted attempt) abandoned; returns how many."""
        now = time.monotonic()
        n = 0
        with self._lock:
            for job in list(self._running.values()):
                if job.owner is owner and job.abandoned_at is None:
                    job.abandoned_at = now
                    self._abandoned += 1
                    n += 1
                # A closure of the aborted attempt that waits for a stuck thread will never be awaited.
                for waiter in job.waiters:
                    if waiter.owner is owner:
                        self._cancel_locked(waiter)
        return n

    def release_invocation(self, invocation_id: str) -> int:
        """The invocation ended (completed, killed, cancelled): its closures still running no longer count
        against the cap, and closures of it waiting for a thread are dropped. Returns how many were running."""
        n = 0
        if not self._running:
            return 0  # the common case: no sync step runs anywhere
        with self._lock:
            for job in list(self._running.values()):
                if job.invocation_id == invocation_id and not job.orphaned:
                    job.orphaned = True
                    self._orphans += 1
                    n += 1
                    for waiter in job.waiters:
                        self._cancel_locked(waiter)
        return n

    def busy(self) -> int:
        """How many closures are running now (stuck ones included)."""
        return len(self._running)

    def jobs(self) -> list[StepJob]:
        """The closures running now."""
        return list(self._running.values())

    def stuck_report(self) -> list[str]:
        """One line per (handler, step) with threads stuck in aborted steps, most first."""
        now = time.monotonic()
        groups: dict[tuple[str, str], list[float]] = {}
        for job in self.jobs():
            if job.abandoned_at is not None and job.started is not None:
                groups.setdefault((job.target, job.step), []).append(now - job.started)
        lines = []
        for (target, step), ages in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            n = len(ages)
            lines.append(f"{n} thread{'s' if n != 1 else ''} stuck in {target} step '{step}' for {max(ages):.0f} s")
        return lines

    def status(self) -> dict[str, Any]:
        """The pool as the admin API shows it."""
        now = time.monotonic()
        jobs = sorted(self.jobs(), key=lambda j: j.started or now)
        steps = [{"invocation_id": j.invocation_id, "target": j.target, "step": j.step,
                  "running_for_s": round(now - (j.started or now), 3), "stuck": j.abandoned_at is not None}
                 for j in jobs]
        with self._lock:
            threads, idle, orphans = self._threads, self._idle, self._orphans
            waiting = sum(1 for j in self._running.values() for w in j.waiters if not w.cancelled)
        return {"max_threads": self.max_threads, "threads": threads, "idle": idle, "busy": len(jobs),
                "stuck": sum(1 for s in steps if s["stuck"]), "of_ended_invocations": orphans,
                "waiting": waiting, "waiting_for_stuck": self.waited, "refused": self.refused,
                "stuck_summary": self.stuck_report(), "steps": steps}

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; running closures are left to finish (or to die with the process)."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                for job in self._work:
                    self._cancel_locked(job)
                for job in self._running.values():
                    for waiter in job.waiters:
                        self._cancel_locked(waiter)
            # Every sleeping thread wakes, finds nothing to do (or what is left) and exits.
            while self._sleepers:
                self._waking += 1
                self._sleepers.pop().release()


class AttemptThreads:
    """The pool as one attempt sees it: its closures are labelled with the invocation and step."""

    __slots__ = ("invocation_id", "pool", "target")

    def __init__(self, pool: StepThreads, invocation_id: str, target: str) -> None:
        self.pool = pool
        self.invocation_id = invocation_id
        self.target = target

    def post_step(self, step: str, fn: Callable[..., Any], args: tuple[Any, ...], on_done: OnDone,
                  context: Context | None = None) -> None:
        """Run a sync closure of step `step` as `fn(*args)`; `on_done(result, exception)` is called on the
        running loop (in `context` if given) once it returned. Raises StepThreadsBusy when no thread may be
        used."""
        self.pool.post(StepJob(self, self.invocation_id, self.target, step), fn, args, on_done, context)

    def submit_step(self, step: str, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """Run a sync closure of step `step` (raises StepThreadsBusy when no thread may be used)."""
        return self.pool.submit_job(StepJob(self, self.invocation_id, self.target, step), fn, *args)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Executor-style submission (an unnamed step)."""
        return self.pool.submit_job(StepJob(self, self.invocation_id, self.target, ""), fn, *args, **kwargs)

    def abandon(self) -> int:
        """The attempt was aborted: its running closures count as stuck until they return."""
        return self.pool.abandon(self)


async def report_stuck(pool: StepThreads, interval: float) -> None:
    """Log the stuck threads every `interval` seconds while there are any."""
    while True:
        await asyncio.sleep(interval)
        for line in pool.stuck_report():
            log.warning("%s (their invocations were killed or aborted; a thread stays busy until its closure "
                        "returns)", line)
