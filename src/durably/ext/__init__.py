"""Integrations with agent frameworks and tracing, each an optional extra.

- `durably.ext.openai` (`pip install 'durably[openai]'`): the OpenAI Agents SDK.
- `durably.ext.pydantic` (`durably[pydantic-ai]`): Pydantic AI.
- `durably.ext.langchain` (`durably[langchain]`): LangChain `create_agent`.
- `durably.ext.adk` (`durably[adk]`): Google's Agent Development Kit.
- `durably.ext.tracing` (`durably[tracing]`): OpenTelemetry tracers that follow the invocation.

Each has the public names of restate-sdk's module of the same name, so an app switches by changing its
imports.
"""
