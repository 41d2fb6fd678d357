"""Errors a handler author raises and catches."""

from __future__ import annotations

from datetime import timedelta


class TerminalError(Exception):
    """A failure that must not be retried.

    Raised in a handler, it ends the invocation with this failure, and the HTTP caller receives
    `status_code` as the response status with `{"code", "message", "metadata"}` as the body. Raised inside
    a `ctx.run` closure, it is journaled as the run's result and re-raised at the `await`, where the
    handler may catch it and compensate. Failures of awaited calls, runs, promises and awakeables arrive as
    TerminalError too.
    """

    def __init__(self, message: str, status_code: int = 500, metadata: dict[str, str] | None = None) -> None:
        # Whatever was passed, the failure carries text: a non-str message must not turn a terminal
        # failure into an unencodable one that is retried.
        message = message if isinstance(message, str) else str(message)
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.metadata = {str(k): str(v) for k, v in metadata.items()} if metadata else metadata

    def __repr__(self) -> str:
        return f"TerminalError({self.message!r}, status_code={self.status_code})"


class RetryableError(Exception):
    """A failure that should be retried, optionally after a given delay.

    Raised in a handler, the attempt ends and the runtime retries the invocation after `retry_after`
    (instead of the delay the retry policy would pick). Raised in a `ctx.run` closure, the run is retried
    after `retry_after` within the limits of its RunOptions.
    """

    def __init__(
        self, message: str, status_code: int = 500, retry_after: timedelta | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after


class SdkInternalBaseException(BaseException):
    """Unwinds a handler when the runtime ends the attempt (suspension, protocol error, abort).

    It derives from BaseException so that `except Exception` in user code does not swallow it. A bare
    `except:` would; re-raise anything for which `is_internal_exception` is true.
    """


class SuspendedException(SdkInternalBaseException):
    """The attempt suspended: the handler waits for something that is not there yet."""


class AttemptEndedException(SdkInternalBaseException):
    """The attempt ended with an error message (retryable failure, journal mismatch, abort)."""


def is_internal_exception(e: BaseException) -> bool:
    """Whether an exception is the runtime unwinding the handler; user code must re-raise it."""
    return isinstance(e, SdkInternalBaseException)


class VMError(Exception):
    """A protocol-level failure in the journal state machine; ends the attempt with this code."""

    def __init__(self, code: int, message: str, related_index: int | None = None,
                 related_type: int | None = None, related_name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.related_index = related_index
        self.related_type = related_type
        self.related_name = related_name


JOURNAL_MISMATCH = 570
PROTOCOL_VIOLATION = 571
UNSUPPORTED_FEATURE = 573
