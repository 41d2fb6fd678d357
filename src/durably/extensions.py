"""Hooks for integrations (agent frameworks, tracing): the running handler's context and per-attempt data.

The same names as `restate.extensions` / `restate.server_context`, so integrations written against
those work here.
"""

from durably.sdk.current import (
    clear_extension_data,
    current_context,
    get_extension_data,
    is_replaying,
    set_extension_data,
)

__all__ = ["clear_extension_data", "current_context", "get_extension_data", "is_replaying", "set_extension_data"]
