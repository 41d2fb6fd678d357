"""The errors of restate-sdk's `restate.exceptions`, as Durably's own classes (so `except` and `isinstance` match)."""

from durably.sdk.errors import (
    AttemptEndedException,
    RetryableError,
    SdkInternalBaseException,
    SuspendedException,
    TerminalError,
    is_internal_exception,
)

# restate-sdk's name for "the attempt ended with a retryable error".
SdkInternalException = AttemptEndedException

__all__ = [
    "RetryableError",
    "SdkInternalBaseException",
    "SdkInternalException",
    "SuspendedException",
    "TerminalError",
    "is_internal_exception",
]
