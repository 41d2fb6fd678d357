"""Integrations with agent frameworks and tracing, each an optional extra.

- `durably.ext.openai` (`pip install -e '.[openai]'` in a durably checkout): the OpenAI Agents SDK.
- `durably.ext.pydantic` (extra `pydantic-ai`): Pydantic AI.
- `durably.ext.langchain` (extra `langchain`): LangChain `create_agent`.
- `durably.ext.adk` (extra `adk`): Google's Agent Development Kit.
- `durably.ext.tracing` (extra `tracing`): OpenTelemetry tracers that follow the invocation.

Each has the public names of restate-sdk's module of the same name, so an app switches by changing its
imports.
"""
