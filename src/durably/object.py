"""restate-sdk's `restate.object`: the keyed VirtualObject."""

from durably.sdk.options import InvocationRetryPolicy
from durably.sdk.serde import DefaultSerde, Serde
from durably.sdk.service import VirtualObject

__all__ = ["DefaultSerde", "InvocationRetryPolicy", "Serde", "VirtualObject"]
