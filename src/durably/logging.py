"""restate-sdk's `restate.logging`: loggers that stay silent while a handler replays.

```python
logger = durably.getLogger(__name__)

@greeter.handler()
async def greet(ctx: durably.Context, name: str) -> str:
    logger.info("greeting %s", name)   # once per invocation, not once per replay
```
"""

from durably.sdk.replay_log import ReplayFilter, getLogger, is_replaying

# restate-sdk's name for the filter.
RestateLoggingFilter = ReplayFilter

__all__ = ["ReplayFilter", "RestateLoggingFilter", "getLogger", "is_replaying"]
