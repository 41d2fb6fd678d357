"""How one partition's engine reaches another's: the contract between the process layer and the engine.

The process layer (supervisor, partition processes, their local sockets) implements `PeerLink`; the engine uses
it to deliver its outbox (calls, sends, completions, cancels that cross partitions) and answers what peers deliver
to it through `Engine.receive_from_partition`. Payloads are opaque bytes to the link: the engine defines them.
"""

from __future__ import annotations

from typing import Protocol


class PeerUnreachable(ConnectionError):
    """The peer partition did not answer (it is down or restarting): the sender keeps the batch and retries."""


class PeerLink(Protocol):
    """A way to hand bytes to another partition's engine and get its answer back."""

    async def deliver(self, partition: int, payload: bytes) -> bytes:
        """Hand `payload` to partition `partition`'s `Engine.receive_from_partition` and return what it
        answered. Raises `PeerUnreachable` if the partition cannot be reached now."""
        ...
