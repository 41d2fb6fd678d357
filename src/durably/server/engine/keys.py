"""Per-key bookkeeping of virtual objects and workflows: the exclusive lock, the inbox, a state view.

One exclusive invocation runs per key at a time; the others wait in the key's inbox in arrival order.
While a key is busy, its state changes are kept here (`StateView`) over the committed state in the store,
so the next invocation sees the state the previous one left before the group commit has written it. A key
may hold very many state names: the view never loads them all unless asked to (listing the names, or an
operator replacing the whole state); single names and bounded pages come from the store's index.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol


class StateReader(Protocol):
    """The store's committed state, as the view reads it."""

    def state_value(self, service: str, key: str, name: bytes) -> bytes | None: ...
    def state_names(self, service: str, key: str) -> list[bytes]: ...
    def state_page(self, service: str, key: str, after: bytes | None, limit: int,
                   max_bytes: int) -> list[tuple[bytes, bytes]]: ...


class StateView:
    """One key's state: the changes made since the key became busy, over the committed state."""

    def __init__(self, store: StateReader, service: str, key: str) -> None:
        self._store = store
        self._service = service
        self._key = key
        self.changes: dict[bytes, bytes | None] = {}  # None: cleared
        self.cleared = False  # all state was cleared: names without a change are absent

    def get(self, name: bytes) -> bytes | None:
        """One value (None if absent)."""
        if name in self.changes:
            return self.changes[name]
        if self.cleared:
            return None
        return self._store.state_value(self._service, self._key, name)

    def set(self, name: bytes, value: bytes) -> None:
        self.changes[name] = value

    def clear(self, name: bytes) -> None:
        self.changes[name] = None

    def clear_all(self) -> None:
        self.changes.clear()
        self.cleared = True

    def names(self) -> list[bytes]:
        """Every state name, in order (reads every name of the key: only when a handler lists them)."""
        names = set() if self.cleared else set(self._store.state_names(self._service, self._key))
        for name, value in self.changes.items():
            if value is None:
                names.discard(name)
            else:
                names.add(name)
        return sorted(names)

    def prefix(self, max_entries: int, max_bytes: int) -> tuple[dict[bytes, bytes], bool]:
        """The state in name order up to a bound: (entries, whether that is all of it)."""
        rows = [] if self.cleared else self._store.state_page(self._service, self._key, None, max_entries + 1,
                                                               max_bytes + 1)
        complete = len(rows) <= max_entries and sum(len(n) + len(v) for n, v in rows) <= max_bytes
        if not complete:
            rows = rows[:max_entries] if len(rows) > max_entries else rows[:-1]
        out = dict(rows)
        last = rows[-1][0] if rows else None
        for name, value in self.changes.items():
            if not complete and (last is None or name > last):
                continue  # beyond what was loaded: read on demand, through `get`
            if value is None:
                out.pop(name, None)
            else:
                out[name] = value
        return dict(sorted(out.items())), complete

    def whole(self) -> dict[bytes, bytes]:
        """All of the state (an operator's whole-state replacement needs it)."""
        out = {} if self.cleared else dict(self._store.state_page(self._service, self._key, None, 2**62, 2**62))
        for name, value in self.changes.items():
            if value is None:
                out.pop(name, None)
            else:
                out[name] = value
        return out


@dataclass
class KeyEntry:
    """The lock holder, the inbox and the cached state of one key."""

    holder: str | None = None
    inbox: deque[str] = field(default_factory=deque)
    state: StateView | None = None
    # Bumped whenever the lock changes hands: a drop scheduled at one release must not discard the state
    # cache of a later holder whose writes are not committed yet.
    generation: int = 0

    @property
    def idle(self) -> bool:
        """No holder and nobody waiting."""
        return self.holder is None and not self.inbox


class KeyTable:
    """All busy keys."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], KeyEntry] = {}

    def get(self, service: str, key: str) -> KeyEntry | None:
        """The entry of a key, if it is busy."""
        return self._keys.get((service, key))

    def acquire(self, service: str, key: str, inv_id: str) -> bool:
        """Take the lock for `inv_id`, or queue it; True if it may run now."""
        entry = self._keys.setdefault((service, key), KeyEntry())
        if entry.holder is None or entry.holder == inv_id:
            entry.holder = inv_id
            entry.generation += 1
            return True
        if inv_id not in entry.inbox:
            entry.inbox.append(inv_id)
        return False

    def hold(self, service: str, key: str, inv_id: str) -> None:
        """Record a holder found in the store at start."""
        self._keys.setdefault((service, key), KeyEntry()).holder = inv_id

    def enqueue(self, service: str, key: str, inv_id: str) -> None:
        """Record an inboxed invocation found in the store at start (in inbox order)."""
        self._keys.setdefault((service, key), KeyEntry()).inbox.append(inv_id)

    def release(self, service: str, key: str, inv_id: str) -> str | None:
        """Give up the lock (or leave the inbox); returns the next invocation to run, if any."""
        entry = self._keys.get((service, key))
        if entry is None:
            return None
        if entry.holder != inv_id:
            if inv_id in entry.inbox:
                entry.inbox.remove(inv_id)
            return None
        entry.holder = entry.inbox.popleft() if entry.inbox else None
        entry.generation += 1
        return entry.holder

    def state(self, service: str, key: str, store: StateReader) -> StateView:
        """The key's state view, kept while the key is busy (writes go into it)."""
        entry = self._keys.setdefault((service, key), KeyEntry())
        if entry.state is None:
            entry.state = StateView(store, service, key)
        return entry.state

    def read_view(self, service: str, key: str, store: StateReader) -> StateView:
        """A view to read a key's state through, without making the key busy (shared handlers, operators)."""
        entry = self._keys.get((service, key))
        if entry is not None and entry.state is not None:
            return entry.state
        return StateView(store, service, key)

    def generation(self, service: str, key: str) -> int:
        """The key's current generation (0 if it is not busy)."""
        entry = self._keys.get((service, key))
        return 0 if entry is None else entry.generation

    def drop_if_idle(self, service: str, key: str, generation: int) -> None:
        """Forget a key (and its cached state) if it stayed idle since `generation` was read."""
        entry = self._keys.get((service, key))
        if entry is not None and entry.idle and entry.generation == generation:
            del self._keys[(service, key)]

    def __len__(self) -> int:
        return len(self._keys)

    def inbox_depths(self) -> dict[str, int]:
        """Invocations queued behind a busy key, per service (a service with busy keys but no queue: 0)."""
        depth: dict[str, int] = {}
        for (service, _key), entry in list(self._keys.items()):
            depth[service] = depth.get(service, 0) + len(entry.inbox)
        return depth
