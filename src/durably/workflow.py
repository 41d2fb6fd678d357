"""restate-sdk's `restate.workflow`: the Workflow (a main handler run once per key, and shared handlers)."""

from durably.sdk.options import InvocationRetryPolicy
from durably.sdk.serde import DefaultSerde, Serde
from durably.sdk.service import Workflow

__all__ = ["DefaultSerde", "InvocationRetryPolicy", "Serde", "Workflow"]
