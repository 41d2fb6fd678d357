"""Durably: durable execution for Python, with Restate's programming model.

```python
import durably

greeter = durably.Service("Greeter")

@greeter.handler()
async def greet(ctx: durably.Context, name: str) -> str:
    return await ctx.run_typed("hello", lambda: f"Hello {name}!")

app = durably.app(services=[greeter])
```

Serve it with `durably serve module:app`.
"""

from typing import Any

from durably.sdk.combinators import as_completed, gather, select, wait_completed
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
from durably.sdk.errors import (
    RetryableError,
    SdkInternalBaseException,
    TerminalError,
    is_internal_exception,
)
from durably.sdk.options import InvocationRetryPolicy, RunOptions
from durably.sdk.replay_log import ReplayFilter, getLogger
from durably.sdk.serde import BytesSerde, DefaultSerde, JsonSerde, MsgspecJsonSerde, PydanticJsonSerde, Serde
from durably.sdk.service import App, Service, VirtualObject, Workflow, app

# Nothing is installed or patched on import. Served by any ASGI server, an app also runs the embedded runtime
# when DURABLY_EMBEDDED=1: it looks that up on its first ASGI call (durably.sdk.endpoint.asgi_endpoint).

__version__ = "0.1.0"

# restate-sdk's names for the same classes (`import durably as restate` keeps isinstance checks working).
RestateDurableFuture = DurableFuture
RestateDurableCallFuture = CallFuture
RestateDurableSleepFuture = SleepFuture
RestateLoggingFilter = ReplayFilter

# The client and the harness pull in httpx and the server: imported on first use, not with every handler.
_LAZY = {
    "create_client": "durably.clients.typed",
    "RestateClient": "durably.client_types",
    "RestateClientSendHandle": "durably.client_types",
    "HttpError": "durably.client_types",
    "create_test_harness": "durably.testing.restate_harness",
    "test_harness": "durably.testing.restate_harness",
    "HarnessEnvironment": "durably.testing.restate_harness",
}


# restate-sdk's module layout: `restate.X` is `durably.X`, reachable as an attribute like restate's.
_SUBMODULES = frozenset({"asyncio", "client", "client_types", "context", "endpoint", "exceptions", "harness",
                         "logging", "object", "retry_policy", "serde", "service", "workflow"})


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"durably.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'durably' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "App",
    "BytesSerde",
    "CallFuture",
    "Context",
    "DefaultSerde",
    "DurableFuture",
    "DurablePromise",
    "HarnessEnvironment",
    "HttpError",
    "InvocationRetryPolicy",
    "JsonSerde",
    "MsgspecJsonSerde",
    "ObjectContext",
    "ObjectSharedContext",
    "PydanticJsonSerde",
    "ReplayFilter",
    "Request",
    "RestateClient",
    "RestateClientSendHandle",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RestateLoggingFilter",
    "RetryableError",
    "RunFuture",
    "RunOptions",
    "SdkInternalBaseException",
    "SendHandle",
    "Serde",
    "Service",
    "SleepFuture",
    "TerminalError",
    "VirtualObject",
    "Workflow",
    "WorkflowContext",
    "WorkflowSharedContext",
    "__version__",
    "app",
    "as_completed",
    "create_client",
    "create_test_harness",
    "gather",
    "getLogger",
    "is_internal_exception",
    "select",
    "test_harness",
    "wait_completed",
]
