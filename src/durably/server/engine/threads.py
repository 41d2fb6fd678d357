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
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from durably.sdk.errors import RetryableError

log = logging.getLogger("durably.threads")

IDLE_EXIT_S = 60.0


class StepThreadsBusy(RetryableError):
    """No thread is free for a sync step and the pool is at its cap: the attempt is retried later."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 503)


class StepJob:
    """One closure submitted to the pool, and where it comes from."""

    __slots__ = ("abandoned_at", "invocation_id", "orphaned", "owner", "started", "step", "target", "waiters")

    def __init__(self, owner: object, invocation_id: str, target: str, step: str) -> None:
        self.owner = owner
        self.invocation_id = invocation_id
        self.target = target
        self.step = step
        self.started: float | None = None  # monotonic time a thread began running it
        self.abandoned_at: float | None = None  # its attempt was aborted (kill, abort timeout, shutdown)
        self.orphaned = False  # its invocation ended: the thread no longer counts against the cap
        self.waiters: list[_Item] = []  # the same step of later attempts, to run on this thread next


_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any], StepJob]


class StepThreads(Executor):
    """Up to `max_threads` daemon threads, started on demand; see the module docstring."""

    def __init__(self, max_threads: int, name: str = "durably-run", idle_exit_s: float = IDLE_EXIT_S) -> None:
        self.max_threads = max_threads
        self._name = name
        self._idle_exit_s = idle_exit_s
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for work that no submitted item has claimed yet
        self._started = 0
        self._running: dict[int, StepJob] = {}
        self._shutdown = False
        self._orphans = 0  # running closures of ended invocations (not counted against the cap)
        self.refused = 0  # submissions refused at the cap
        self.waited = 0  # submissions that waited for their step's stuck thread instead of taking another
        # Every closure submitted and not done yet (queued, waiting or running), for `live_futures`. Changed
        # from done callbacks, which may run with `_lock` held: plain dict operations, atomic under the GIL.
        self._pending: dict[Future[Any], StepJob] = {}

    # ---- submitting ----

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run `fn(*args, **kwargs)` on a pool thread (unlabelled)."""
        return self.submit_job(StepJob(None, "", "", ""), fn, *args, **kwargs)

    def submit_job(self, job: StepJob, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run `fn` for `job` on an idle or new thread; raises StepThreadsBusy at the cap."""
        fut: Future[Any] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("the pool is shut down")
            stuck = self._stuck_in(job) if job.invocation_id else None
            if stuck is not None:
                # A retry of a step whose previous attempt's thread is still in it: wait for that thread
                # rather than take another one (retries of a hung step used to fill the cap).
                stuck.waiters.append((fut, fn, args, kwargs, job))
                self.waited += 1
                log.warning("invocation %s: step '%s' waits for the thread of its previous attempt, still stuck in "
                            "that step for %.0f s (a retry does not start a second thread; see GET /threads)",
                            job.invocation_id, job.step, time.monotonic() - (stuck.started or time.monotonic()))
            elif self._idle > 0:
                self._idle -= 1
                self._queue.put((fut, fn, args, kwargs, job))
            elif self._threads - self._orphans < self.max_threads and self._threads < 2 * self.max_threads:
                self._threads += 1
                self._started += 1
                # Queued first: the new thread finds the closure as it starts (while this thread waits for
                # it to start), instead of waiting for the GIL after this thread has gone on.
                self._queue.put((fut, fn, args, kwargs, job))
                threading.Thread(target=self._work, name=f"{self._name}-{self._started}", daemon=True).start()
            else:
                self.refused += 1
                raise StepThreadsBusy(self._busy_message())
        self._pending[fut] = job
        fut.add_done_callback(self._pending_done)
        return fut

    def _pending_done(self, fut: Future[Any]) -> None:
        self._pending.pop(fut, None)

    def live_futures(self) -> list[Future[Any]]:
        """The closures submitted and not done yet, except those of aborted attempts (which may never return)
        and those waiting behind them: what `durably.testing.TestRuntime.settle` waits for."""
        with self._lock:
            # A closure waiting for a thread stuck in an aborted attempt moves only when that one returns.
            behind = {id(w[0]) for j in self._running.values() if j.abandoned_at is not None for w in j.waiters}
        return [f for f, job in list(self._pending.items())
                if job.abandoned_at is None and not f.done() and id(f) not in behind]

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

    # ---- the threads ----

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._idle_exit_s)
            except queue.Empty:
                with self._lock:
                    try:
                        item = self._queue.get_nowait()  # claimed just now: run it
                    except queue.Empty:
                        self._idle -= 1
                        self._threads -= 1
                        return
            if item is None:
                with self._lock:
                    self._threads -= 1
                return
            # A closure that waited for this one's thread (a later attempt of the same step) runs next, here.
            nxt: _Item | None = item
            while nxt is not None:
                nxt = self._run(nxt)
            del item  # nothing of the step stays alive while the thread idles
            with self._lock:
                self._idle += 1

    def _run(self, item: _Item) -> _Item | None:
        """Run one closure; returns the next closure that waited for this thread, if any."""
        fut, fn, args, kwargs, job = item
        if fut.set_running_or_notify_cancel():
            job.started = time.monotonic()
            key = id(job)
            with self._lock:
                self._running[key] = job
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as e:  # handed to the awaiting attempt
                fut.set_exception(e)
            finally:
                with self._lock:
                    del self._running[key]
                    if job.orphaned:
                        self._orphans -= 1
                if job.abandoned_at is not None:
                    log.info("a thread stuck in %s step '%s' is free again after %.0f s", job.target, job.step,
                             time.monotonic() - job.started)
        with self._lock:
            waiters, job.waiters = job.waiters, []
        while waiters:
            nxt = waiters.pop(0)
            if not nxt[0].cancelled():
                nxt[4].waiters.extend(waiters)  # any later ones wait for this one now
                return nxt
        return None

    # ---- what is running ----

    def abandon(self, owner: object) -> int:
        """Mark the running closures of `owner` (an aborted attempt) abandoned; returns how many."""
        now = time.monotonic()
        n = 0
        with self._lock:
            for job in list(self._running.values()):
                if job.owner is owner and job.abandoned_at is None:
                    job.abandoned_at = now
                    n += 1
                # A closure of the aborted attempt that waits for a stuck thread will never be awaited.
                for waiter in job.waiters:
                    if waiter[4].owner is owner:
                        waiter[0].cancel()
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
                        waiter[0].cancel()
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
            waiting = sum(1 for j in self._running.values() for w in j.waiters if not w[0].cancelled())
        return {"max_threads": self.max_threads, "threads": threads, "idle": idle, "busy": len(jobs),
                "stuck": sum(1 for s in steps if s["stuck"]), "of_ended_invocations": orphans,
                "waiting": waiting, "waiting_for_stuck": self.waited, "refused": self.refused,
                "stuck_summary": self.stuck_report(), "steps": steps}

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; running closures are left to finish (or to die with the process)."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
                for job in self._running.values():
                    for waiter in job.waiters:
                        waiter[0].cancel()
            for _ in range(self._threads):
                self._queue.put(None)


class AttemptThreads:
    """The pool as one attempt sees it: its closures are labelled with the invocation and step."""

    __slots__ = ("invocation_id", "pool", "target")

    def __init__(self, pool: StepThreads, invocation_id: str, target: str) -> None:
        self.pool = pool
        self.invocation_id = invocation_id
        self.target = target

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
    import asyncio

    while True:
        await asyncio.sleep(interval)
        for line in pool.stuck_report():
            log.warning("%s (their invocations were killed or aborted; a thread stays busy until its closure "
                        "returns)", line)
