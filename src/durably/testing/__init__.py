"""Test harness: run an app's handlers in process, with an in-memory or SQLite store.

```python
from durably.testing import TestRuntime

async def test_greet():
    async with TestRuntime(app, always_replay=True) as rt:
        assert await rt.call("Greeter/greet", "Alice") == "Hello Alice!"
```
"""

from durably.testing.harness import TestRuntime

__all__ = ["TestRuntime"]
