"""OpenTelemetry tracers that follow the invocation (`pip install -e '.[tracing]'` in a durably checkout).

Give an instrumented agent framework `RestateTracerProvider(provider)` (or wrap a tracer in
`RestateTracer`) and every span it makes inside a handler becomes a child of the invocation's trace: the
`traceparent` the runtime passes to the attempt, else the one on the caller's request, else a trace
derived from the invocation id, so every attempt of one invocation (after a crash, a retry or a
suspension) lands in the same trace. Spans started while the handler replays journaled steps are not
recorded: a resumed agent shows each model call and tool call once, not once per attempt.

"Replaying" means the journal still holds commands the handler has not reached. A span is therefore
recorded again when its step had journaled nothing before the attempt ended: e.g. a tool whose first
durable action is awaiting an awakeable (awakeables write no command), or the second of two parallel
tool calls whose spans both opened before the first one's step was journaled. Journal a step first
(such as notifying the approver in `ctx.run`) to have such tools traced once.

The public names are those of `restate.ext.tracing` (restate-sdk 1.2.0).
"""

from __future__ import annotations

from durably.ext._requires import require

require("opentelemetry.trace", "tracing", "the OpenTelemetry API (opentelemetry-api)")

from ._tracer import RestateTracer, RestateTracerProvider  # noqa: E402

__all__ = ["RestateTracer", "RestateTracerProvider"]
