"""restate-sdk's `restate.harness`: `create_test_harness(app)`, backed by Durably's in-process server."""

from durably.testing.restate_harness import (
    HarnessEnvironment,
    RestateTestHarness,
    create_test_harness,
    test_harness,
)

__all__ = ["HarnessEnvironment", "RestateTestHarness", "create_test_harness", "test_harness"]
