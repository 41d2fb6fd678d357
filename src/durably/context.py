"""restate-sdk's `restate.context`: the contexts handlers receive and the durable futures they hand out.

The `RestateDurable*` names are Durably's own future classes, so `isinstance(f, RestateDurableCallFuture)`
holds for what `ctx.service_call` returns.
"""

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from durably.sdk.attempt import AttemptFinishedEvent
from durably.sdk.context import (
    CallFuture,
    Context,
    DurableFuture,
    DurablePromise,
    ObjectContext,
    ObjectSharedContext,
    Request,
    RunFuture,
    SendHandle,
    SleepFuture,
    WorkflowContext,
    WorkflowSharedContext,
)
from durably.sdk.options import RunOptions
from durably.sdk.scope import ScopedContext
from durably.sdk.serde import DefaultSerde, Serde

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - restate-sdk's names for handler input and output types
O = TypeVar("O")  # noqa: E741

RestateDurableFuture = DurableFuture
RestateDurableCallFuture = CallFuture
RestateDurableSleepFuture = SleepFuture
# The state API of objects and workflows (restate-sdk's mixin of ObjectContext).
KeyValueStore = ObjectContext

HandlerType = Callable[[Any, I], Awaitable[O]] | Callable[[Any], Awaitable[O]]
RunAction = Callable[..., Coroutine[Any, Any, T]] | Callable[..., T]

__all__ = [
    "AttemptFinishedEvent",
    "CallFuture",
    "Context",
    "DefaultSerde",
    "DurableFuture",
    "DurablePromise",
    "HandlerType",
    "KeyValueStore",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RunAction",
    "RunFuture",
    "RunOptions",
    "ScopedContext",
    "SendHandle",
    "Serde",
    "SleepFuture",
    "WorkflowContext",
    "WorkflowSharedContext",
]
