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

from durably import embedded as _embedded
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
from durably.sdk.serde import BytesSerde, DefaultSerde, JsonSerde, PydanticJsonSerde, Serde
from durably.sdk.service import App, Service, VirtualObject, Workflow, app

# Served by any ASGI server, an app also runs the embedded runtime when DURABLY_EMBEDDED=1 (durably.embedded).
_embedded.install()
_embedded.import_hypercorn_asyncio()

__version__ = "0.1.0"

__all__ = [
    "App",
    "BytesSerde",
    "CallFuture",
    "Context",
    "DefaultSerde",
    "DurableFuture",
    "DurablePromise",
    "InvocationRetryPolicy",
    "JsonSerde",
    "ObjectContext",
    "ObjectSharedContext",
    "PydanticJsonSerde",
    "Request",
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
    "gather",
    "is_internal_exception",
    "select",
    "wait_completed",
]
