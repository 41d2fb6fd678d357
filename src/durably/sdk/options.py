"""Retry settings for `ctx.run` steps and for whole invocations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, Literal, TypeVar

from durably.sdk.serde import Serde

T = TypeVar("T")


@dataclass
class RunOptions(Generic[T]):
    """How a `ctx.run` step is retried and how its result is serialized.

    With no retry field set, a failing closure fails the attempt and the invocation is retried under its
    retry policy, forever by default. With any retry field set, the step retries with exponential backoff
    (defaults: 50 ms initial, factor 2, 10 s cap) until `max_attempts` attempts (the first included) or
    `max_duration` (alias `max_retry_duration`) is spent; then the last error becomes a TerminalError
    journaled as the step's result, which the handler can catch.
    """

    max_attempts: int | None = None
    max_duration: timedelta | None = None
    initial_retry_interval: timedelta | None = None
    max_retry_interval: timedelta | None = None
    retry_interval_factor: float | None = None
    serde: Serde[T] | None = None
    type_hint: type[T] | None = None
    max_retry_duration: timedelta | None = None

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("RunOptions.max_attempts must be at least 1")
        if self.max_retry_duration is not None and self.max_duration is None:
            # Restate's SDK drops max_retry_duration in run_typed; users who wrote it mean it.
            self.max_duration = self.max_retry_duration

    @property
    def has_retry_policy(self) -> bool:
        """True when any retry field is set (the step then retries within its own limits)."""
        return any(
            v is not None
            for v in (
                self.max_attempts,
                self.max_duration,
                self.initial_retry_interval,
                self.max_retry_interval,
                self.retry_interval_factor,
            )
        )

    def retry_delay(self, attempt: int) -> timedelta:
        """The delay before retry number `attempt` (1 for the first retry)."""
        initial = self.initial_retry_interval or timedelta(milliseconds=50)
        cap = self.max_retry_interval or timedelta(seconds=10)
        factor = self.retry_interval_factor if self.retry_interval_factor is not None else 2.0
        return min(initial * (factor ** (attempt - 1)), cap)


@dataclass(frozen=True)
class InvocationRetryPolicy:
    """How the runtime retries a failing invocation (per service or per handler).

    Unset fields take the runtime defaults: 500 ms initial interval, factor 2.0, 60 s cap, 70 attempts
    (the first included), then `pause` (the invocation waits for an operator to resume it). With
    `on_max_attempts="kill"` the invocation instead fails with the last error.
    """

    initial_interval: timedelta | None = None
    exponentiation_factor: float | None = None
    max_interval: timedelta | None = None
    max_attempts: int | None = None
    on_max_attempts: Literal["pause", "kill"] | None = None

    def __post_init__(self) -> None:
        if self.on_max_attempts not in (None, "pause", "kill"):
            raise ValueError("on_max_attempts must be 'pause' or 'kill'")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def merged_over(self, base: InvocationRetryPolicy) -> InvocationRetryPolicy:
        """This policy with its unset fields taken from `base`."""
        fields: dict[str, Any] = {}
        for name in ("initial_interval", "exponentiation_factor", "max_interval", "max_attempts",
                     "on_max_attempts"):
            mine = getattr(self, name)
            fields[name] = mine if mine is not None else getattr(base, name)
        return InvocationRetryPolicy(**fields)


DEFAULT_INVOCATION_RETRY_POLICY = InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    exponentiation_factor=2.0,
    max_interval=timedelta(seconds=60),
    max_attempts=70,
    on_max_attempts="pause",
)
