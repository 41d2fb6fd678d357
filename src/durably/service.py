"""restate-sdk's `restate.service`: the stateless Service."""

from durably.sdk.options import InvocationRetryPolicy
from durably.sdk.serde import DefaultSerde, Serde
from durably.sdk.service import Service

__all__ = ["DefaultSerde", "InvocationRetryPolicy", "Serde", "Service"]
