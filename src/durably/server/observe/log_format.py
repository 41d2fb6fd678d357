"""How `durably serve` writes its log: plain text lines, or one JSON object per line for log shippers."""

from __future__ import annotations

import atexit
import json
import logging
import queue
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener

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


class DeferredFormatHandler(QueueHandler):
    """Hands records to a queue without formatting them: the listener thread formats and writes them.

    The standard QueueHandler formats each record in the caller's thread (its arguments might change before
    another thread reads them). The lifecycle lines' arguments are strings and numbers, which cannot change, so
    their formatting and the write to stderr both leave the event loop; a record with any other argument is
    formatted here, as the standard handler would.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The record as queued: arguments kept when they cannot change, else the message formatted now."""
        args = record.args
        if args and not (isinstance(args, tuple) and all(isinstance(a, _IMMUTABLE) for a in args)):
            record.msg = record.getMessage()
            record.args = None
        return record


class _Writes(logging.Handler):
    """Emits through another handler under its lock, without its filters (the listener thread's side)."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.acquire()
        try:
            self.target.emit(record)
        finally:
            self.target.release()


def configure_logging(level: str, fmt: str = "text", partition: int | None = None) -> None:
    """Send the root logger's records to stderr at `level`, as text or JSON lines; `partition`: every line names
    that partition (`p1` after the level, or a `"partition"` key), so the processes' shared log tells them apart.

    The lifecycle lines (one or more per invocation) are formatted and written by a thread of their own, so the
    event loop only creates their records; every other line is written at once. What is queued is written at
    exit. Both go through one handler, so lines are never torn.
    """
    handler = logging.StreamHandler()
    text = TEXT_FORMAT if partition is None else PARTITION_TEXT_FORMAT.format(index=partition)
    handler.setFormatter(JsonFormatter(partition) if fmt == "json" else logging.Formatter(text))
    handler.addFilter(lambda record: record.name != LIFECYCLE_LOGGER)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    deferred = DeferredFormatHandler(records)
    deferred.addFilter(lambda record: record.name == LIFECYCLE_LOGGER)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.addHandler(deferred)
    root.setLevel(level.upper())
    listener = QueueListener(records, _Writes(handler))
    listener.start()
    atexit.register(listener.stop)
