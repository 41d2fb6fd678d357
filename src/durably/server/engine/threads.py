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

    __slots__ = ("abandoned_at", "invocation_id", "owner", "started", "step", "target")

    def __init__(self, owner: object, invocation_id: str, target: str, step: str) -> None:
        self.owner = owner
        self.invocation_id = invocation_id
        self.target = target
        self.step = step
        self.started: float | None = None  # monotonic time a thread began running it
        self.abandoned_at: float | None = None  # its attempt was aborted (kill, abort timeout, shutdown)


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
        self.refused = 0  # submissions refused at the cap

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
            if self._idle > 0:
                self._idle -= 1
                self._queue.put((fut, fn, args, kwargs, job))
            elif self._threads < self.max_threads:
                self._threads += 1
                self._started += 1
                # Queued first: the new thread finds the closure as it starts (while this thread waits for
                # it to start), instead of waiting for the GIL after this thread has gone on.
                self._queue.put((fut, fn, args, kwargs, job))
                threading.Thread(target=self._work, name=f"{self._name}-{self._started}", daemon=True).start()
            else:
                self.refused += 1
                raise StepThreadsBusy(self._busy_message())
        return fut

    def _busy_message(self) -> str:
        stuck = sum(1 for j in self._running.values() if j.abandoned_at is not None)
        why = f" ({stuck} of them stuck in steps of killed or aborted invocations; see GET /threads on the " \
              "admin API)" if stuck else ""
        return (f"all {self.max_threads} threads for sync ctx.run steps are busy{why}: the attempt is retried "
                "later. Make steps return (e.g. timeouts on the calls they make) or raise --run-threads")

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
            fut, fn, args, kwargs, job = item
            if fut.set_running_or_notify_cancel():
                job.started = time.monotonic()
                key = id(job)
                self._running[key] = job
                try:
                    fut.set_result(fn(*args, **kwargs))
                except BaseException as e:  # handed to the awaiting attempt
                    fut.set_exception(e)
                finally:
                    del self._running[key]
                    if job.abandoned_at is not None:
                        log.info("a thread stuck in %s step '%s' is free again after %.0f s", job.target, job.step,
                                 time.monotonic() - job.started)
            del fut, fn, args, kwargs, job, item  # nothing of the step stays alive while the thread idles
            with self._lock:
                self._idle += 1

    # ---- what is running ----

    def abandon(self, owner: object) -> int:
        """Mark the running closures of `owner` (an aborted attempt) abandoned; returns how many."""
        now = time.monotonic()
        n = 0
        for job in list(self._running.values()):
            if job.owner is owner and job.abandoned_at is None:
                job.abandoned_at = now
                n += 1
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
            threads, idle = self._threads, self._idle
        return {"max_threads": self.max_threads, "threads": threads, "idle": idle, "busy": len(jobs),
                "stuck": sum(1 for s in steps if s["stuck"]), "refused": self.refused,
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
