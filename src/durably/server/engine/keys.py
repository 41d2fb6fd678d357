"""Per-key bookkeeping of virtual objects and workflows: the exclusive lock, the inbox, a state cache.

One exclusive invocation runs per key at a time; the others wait in the key's inbox in arrival order.
While a key is busy its state is cached here, so the next invocation starts with the state the previous
one left (committed in order by the group commit) without a read from the store.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class KeyEntry:
    """The lock holder, the inbox and the cached state of one key."""

    holder: str | None = None
    inbox: deque[str] = field(default_factory=deque)
    state: dict[bytes, bytes] | None = None
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

    def state(self, service: str, key: str, load: Callable[[], dict[bytes, bytes]]) -> dict[bytes, bytes]:
        """The key's state, cached while the key is busy."""
        entry = self._keys.setdefault((service, key), KeyEntry())
        if entry.state is None:
            entry.state = load()
        return entry.state

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
