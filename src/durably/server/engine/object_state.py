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
import binascii
import hashlib
import json
from dataclasses import dataclass
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
    """The whole committed state of one key (for a whole-state edit; reads use `read_state_page`)."""
    await engine.flushed()
    return engine.keys.read_view(service, key, engine.store).whole()


# A page of state over the admin API and the UI: at most this many names, and no more once names and values
# reach STATE_PAGE_BYTES (a page is never empty while state remains).
STATE_PAGE = 1000
STATE_PAGE_BYTES = 1024 * 1024


@dataclass
class StatePage:
    """One page of a key's state, and the cursor of the next page (None: this is the end)."""

    state: dict[bytes, bytes]
    next_cursor: str | None
    complete: bool  # the page is the whole state (then it has a version)


def encode_cursor(name: bytes) -> str:
    """The cursor after state name `name`: its URL-safe base64, unpadded."""
    return base64.urlsafe_b64encode(name).decode().rstrip("=")


def decode_cursor(cursor: str) -> bytes:
    """The state name a cursor names; ValueError if it is not one."""
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
    except (ValueError, TypeError, binascii.Error):
        raise ValueError(f"bad cursor {cursor[:100]!r}: pass back the next_cursor of the previous page") from None


async def read_state_page(engine: Engine, service: str, key: str, after: bytes | None = None,
                          limit: int = STATE_PAGE) -> StatePage:
    """A page of one key's committed state, in name order, strictly after the name `after`."""
    await engine.flushed()
    limit = max(1, min(limit, STATE_PAGE))
    # Committed state only, straight from the store's index: after flushed() everything the key's view holds
    # is in the store, and a change made after it is not committed yet.
    rows = engine.store.state_page(service, key, after, limit + 1, STATE_PAGE_BYTES)
    more = len(rows) > limit
    rows = rows[:limit]
    if not more and rows:
        # Cut short by bytes? Then more may follow the last row.
        more = bool(engine.store.state_page(service, key, rows[-1][0], 1, 1))
    return StatePage(dict(rows), encode_cursor(rows[-1][0]) if more else None, after is None and not more)


def state_json(service: str, key: str, state: dict[bytes, bytes], page: StatePage | None = None) -> dict[str, Any]:
    """A key's state for people: JSON values as JSON; values that are not JSON as base64 under `binary`.

    For a `page` of the state: `next_cursor` when more follows, and the `version` only when the page is the
    whole state (a version covers all of it).
    """
    values: dict[str, Any] = {}
    binary: dict[str, str] = {}
    for name, value in sorted(state.items()):
        text = name.decode("utf-8", "replace")
        try:
            values[text] = json.loads(value)
        except ValueError:
            binary[text] = base64.b64encode(value).decode()
    out: dict[str, Any] = {"service": service, "object_key": key}
    if page is None or page.complete:
        out["version"] = state_version(state)
    out["state"] = values
    if binary:
        out["binary"] = binary
    if page is not None and page.next_cursor is not None:
        out["next_cursor"] = page.next_cursor
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
    view = engine.keys.state(service, key, engine.store)
    if version is not None:
        current = view.whole()
        if version != state_version(current):
            raise StateConflict(409, f"the state of {service}/{key} changed since version {version} was read "
                                     f"(now {state_version(current)}); read it again and redo the change")
    view.clear_all()
    for name, value in new_state.items():
        view.set(name, value)
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
