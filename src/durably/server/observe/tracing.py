"""OpenTelemetry spans of the server: one per invocation attempt, one per journaled step, call or sleep.

Optional: the `otel` extra (`pip install -e '.[otel]'` in a durably checkout), then the standard variables
configure it, e.g. `OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
`OTEL_SERVICE_NAME`. Without them (or without the package) nothing here runs: the engine holds `None`.

- The attempt span's parent is the W3C `traceparent` the ingress request carried (it is journaled with the
  input, so a retry hours later joins the same trace).
- A step span starts when its command is journaled and ends when its completion is; a call's span is the
  parent of the callee's attempts (the callee's input gets a `traceparent` header), and a remote deployment
  receives the attempt's `traceparent` on its `/invoke` request.
- An attempt that replays recorded steps gets a zero-length span per replayed command, marked
  `durably.replayed = true`, so a trace shows what ran and what was only replayed.
- At stop the buffered spans get what is left of the shutdown grace (at most CLOSE_TIMEOUT_S) to reach the
  collector; a collector that hangs loses them (a warning says so) but cannot hold the stop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from durably.protocol import messages as m

log = logging.getLogger("durably.tracing")

# The longest a stop waits for the buffered spans to reach the collector.
CLOSE_TIMEOUT_S = 5.0

_STEP_NAMES = {m.RUN: "run", m.SLEEP: "sleep", m.CALL: "call", m.ONE_WAY_CALL: "send",
               m.ATTACH_INVOCATION: "attach", m.GET_PROMISE: "promise", m.GET_LAZY_STATE: "get state"}


def configured() -> bool:
    """Whether the OTEL_* environment asks for trace export."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def from_environment() -> InvocationTracing | None:
    """Tracing set up from OTEL_* variables, or None (not configured, or opentelemetry is not installed)."""
    if not configured():
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        import logging

        logging.getLogger("durably.tracing").warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry is not installed: install the otel extra "
            "(pip install -e '.[otel]' in a durably checkout)")
        return None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "durably")})
    # No exit hook: it would flush at interpreter exit with no time limit, and a hanging collector would hold
    # the process; close() flushes within the shutdown grace instead.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return InvocationTracing(provider)


class InvocationTracing:
    """Spans of one engine, kept per invocation while its attempt runs."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("durably.server")
        self._kind = SpanKind
        self._status = (Status, StatusCode)
        self._in_context = set_span_in_context
        self._prop = TraceContextTextMapPropagator()
        self._attempts: dict[str, Any] = {}  # invocation id -> attempt span
        self._steps: dict[str, dict[int, Any]] = {}  # invocation id -> completion id -> open step span
        self._last_step: dict[str, Any] = {}  # invocation id -> the step span most recently started
        # When close() must be done by (time.monotonic()): the end of the shutdown grace, set by the drain.
        self.close_by: float | None = None

    def _parent(self, headers: Any) -> Any:
        carrier = {h.key.lower(): h.value for h in headers}
        return self._prop.extract(carrier) if "traceparent" in carrier else None

    def attempt_started(self, inv: Any, journal: list[tuple[int, Any]]) -> None:
        """An attempt begins; replayed commands become zero-length spans under it."""
        self.attempt_ended(inv.id)
        parent = self._parent(journal[0][1].headers) if journal and journal[0][0] == m.INPUT else None
        span = self.tracer.start_span(f"{inv.service}/{inv.handler}", context=parent, kind=self._kind.SERVER,
                                      attributes={"durably.invocation_id": inv.id, "durably.attempt": inv.attempts,
                                                  "durably.service": inv.service, "durably.handler": inv.handler,
                                                  **({"durably.key": inv.key} if inv.key else {})})
        self._attempts[inv.id] = span
        ctx = self._in_context(span)
        for idx, (type_id, msg) in enumerate(journal):
            name = _STEP_NAMES.get(type_id)
            if name is not None:
                step = self.tracer.start_span(_step_name(name, msg), context=ctx, attributes={
                    "durably.journal_index": idx, "durably.replayed": True})
                step.end(start_time_of(step))

    def attempt_failed(self, inv_id: str, code: int, message: str) -> None:
        """The running attempt failed (it is retried or paused)."""
        span = self._attempts.get(inv_id)
        if span is not None:
            Status, StatusCode = self._status
            span.set_status(Status(StatusCode.ERROR, f"{code}: {message}"))

    def attempt_ended(self, inv_id: str) -> None:
        """The attempt is over (completed, suspended, failed or aborted); open steps end with it."""
        span = self._attempts.pop(inv_id, None)
        self._last_step.pop(inv_id, None)
        if span is None:
            return
        for step in self._steps.pop(inv_id, {}).values():
            step.end()
        span.end()

    def appended(self, inv_id: str, type_id: int, msg: Any, index: int) -> None:
        """A journal entry was appended: a step command starts a span, its completion ends it."""
        if m.is_notification(type_id):
            if msg.WhichOneof("id") == "completion_id":
                step = self._steps.get(inv_id, {}).pop(msg.completion_id, None)
                if step is not None:
                    if msg.WhichOneof("result") == "failure":
                        Status, StatusCode = self._status
                        step.set_status(Status(StatusCode.ERROR, f"{msg.failure.code}: {msg.failure.message}"))
                    step.end()
            return
        name = _STEP_NAMES.get(type_id)
        attempt = self._attempts.get(inv_id)
        if name is None or attempt is None:
            return
        attributes: dict[str, Any] = {"durably.journal_index": index, "durably.replayed": False}
        if type_id in (m.CALL, m.ONE_WAY_CALL):
            attributes["durably.target"] = f"{msg.service_name}/{msg.key + '/' if msg.key else ''}{msg.handler_name}"
        step = self.tracer.start_span(_step_name(name, msg), context=self._in_context(attempt),
                                      kind=self._kind.CLIENT if type_id in (m.CALL, m.ONE_WAY_CALL)
                                      else self._kind.INTERNAL, attributes=attributes)
        self._last_step[inv_id] = step
        if type_id == m.ONE_WAY_CALL:
            step.end()  # a send waits for nothing; its span still parents the callee
        else:
            self._steps.setdefault(inv_id, {})[msg.result_completion_id] = step

    def child_headers(self, caller_id: str, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The headers of a callee's input: `traceparent` of the caller's call span."""
        span = self._last_step.get(caller_id) or self._attempts.get(caller_id)
        if span is None:
            return headers
        carrier: dict[str, str] = {}
        self._prop.inject(carrier, context=self._in_context(span))
        return [(k, v) for k, v in headers if k.lower() not in ("traceparent", "tracestate")] + list(carrier.items())

    def traceparent(self, inv_id: str) -> str | None:
        """The `traceparent` of a running attempt (sent to remote deployments)."""
        span = self._attempts.get(inv_id)
        if span is None:
            return None
        carrier: dict[str, str] = {}
        self._prop.inject(carrier, context=self._in_context(span))
        return carrier.get("traceparent")

    def attempt_headers(self, inv_id: str) -> dict[str, str]:
        """The trace headers of a running attempt, as restate-server 1.7.12 sends them to a deployment:
        `traceparent` of the attempt span and its `tracestate` (empty when the trace has none)."""
        span = self._attempts.get(inv_id)
        if span is None:
            return {}
        carrier: dict[str, str] = {}
        self._prop.inject(carrier, context=self._in_context(span))
        carrier.setdefault("tracestate", "")
        return carrier

    def close(self) -> None:
        """End open spans and send what is buffered, for at most what is left of the shutdown grace (and at
        most CLOSE_TIMEOUT_S): a collector that does not answer loses the spans, not the stop."""
        for inv_id in list(self._attempts):
            self.attempt_ended(inv_id)
        budget = CLOSE_TIMEOUT_S
        if self.close_by is not None:
            budget = min(budget, max(0.0, self.close_by - time.monotonic()))
        done = threading.Event()

        def shutdown() -> None:
            try:
                self.provider.shutdown()
            except Exception as e:  # a broken exporter must not break the stop
                log.warning("the OpenTelemetry provider failed to shut down: %r", e)
            finally:
                done.set()

        # A daemon thread: one stuck on a collector that never answers does not keep the process alive.
        threading.Thread(target=shutdown, name="durably-otel-close", daemon=True).start()
        if not done.wait(budget):
            log.warning("spans not sent: the OpenTelemetry collector did not take them within %.1f s of the "
                        "stop (what was left of --shutdown-grace); stopping without them", budget)


def _step_name(kind: str, msg: Any) -> str:
    name = getattr(msg, "name", "")
    if kind in ("call", "send"):
        target = f"{msg.service_name}/{msg.handler_name}"
        return f"{kind} {target}"
    return f"{kind} {name}" if name else kind


def start_time_of(span: Any) -> int | None:
    """A span's start time in ns (to end it zero-length)."""
    return getattr(span, "start_time", None)
