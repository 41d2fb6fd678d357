"""An ADK event summarizer whose summarization (an LLM call) is one journaled step."""

from __future__ import annotations

from datetime import timedelta

from google.adk.apps.base_events_summarizer import BaseEventsSummarizer
from google.adk.apps.llm_event_summarizer import LlmEventSummarizer
from google.adk.events.event import Event
from google.adk.models.base_llm import BaseLlm

from durably.sdk.current import current_context
from durably.sdk.options import RunOptions


class RestateEventSummarizer(BaseEventsSummarizer):
    """Wraps a summarizer so its result is journaled and replayed (retried up to `max_retries` times)."""

    def __init__(self, inner: BaseEventsSummarizer, max_retries: int = 10) -> None:
        self._inner = inner
        self._max_retries = max_retries

    @staticmethod
    def from_llm(llm: BaseLlm, prompt_template: str | None = None, max_retries: int = 10) -> RestateEventSummarizer:
        """The default LLM summarizer, journaled."""
        return RestateEventSummarizer(LlmEventSummarizer(llm=llm, prompt_template=prompt_template),
                                      max_retries=max_retries)

    @staticmethod
    def from_summarizer(summarizer: BaseEventsSummarizer, max_retries: int = 10) -> RestateEventSummarizer:
        """A custom summarizer, journaled."""
        return RestateEventSummarizer(summarizer, max_retries=max_retries)

    async def maybe_summarize_events(self, *, events: list[Event]) -> Event | None:
        """Summarize once; replay the journaled summary afterwards."""
        if not events:
            return None
        ctx = current_context()
        if ctx is None:
            raise RuntimeError("RestateEventSummarizer must be used inside a durably handler.")
        inner = self._inner

        async def summarize() -> Event | None:
            return await inner.maybe_summarize_events(events=events)

        options: RunOptions[Event | None] = RunOptions(
            max_attempts=self._max_retries, initial_retry_interval=timedelta(seconds=1), type_hint=Event)
        return await ctx.run_typed("compaction LLM call", summarize, options)
