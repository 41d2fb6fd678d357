"""An operator's view of a virtual object's (or workflow's) state: read it, replace it, with a version check.

The state of a key is changed by the engine alone (one writer): this module reads through the key table's
cache and the store, and writes its replacement into the engine's current batch, so it commits in order
with everything else and the next invocation of the key starts with it.

Versions follow Restate's `StateMutationVersion`: SHA-256 over the entries sorted by name, each as
(its position as 8 bytes big-endian, 0x01, name, 0x02, value, 0x03), URL-safe base64. A client reads the
state with its version, edits, and sends the version back; a replacement is refused if the state changed
in between.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING, Any

from durably.server.store.ops import ClearAllState, SetState

if TYPE_CHECKING:
    from durably.server.engine.engine import Engine


class StateConflict(Exception):
    """The state cannot be replaced now; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def state_version(state: dict[bytes, bytes]) -> str:
    """The opaque version of a key's state (equal state, equal version)."""
    h = hashlib.sha256()
    for i, (name, value) in enumerate(sorted(state.items())):
        h.update(i.to_bytes(8, "big"))
        h.update(b"\x01")
        h.update(name)
        h.update(b"\x02")
        h.update(value)
        h.update(b"\x03")
    return base64.urlsafe_b64encode(h.digest()).decode()


def has_state(engine: Engine, service: str) -> bool | None:
    """True for objects and workflows, False for plain services, None if there is no such service."""
    svc = engine.services.get(service)
    if svc is None:
        return None
    return svc.kind != "service"


async def read_state(engine: Engine, service: str, key: str) -> dict[bytes, bytes]:
    """The committed state of one key."""
    await engine.flushed()
    entry = engine.keys.get(service, key)
    if entry is not None and entry.state is not None:
        return dict(entry.state)
    return engine.store.load_state(service, key)


def state_json(service: str, key: str, state: dict[bytes, bytes]) -> dict[str, Any]:
    """A key's state for people: JSON values as JSON; values that are not JSON as base64 under `binary`."""
    values: dict[str, Any] = {}
    binary: dict[str, str] = {}
    for name, value in sorted(state.items()):
        text = name.decode("utf-8", "replace")
        try:
            values[text] = json.loads(value)
        except ValueError:
            binary[text] = base64.b64encode(value).decode()
    out: dict[str, Any] = {"service": service, "object_key": key, "version": state_version(state), "state": values}
    if binary:
        out["binary"] = binary
    return out


def _holder(engine: Engine, service: str, key: str) -> str | None:
    entry = engine.keys.get(service, key)
    return None if entry is None else entry.holder


async def replace_state(engine: Engine, service: str, key: str, new_state: dict[bytes, bytes],
                        version: str | None = None) -> None:
    """Replace the whole state of a key (an empty map clears it).

    Raises StateConflict 409 if `version` is given and the state changed since it was read, or if an
    exclusive invocation holds the key right now (its handler read the state when it started; changing it
    under it would make its replay see something else).
    """
    await engine.flushed()
    holder = _holder(engine, service, key)
    if holder is not None:
        raise StateConflict(409, f"{service}/{key} is locked by invocation {holder}; wait for it to complete, "
                                 "or kill it, then try again")
    current = engine.keys.state(service, key, lambda: engine.store.load_state(service, key))
    if version is not None and version != state_version(current):
        raise StateConflict(409, f"the state of {service}/{key} changed since version {version} was read "
                                 f"(now {state_version(current)}); read it again and redo the change")
    current.clear()
    current.update(new_state)
    # In this order: clear everything, then set each entry.
    table = engine.table
    table.write(ClearAllState(service, key))
    for name, value in new_state.items():
        table.write(SetState(service, key, name, value))
    # The key is idle: drop the cache entry this made once the write is committed, as a release does.
    generation = engine.keys.generation(service, key)
    table.after_commit(lambda: engine.keys.drop_if_idle(service, key, generation))
    await engine.barrier()


def parse_new_state(body: Any) -> tuple[str, dict[bytes, bytes], str | None]:
    """Restate's ModifyServiceStateRequest: `{"object_key", "new_state": {name: [byte, ...]}, "version"?}`.

    Returns (key, state, version); raises ValueError with what is wrong.
    """
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    key = body.get("object_key", body.get("service_key"))
    if not isinstance(key, str):
        raise ValueError("object_key (a string) is required")
    raw = body.get("new_state")
    if not isinstance(raw, dict):
        raise ValueError("new_state must be an object of state names to byte arrays")
    version = body.get("version")
    if version is not None and not isinstance(version, str):
        raise ValueError("version must be a string")
    state: dict[bytes, bytes] = {}
    for name, value in raw.items():
        if not isinstance(value, list) or not all(isinstance(b, int) and 0 <= b <= 255 for b in value):
            raise ValueError(f"new_state[{name!r}] must be an array of bytes (integers 0-255)")
        state[name.encode()] = bytes(value)
    return key, state, version
