"""restate-sdk's `restate.retry_policy`: the per-service and per-handler invocation retry policy."""

from durably.sdk.options import InvocationRetryPolicy

__all__ = ["InvocationRetryPolicy"]
