"""Service definitions: Service, VirtualObject and Workflow, and the handlers registered on them."""

from __future__ import annotations

import importlib
import inspect
import sys
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeVar

from durably.sdk.options import InvocationRetryPolicy
from durably.sdk.serde import DefaultSerde, Serde

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

ServiceKind = Literal["service", "object", "workflow"]
HandlerKind = Literal["exclusive", "shared", "workflow"] | None

_HANDLER_ATTR = "__durably_handler__"

StatePreload = bool | list[str]
"""`state_preload`: True preloads all state (the default), False none, a list only the names listed."""


def check_state_preload(state_preload: StatePreload | None, enable_lazy_state: bool | None) -> None:
    """Refuse `state_preload` together with its deprecated alias `enable_lazy_state` (as restate-sdk 1.3 does)."""
    if state_preload is not None and enable_lazy_state is not None:
        raise ValueError("Cannot set both the 'state_preload' option and the deprecated 'enable_lazy_state' option "
                         "at the same time. Use only 'state_preload'.")
    if state_preload is not None and not isinstance(state_preload, bool):
        if isinstance(state_preload, str | bytes) or not all(isinstance(k, str) for k in state_preload):
            raise ValueError("state_preload is True, False, or a list of state names (strings)")


def manifest_state_fields(state_preload: StatePreload | None,
                          enable_lazy_state: bool | None) -> tuple[bool | None, list[str] | None]:
    """(enableLazyState, eagerStateKeysWhitelist) as the discovery manifest writes a preload setting.

    A list means "lazy, except these names"; an empty list is plain lazy state.
    """
    if state_preload is None:
        return enable_lazy_state, None
    if isinstance(state_preload, bool):
        return not state_preload, None
    return True, (list(state_preload) or None)


@dataclass
class Handler:
    """One handler of a service, with its options resolved."""

    service: ServiceDefinition
    name: str
    fn: Callable[..., Awaitable[Any]]
    kind: HandlerKind
    accept: str
    content_type: str
    input_serde: Serde[Any]
    output_serde: Serde[Any]
    takes_input: bool
    returns_output: bool
    input_type: Any = None
    output_type: Any = None
    documentation: str | None = None
    metadata: dict[str, str] | None = None
    inactivity_timeout: timedelta | None = None
    abort_timeout: timedelta | None = None
    journal_retention: timedelta | None = None
    idempotency_retention: timedelta | None = None
    workflow_retention: timedelta | None = None
    ingress_private: bool | None = None
    enable_lazy_state: bool | None = None
    invocation_retry_policy: InvocationRetryPolicy | None = None
    state_preload: StatePreload | None = None

    def __post_init__(self) -> None:
        check_state_preload(self.state_preload, self.enable_lazy_state)

    def preload(self) -> bool | list[str]:
        """Which state an attempt starts with: True (all), False (none), or the names to preload.

        The handler's setting wins over its service's; `enable_lazy_state` is the old spelling of
        `state_preload=False`. Plain services have no state.
        """
        if self.service.kind == "service":
            return False
        for owner in (self, self.service):
            if owner.state_preload is not None:
                return owner.state_preload if isinstance(owner.state_preload, bool) else list(owner.state_preload)
            if owner.enable_lazy_state is not None:
                return not owner.enable_lazy_state
        return True

    @property
    def is_shared(self) -> bool:
        """Shared handlers of objects and workflows read state but never write it, and run concurrently."""
        return self.kind == "shared"

    @property
    def is_private(self) -> bool:
        """Whether ingress refuses this handler (it can only be called by other handlers)."""
        if self.ingress_private is not None:
            return self.ingress_private
        return bool(self.service.ingress_private)

    def effective_inactivity_timeout(self) -> timedelta | None:
        """The handler's inactivity timeout, else the service's, else None (the runtime default)."""
        return self.inactivity_timeout or self.service.inactivity_timeout

    def effective_abort_timeout(self) -> timedelta | None:
        """The handler's abort timeout, else the service's, else None (the runtime default)."""
        return self.abort_timeout or self.service.abort_timeout

    def effective_retry_policy(self, default: InvocationRetryPolicy) -> InvocationRetryPolicy:
        """Handler policy over service policy over the runtime default, field by field."""
        policy = default
        if self.service.invocation_retry_policy is not None:
            policy = self.service.invocation_retry_policy.merged_over(policy)
        if self.invocation_retry_policy is not None:
            policy = self.invocation_retry_policy.merged_over(policy)
        return policy


def _handler_io_types(fn: Callable[..., Any]) -> tuple[bool, Any, bool, Any]:
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if not params:
        raise ValueError(f"handler {fn.__name__} must take the context as its first parameter")
    if len(params) > 2:
        raise ValueError(f"handler {fn.__name__} takes (ctx) or (ctx, input); it has {len(params)} parameters")
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to plain JSON
        hints = {}
    takes_input = len(params) == 2
    input_type = hints.get(params[1].name) if takes_input else None
    ret = hints.get("return", inspect.Signature.empty)
    returns_output = ret not in (None, type(None), inspect.Signature.empty)
    output_type = ret if returns_output else None
    if ret is inspect.Signature.empty:
        returns_output = True  # unannotated: whatever it returns is the output
    return takes_input, input_type, returns_output, output_type


class ServiceDefinition:
    """Common base of Service, VirtualObject and Workflow."""

    kind: ServiceKind = "service"

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: StatePreload | None = None,
    ) -> None:
        """`state_preload` (objects and workflows): True preloads all state at the start of each invocation
        (the default), False preloads none (each read asks the server), a list preloads only those names.
        `enable_lazy_state` is its deprecated alias; setting both raises ValueError."""
        if not name or "/" in name:
            raise ValueError(f"invalid service name {name!r}")
        check_state_preload(state_preload, enable_lazy_state)
        self.name = name
        self.description = description
        self.metadata = metadata
        self.inactivity_timeout = inactivity_timeout
        self.abort_timeout = abort_timeout
        self.journal_retention = journal_retention
        self.idempotency_retention = idempotency_retention
        self.ingress_private = ingress_private
        self.invocation_retry_policy = invocation_retry_policy
        self.enable_lazy_state = enable_lazy_state
        self.state_preload = state_preload
        self.handlers: dict[str, Handler] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def _register(self, kind: HandlerKind, name: str | None, **opts: Any) -> Callable[[F], F]:
        def decorator(fn: F) -> F:
            if not inspect.iscoroutinefunction(fn):
                raise ValueError(f"handler {fn.__name__} must be an async function")
            hname = name or fn.__name__
            if hname in self.handlers:
                raise ValueError(f"duplicate handler {hname!r} on {self.name}")
            takes_input, input_type, returns_output, output_type = _handler_io_types(fn)
            input_serde = opts.pop("input_serde", None)
            output_serde = opts.pop("output_serde", None)
            handler = Handler(
                service=self,
                name=hname,
                fn=fn,
                kind=kind,
                accept=opts.pop("accept", None) or "application/json",
                content_type=opts.pop("content_type", None) or "application/json",
                input_serde=input_serde if input_serde is not None else DefaultSerde(input_type),
                output_serde=output_serde if output_serde is not None else DefaultSerde(output_type),
                takes_input=takes_input,
                returns_output=returns_output,
                input_type=input_type,
                output_type=output_type,
                documentation=inspect.getdoc(fn),
                **opts,
            )
            self.handlers[hname] = handler
            setattr(fn, _HANDLER_ATTR, handler)
            return fn

        return decorator


def _common_handler_opts(
    accept: str,
    content_type: str,
    input_serde: Serde[Any] | None,
    output_serde: Serde[Any] | None,
    metadata: dict[str, str] | None,
    inactivity_timeout: timedelta | None,
    abort_timeout: timedelta | None,
    journal_retention: timedelta | None,
    ingress_private: bool | None,
    invocation_retry_policy: InvocationRetryPolicy | None,
) -> dict[str, Any]:
    return {
        "accept": accept,
        "content_type": content_type,
        "input_serde": input_serde,
        "output_serde": output_serde,
        "metadata": metadata,
        "inactivity_timeout": inactivity_timeout,
        "abort_timeout": abort_timeout,
        "journal_retention": journal_retention,
        "ingress_private": ingress_private,
        "invocation_retry_policy": invocation_retry_policy,
    }


class Service(ServiceDefinition):
    """A stateless durable service: any number of invocations run concurrently.

    ```python
    greeter = durably.Service("Greeter")

    @greeter.handler()
    async def greet(ctx: durably.Context, name: str) -> str:
        return await ctx.run_typed("hello", lambda: f"Hello {name}!")
    ```
    """

    kind: ServiceKind = "service"

    def handler(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
    ) -> Callable[[F], F]:
        """Register an async function `(ctx[, input]) -> output` as a handler; its docstring documents it."""
        opts = _common_handler_opts(accept, content_type, input_serde, output_serde, metadata,
                                    inactivity_timeout, abort_timeout, journal_retention, ingress_private,
                                    invocation_retry_policy)
        return self._register(None, name, idempotency_retention=idempotency_retention, **opts)


class VirtualObject(ServiceDefinition):
    """A keyed entity with durable state; exclusive handlers run one at a time per key."""

    kind: ServiceKind = "object"

    def handler(
        self,
        name: str | None = None,
        kind: Literal["exclusive", "shared"] = "exclusive",
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        enable_lazy_state: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        state_preload: StatePreload | None = None,
    ) -> Callable[[F], F]:
        """Register an exclusive (default) or shared handler on this object."""
        if kind not in ("exclusive", "shared"):
            raise ValueError("kind must be 'exclusive' or 'shared'")
        opts = _common_handler_opts(accept, content_type, input_serde, output_serde, metadata,
                                    inactivity_timeout, abort_timeout, journal_retention, ingress_private,
                                    invocation_retry_policy)
        return self._register(kind, name, idempotency_retention=idempotency_retention,
                              enable_lazy_state=enable_lazy_state, state_preload=state_preload, **opts)


class Workflow(ServiceDefinition):
    """A keyed workflow: its `main` handler runs once per key; shared handlers talk to it."""

    kind: ServiceKind = "workflow"

    def main(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        workflow_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        enable_lazy_state: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        state_preload: StatePreload | None = None,
    ) -> Callable[[F], F]:
        """Register the workflow's main handler (runs at most once per key)."""
        opts = _common_handler_opts(accept, content_type, input_serde, output_serde, metadata,
                                    inactivity_timeout, abort_timeout, journal_retention, ingress_private,
                                    invocation_retry_policy)
        return self._register("workflow", name, workflow_retention=workflow_retention,
                              enable_lazy_state=enable_lazy_state, state_preload=state_preload, **opts)

    def handler(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        enable_lazy_state: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        state_preload: StatePreload | None = None,
    ) -> Callable[[F], F]:
        """Register a shared handler (reads state, resolves promises) on this workflow."""
        opts = _common_handler_opts(accept, content_type, input_serde, output_serde, metadata,
                                    inactivity_timeout, abort_timeout, journal_retention, ingress_private,
                                    invocation_retry_policy)
        return self._register("shared", name, idempotency_retention=idempotency_retention,
                              enable_lazy_state=enable_lazy_state, state_preload=state_preload, **opts)


def handler_of(fn: Callable[..., Any]) -> Handler:
    """The Handler registered for a decorated function (for service calls by function reference)."""
    h = getattr(fn, _HANDLER_ATTR, None)
    if h is None:
        raise TypeError(f"{fn!r} is not a durably handler; decorate it with @service.handler()")
    return h


@dataclass
class App:
    """The services of one application.

    Serve it embedded with `durably serve module:app`, or as a Restate deployment with any ASGI server
    (`hypercorn module:app`): the app is an ASGI application with `/discover` and `/invoke`.
    """

    services: dict[str, ServiceDefinition] = field(default_factory=dict)
    # Restate request identity: `publickeyv1_...` keys; served as a deployment, only requests signed with one
    # of them are accepted (health excepted). Empty: every request is accepted, as in restate-sdk.
    identity_keys: list[str] = field(default_factory=list)
    _endpoint: Any = field(default=None, repr=False, compare=False)

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Awaitable[Any]],
                       send: Callable[..., Awaitable[Any]]) -> None:
        """ASGI entry point: this app as a Restate service deployment (and, if asked for, the embedded runtime)."""
        if self._endpoint is None:
            from durably.sdk.endpoint import asgi_endpoint

            self._endpoint = asgi_endpoint(self)
        await self._endpoint(scope, receive, send)

    def handler(self, service: str, handler: str) -> Handler | None:
        """Look up a handler by service and handler name."""
        svc = self.services.get(service)
        return None if svc is None else svc.handlers.get(handler)


# Who hears about each App built: `durably.hosting.capture` adds a hook while it runs a script's entry point
# (and removes it after), so the SDK does not import it.
app_built_hooks: list[Callable[[App], None]] = []


def _reach_hypercorn_asyncio() -> None:
    """Make `hypercorn.asyncio` an attribute of an already imported `hypercorn`, as `import restate` does.

    Restate's templates write `import hypercorn`, build the app in `main()`, then call
    `hypercorn.asyncio.serve(app, conf)`. That works with restate-sdk only because importing it loads
    `hypercorn.asyncio`. `import durably` loads no hypercorn (the SDK does not need a server), so the submodule
    is loaded here instead: building the app is the step every such script takes between its `import hypercorn`
    and that call. A process that has not imported hypercorn is left alone.
    """
    if "hypercorn" in sys.modules and "hypercorn.asyncio" not in sys.modules:
        try:
            importlib.import_module("hypercorn.asyncio")
        except ImportError:
            pass


def app(services: Iterable[ServiceDefinition], protocol: Literal["bidi", "request_response"] | None = None,
        identity_keys: list[str] | None = None) -> App:
    """Bundle services into an application.

    `protocol` and `identity_keys` are restate-sdk's arguments. Durably's endpoint answers in the mode each
    request asks for, so `protocol` needs no setting. `identity_keys`: the `publickeyv1_...` keys of the
    Restate servers allowed to call this app when it is served as a deployment; other requests get 401 and run
    nothing (see SECURITY.md). `durably serve` running the app embedded does not use them (its handlers are
    called in process).
    """
    if protocol not in (None, "bidi", "request_response"):
        raise ValueError(f"protocol must be 'bidi' or 'request_response', not {protocol!r}")
    out = App()
    if identity_keys:
        # Checked now, so a typo fails at import rather than on the first request.
        from durably.protocol.request_identity import parse_public_key

        for key in identity_keys:
            parse_public_key(key)
        out.identity_keys = list(identity_keys)
    for svc in services:
        if not isinstance(svc, ServiceDefinition):
            raise TypeError(f"{svc!r} is not a Service, VirtualObject or Workflow")
        if svc.name in out.services:
            raise ValueError(f"duplicate service name {svc.name!r}")
        out.services[svc.name] = svc
    for hook in list(app_built_hooks):
        hook(out)
    _reach_hypercorn_asyncio()
    return out
