"""How `durably serve` writes its log: plain text lines, or one JSON object per line for log shippers."""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime

from durably.server.observe import lifecycle_log

# Extra fields the engine puts on records (see durably.server.observe.lifecycle_log), written as JSON keys.
_EXTRA_FIELDS = ("event", "invocation_id", "service", "handler", "duration_ms", "error", "repeated")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# A partition process of `--partitions N` names itself after the level (`... INFO p1 durably.server: ...`).
PARTITION_TEXT_FORMAT = "%(asctime)s %(levelname)s p{index} %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", ...extra fields, "exception"?}` on one line (and `"partition"` in
    a partition process of `--partitions N`)."""

    def __init__(self, partition: int | None = None) -> None:
        super().__init__()
        self.partition = partition

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.partition is not None:
            out["partition"] = self.partition
        for name in _EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


# The logger of the per-invocation lifecycle lines (durably.server.observe.lifecycle_log): two or more lines
# per invocation, on the hot path.
LIFECYCLE_LOGGER = "durably.invocations"
_IMMUTABLE = (str, int, float, bool, bytes, type(None))


# How long the log thread lets lifecycle records gather after the first one wakes it: one wake-up, one write and
# one flush for all of them, instead of one each (at one invocation a millisecond, two wake-ups per invocation
# cost the event loop more than the lines themselves). The lines reach stderr this much later at most.
LINGER_S = 0.05


class DeferredFormatHandler(logging.Handler):
    """Hands records to a log thread without formatting them; the thread formats and writes them in batches.

    The standard QueueHandler formats each record in the caller's thread (its arguments might change before
    another thread reads them), and wakes the listener thread for every record. The lifecycle lines' arguments
    are strings and numbers, which cannot change, so their formatting and the write to stderr both leave the
    event loop; a record with any other argument is formatted here, as the standard handler would. The thread
    is woken once per batch (see LINGER_S), and writes a batch with one write and one flush.
    """

    def __init__(self, target: logging.Handler, linger_s: float = LINGER_S) -> None:
        super().__init__()
        self.target = target
        self.linger_s = linger_s
        # LogRecords, or (created, msg, args, extra) of lifecycle lines made into records on the thread.
        self._records: deque[logging.LogRecord | tuple[float, str, tuple[object, ...], dict[str, object]]] = deque()
        # The handlers `configure_logging` gave the root logger; `lifecycle_line` checks they are still all.
        self.expected: list[logging.Handler] = []
        self._armed = False  # the thread was woken for what is queued and has not taken it yet
        self._wake = threading.Event()
        self._writing = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="durably-log", daemon=True)
        self._thread.start()

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        """Queue the record (no handler lock: appending to a deque is atomic)."""
        if not self.filter(record):
            return False
        args = record.args
        if args and not (isinstance(args, tuple) and all(isinstance(a, _IMMUTABLE) for a in args)):
            record.msg = record.getMessage()
            record.args = None
        self._records.append(record)
        # Appended before the flag is read: a thread that cleared the flag after this read takes the record.
        if not self._armed:
            self._armed = True
            self._wake.set()
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record (see `handle`)."""
        self.handle(record)

    def lifecycle_line(self, msg: str, args: tuple[object, ...], extra: dict[str, object]) -> bool:
        """Queue a lifecycle line of `durably.invocations` at info without making its LogRecord on the event
        loop (the thread makes it, with the time of this call). Only while logging is as `configure_logging`
        left it, so that the record could go nowhere else; False (and nothing queued) otherwise."""
        if _ROOT.handlers != self.expected or _LIFECYCLE.handlers or _DURABLY.handlers or _ROOT.filters \
                or _LIFECYCLE.filters or _DURABLY.filters or not _LIFECYCLE.propagate or _LIFECYCLE.disabled:
            return False
        self._records.append((time.time(), msg, args, extra))
        if not self._armed:
            self._armed = True
            self._wake.set()
        return True

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if not self._stopping:
                time.sleep(self.linger_s)  # let more records gather: one write for all of them
            self._wake.clear()
            self._armed = False  # cleared before taking: a record queued from now on wakes the thread again
            self._write_all()
            if self._stopping:
                return

    def _write_all(self) -> None:
        with self._writing:  # one writer at a time (the thread, or `flush`): lines stay in order
            self._write_queued()

    def _write_queued(self) -> None:
        records = self._records
        if not records:
            return
        target = self.target
        lines = []
        while records:
            item = records.popleft()
            record = item if isinstance(item, logging.LogRecord) else _lifecycle_record(*item)
            try:
                lines.append(target.format(record))
            except Exception:
                target.handleError(record)
        if not lines:
            return
        stream = getattr(target, "stream", None)
        target.acquire()  # the target's lock: these lines never tear a line written meanwhile
        try:
            if stream is None:
                return
            stream.write(getattr(target, "terminator", "\n").join(lines) + getattr(target, "terminator", "\n"))
            stream.flush()
        except Exception:
            pass  # stderr is gone (closed pipe): nothing else to tell it to
        finally:
            target.release()

    def flush(self) -> None:
        """Write what is queued now."""
        self._write_all()

    def close(self) -> None:
        """Write what is queued. The thread keeps serving: `logging.config.dictConfig` (an ASGI server
        configuring its own loggers) closes every handler it finds, ours included, and goes on logging."""
        self._write_all()
        super().close()

    def stop(self) -> None:
        """Write what is queued and stop the thread (at exit)."""
        if not self._stopping:
            self._stopping = True
            self._wake.set()
            self._thread.join(5)
        self._write_all()


_ROOT = logging.getLogger()
_DURABLY = logging.getLogger("durably")
_LIFECYCLE = logging.getLogger(LIFECYCLE_LOGGER)


def _lifecycle_record(created: float, msg: str, args: tuple[object, ...],
                      extra: dict[str, object]) -> logging.LogRecord:
    record = logging.LogRecord(LIFECYCLE_LOGGER, logging.INFO, "", 0, msg, args, None)
    record.relativeCreated += (created - record.created) * 1000
    record.created = created
    record.msecs = int((created - int(created)) * 1000) + 0.0
    record.__dict__.update(extra)
    return record


def configure_logging(level: str, fmt: str = "text", partition: int | None = None) -> None:
    """Send the root logger's records to stderr at `level`, as text or JSON lines; `partition`: every line names
    that partition (`p1` after the level, or a `"partition"` key), so the processes' shared log tells them apart.

    The lifecycle lines (one or more per invocation) are formatted and written by a thread of their own, in
    batches, so the event loop only creates their records; every other line is written at once. What is queued
    is written at exit. Both go through one handler, so lines are never torn.
    """
    handler = logging.StreamHandler()
    text = TEXT_FORMAT if partition is None else PARTITION_TEXT_FORMAT.format(index=partition)
    handler.setFormatter(JsonFormatter(partition) if fmt == "json" else logging.Formatter(text))
    handler.addFilter(lambda record: record.name != LIFECYCLE_LOGGER)
    deferred = DeferredFormatHandler(handler)
    deferred.addFilter(lambda record: record.name == LIFECYCLE_LOGGER)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, DeferredFormatHandler):
            old.stop()
    root.addHandler(handler)
    root.addHandler(deferred)
    root.setLevel(level.upper())
    deferred.expected = [handler, deferred]
    # Lifecycle lines skip making their LogRecord on the event loop while nothing else could see them.
    lifecycle_log.use_sink(deferred.lifecycle_line)
    atexit.register(deferred.stop)
