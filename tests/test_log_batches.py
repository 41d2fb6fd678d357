"""Issue 21, item 4: `durably serve` writes the lifecycle lines from a log thread, in batches.

Every line arrives, whole and in order, with the arguments it had when it was logged; lines queued when the
process stops are written; other lines are written at once by the same handler.
"""

from __future__ import annotations

import io
import json
import logging
import time

import pytest

from durably.server.engine.invocation import Invocation, Outcome
from durably.server.observe import lifecycle_log
from durably.server.observe.lifecycle_log import LifecycleLog
from durably.server.observe.log_format import LIFECYCLE_LOGGER, TEXT_FORMAT, DeferredFormatHandler, configure_logging


def wait_for(condition, what: str, within: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        time.sleep(0.005)


def handlers(stream: io.StringIO, linger_s: float) -> tuple[logging.StreamHandler, DeferredFormatHandler]:  # type: ignore[type-arg]
    target = logging.StreamHandler(stream)
    target.setFormatter(logging.Formatter(TEXT_FORMAT))
    return target, DeferredFormatHandler(target, linger_s)


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(LIFECYCLE_LOGGER, logging.INFO, __file__, 1, msg, args, None)


def test_every_line_arrives_whole_and_in_order() -> None:
    stream = io.StringIO()
    _, deferred = handlers(stream, 0.01)
    try:
        for i in range(500):
            deferred.handle(record("invocation %s completed in %d ms", f"inv_{i}", i))
        wait_for(lambda: stream.getvalue().count("\n") == 500, "the 500 lines")
        lines = stream.getvalue().splitlines()
        assert [line.split(": ", 1)[1] for line in lines] == [f"invocation inv_{i} completed in {i} ms"
                                                              for i in range(500)]
        assert all(f" INFO {LIFECYCLE_LOGGER}: " in line for line in lines)
    finally:
        deferred.stop()


def test_mutable_arguments_are_formatted_when_logged() -> None:
    stream = io.StringIO()
    _, deferred = handlers(stream, 0.01)
    try:
        items = ["a"]
        deferred.handle(record("items %s", items))
        items.append("b")  # changed after the call: the line shows what was logged
        wait_for(lambda: "items" in stream.getvalue(), "the line")
        assert stream.getvalue().rstrip().endswith("items ['a']")
    finally:
        deferred.stop()


def test_lines_queued_at_close_and_at_stop_are_written() -> None:
    stream = io.StringIO()
    _, deferred = handlers(stream, 30.0)  # the thread would wait half a minute before writing
    for i in range(3):
        deferred.handle(record("line %d", i))
    deferred.close()
    assert [line.rsplit(": ", 1)[1] for line in stream.getvalue().splitlines()] == ["line 0", "line 1", "line 2"]
    deferred.handle(record("line %d", 3))
    deferred.stop()
    assert stream.getvalue().splitlines()[-1].endswith("line 3")


def test_lines_keep_coming_after_dict_config_closed_the_handler() -> None:
    # An ASGI server's logging.config.dictConfig closes every handler it finds (uvicorn does, at start), then
    # goes on logging: the lifecycle lines must not stop there.
    stream = io.StringIO()
    _, deferred = handlers(stream, 0.01)
    try:
        deferred.close()
        deferred.handle(record("after %s", "close"))
        wait_for(lambda: "after close" in stream.getvalue(), "the line logged after close")
    finally:
        deferred.stop()


def test_a_filtered_record_is_not_queued() -> None:
    stream = io.StringIO()
    _, deferred = handlers(stream, 0.0)
    deferred.addFilter(lambda r: r.name == LIFECYCLE_LOGGER)
    other = logging.LogRecord("durably.engine", logging.INFO, __file__, 1, "not mine", None, None)
    assert not deferred.handle(other)
    deferred.handle(record("mine"))
    deferred.stop()
    assert stream.getvalue().count("\n") == 1 and "mine" in stream.getvalue()


def test_serve_logging_makes_lifecycle_records_on_the_log_thread_only_while_nothing_else_listens(
        capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)

    def inv(n: int) -> Invocation:
        return Invocation(id=f"inv_{n}", service="Bench", handler="echo", key="", status="invoked",
                          idempotency_key=None, created_at=1000, modified_at=0, journal=None, seq=n)

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    try:
        configure_logging("info", "json")
        deferred = next(h for h in root.handlers if isinstance(h, DeferredFormatHandler))
        events = LifecycleLog()
        events.started(inv(1))
        events.ended(inv(1), Outcome(value=b"1"), 1005)
        # Another handler (a test's log capture, say) sees lifecycle lines again: they go through logging.
        keep = Keep()
        root.addHandler(keep)
        events.started(inv(2))
        deferred.stop()  # writes what is queued
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [(x["event"], x["invocation_id"], x["level"], x["logger"]) for x in lines] == [
            ("started", "inv_1", "info", LIFECYCLE_LOGGER), ("completed", "inv_1", "info", LIFECYCLE_LOGGER),
            ("started", "inv_2", "info", LIFECYCLE_LOGGER)]
        assert lines[0]["message"] == "invocation inv_1 started: Bench/echo"
        assert lines[1]["message"] == "invocation inv_1 completed in 5 ms" and lines[1]["duration_ms"] == 5
        assert lines[0]["ts"].endswith("Z")
        assert [r.getMessage() for r in keep.records] == ["invocation inv_2 started: Bench/echo"]
    finally:
        lifecycle_log.use_sink(None)
        for h in root.handlers[:]:
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
