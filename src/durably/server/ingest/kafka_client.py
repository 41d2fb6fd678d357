"""The Kafka client library behind the consumers: importing it (an optional extra), one thread per client for
its blocking calls, and its log lines.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["KAFKA_EXTRA_HINT", "ClientLogger", "ClientThread", "KafkaUnavailable", "import_kafka", "kafka_available"]

T = TypeVar("T")

_client_log = logging.getLogger("durably.ingest.kafka")

KAFKA_EXTRA_HINT = ("Kafka subscriptions need the optional extra `kafka` (durably[kafka]): "
                    "pip install -e '.[kafka]' in your durably checkout")

# Seconds between two log lines for the same recurring client condition.
LOG_EVERY = 30.0


class KafkaUnavailable(RuntimeError):
    """The Kafka client library is not installed (the `durably[kafka]` extra)."""


def kafka_available() -> bool:
    """Whether the Kafka client library can be imported."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return True


def import_kafka() -> Any:
    """The `confluent_kafka` module, or `KafkaUnavailable` naming the extra to install."""
    try:
        import confluent_kafka
    except ImportError as exc:
        raise KafkaUnavailable(KAFKA_EXTRA_HINT) from exc
    return confluent_kafka


class ClientThread:
    """Runs blocking client calls, one at a time, on a daemon thread of their own.

    A daemon thread (not an executor's) so that a client stuck on a dead broker can be abandoned at exit.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue())
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            fut, fn, args = item
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting coroutine, whatever it is
                _resolve(fut, None, exc)
            else:
                _resolve(fut, result, None)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls.put((fut, fn, args))
        return await fut

    def close(self) -> None:
        self._calls.put(None)


def _resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    def settle() -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    try:
        fut.get_loop().call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


class ClientLogger:
    """librdkafka's log lines, to the `durably.ingest.kafka` logger.

    While a broker is down the client logs every reconnect attempt; the consumer's error callback already
    reports that state (rate-limited), so a repeat of the same facility within `LOG_EVERY` goes to DEBUG.
    """

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def log(self, level: int, fmt: str, *args: Any) -> None:
        if level >= logging.WARNING:
            facility = str(args[0]) if args else fmt
            now = time.monotonic()
            if now - self._last.get(facility, -LOG_EVERY) < LOG_EVERY:
                level = logging.DEBUG
            else:
                self._last[facility] = now
        _client_log.log(level, fmt, *args)
