"""The tracer wrapper: parent under the invocation's trace, nothing recorded during replay."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import context as context_api
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
    TracerProvider,
    set_span_in_context,
    use_span,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util import types
from opentelemetry.util._decorator import _agnosticcontextmanager

from durably.sdk.current import current_context, get_extension_data, is_replaying, set_extension_data

_propagator = TraceContextTextMapPropagator()
_CLEANUP_KEY = "otel_span_cleanup"
# Marks the spans this module records, so a backend can tell agent steps from other spans.
INVOCATION_ID_ATTRIBUTE = "restate.invocation.id"


class _SpanCleanup:
    """Ends the spans a handler left open (it raised, or the attempt suspended) when the attempt ends."""

    def __init__(self) -> None:
        self._spans: list[Span] = []

    def track(self, span: Span) -> None:
        self._spans.append(span)

    def __close__(self) -> None:
        for span in self._spans:
            if span.is_recording():
                span.end()
        self._spans.clear()


def _derived_parent(invocation_id: str) -> context_api.Context:
    """A parent span context that is the same for every attempt of the invocation (ids from its hash)."""
    digest = hashlib.sha256(invocation_id.encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    parent = SpanContext(trace_id=trace_id, span_id=span_id, is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return set_span_in_context(NonRecordingSpan(parent))


def _root_context(ctx: Any) -> context_api.Context:
    """The invocation's trace: the attempt's traceparent, else the request's, else a derived one."""
    request = ctx.request()
    for headers in (request.attempt_headers, request.headers):
        lowered = {k.lower(): v for k, v in headers.items()}
        if "traceparent" in lowered:
            return _propagator.extract(lowered)
    return _derived_parent(request.id)


class RestateTracer(Tracer):
    """Wraps a `Tracer`: inside a handler, spans are children of the invocation's trace, and while the
    handler replays journaled steps they are not recorded (no duplicates after a resume). Outside a
    handler it behaves like the wrapped tracer."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def start_span(self, name: str, context: context_api.Context | None = None, kind: SpanKind = SpanKind.INTERNAL,
                   attributes: types.Attributes = None, links: Sequence[Link] | None = None,
                   start_time: int | None = None, record_exception: bool = True,
                   set_status_on_exception: bool = True) -> Span:
        """A span under the invocation's trace (a non-recording one while replaying)."""
        ctx = current_context()
        if ctx is None:
            return self._tracer.start_span(name, context, kind, attributes, links, start_time, record_exception,
                                           set_status_on_exception)
        if is_replaying(ctx):
            return INVALID_SPAN
        span = self._tracer.start_span(name, _root_context(ctx), kind, _with_invocation(attributes, ctx), links,
                                       start_time, record_exception, set_status_on_exception)
        _track(ctx, span)
        return span

    @_agnosticcontextmanager
    def start_as_current_span(self, name: str, context: context_api.Context | None = None,
                              kind: SpanKind = SpanKind.INTERNAL, attributes: types.Attributes = None,
                              links: Sequence[Link] | None = None, start_time: int | None = None,
                              record_exception: bool = True, set_status_on_exception: bool = True,
                              end_on_exit: bool = True) -> Iterator[Span]:
        """Like `start_span`, made the current span for the block."""
        ctx = current_context()
        if ctx is None:
            with self._tracer.start_as_current_span(name, context, kind, attributes, links, start_time,
                                                    record_exception, set_status_on_exception,
                                                    end_on_exit) as span:
                yield span
            return
        if is_replaying(ctx):
            with use_span(INVALID_SPAN, end_on_exit=False) as span:
                yield span
            return
        with self._tracer.start_as_current_span(name, _root_context(ctx), kind, _with_invocation(attributes, ctx),
                                                links, start_time, record_exception, set_status_on_exception,
                                                end_on_exit) as span:
            yield span

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracer, name)


def _with_invocation(attributes: types.Attributes, ctx: Any) -> types.Attributes:
    merged = dict(attributes or {})
    merged.setdefault(INVOCATION_ID_ATTRIBUTE, ctx.request().id)
    return merged


def _track(ctx: Any, span: Span) -> None:
    cleanup = get_extension_data(ctx, _CLEANUP_KEY)
    if cleanup is None:
        cleanup = _SpanCleanup()
        set_extension_data(ctx, _CLEANUP_KEY, cleanup)
    cleanup.track(span)


class RestateTracerProvider(TracerProvider):
    """Wraps a `TracerProvider` so every tracer it hands out is a `RestateTracer`. Pass it to an
    instrumentor (or a framework's `tracer_provider` setting)."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider

    def get_tracer(self, *args: Any, **kwargs: Any) -> Tracer:
        """The wrapped provider's tracer, wrapped."""
        return RestateTracer(self._provider.get_tracer(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider, name)
