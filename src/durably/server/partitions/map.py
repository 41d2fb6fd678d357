"""Which partition owns an invocation, a key or an idempotent request.

Restate splits the u64 partition-key space into equal ranges, one per partition, and every invocation id
carries its partition key: keyed invocations hash their key, idempotent requests hash the service and the
idempotency key, workflows hash the workflow key. Durably does the same on one machine: with N partitions,
partition i owns the keys in [i * 2**64 / N, (i + 1) * 2**64 / N). A plain invocation (unkeyed, no
idempotency key) may run anywhere, so it runs where it arrived, with an id minted in that partition's range.
"""

from __future__ import annotations

from dataclasses import dataclass

from durably.protocol.ids import InvocationId

_SPACE = 1 << 64


@dataclass(frozen=True, slots=True)
class PartitionMap:
    """The partitions of one data directory (`count`), seen from one of them (`index`)."""

    count: int = 1
    index: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.count <= 1024:
            raise ValueError(f"partition count must be in [1, 1024], got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"partition index must be in [0, {self.count}), got {self.index}")

    @property
    def single(self) -> bool:
        """One partition: everything is local (the default, and the behaviour before partitions)."""
        return self.count == 1

    def owner_of(self, partition_key: int) -> int:
        """The partition that owns a partition key."""
        return (partition_key * self.count) >> 64

    def owner(self, invocation_id: str | InvocationId) -> int:
        """The partition that owns an invocation (its id carries its partition key)."""
        if isinstance(invocation_id, str):
            invocation_id = InvocationId.parse(invocation_id)
        return self.owner_of(invocation_id.partition_key)

    def is_local(self, invocation_id: str | InvocationId) -> bool:
        """Whether this partition owns the invocation."""
        return self.single or self.owner(invocation_id) == self.index

    def key_range(self, index: int | None = None) -> tuple[int, int]:
        """The partition keys [low, high) a partition owns (this one unless `index` is given)."""
        i = self.index if index is None else index
        return (-(-i * _SPACE // self.count), -(-(i + 1) * _SPACE // self.count))

    def mint(self) -> InvocationId:
        """A fresh id for a plain invocation, with a random partition key in this partition's range."""
        return InvocationId.random_in(*self.key_range())

    def id_for(self, service: str, handler: str, *, workflow: bool, keyed: bool, key: str = "",
               idempotency_key: str | None = None, scope: str | None = None) -> InvocationId:
        """The id of a new invocation of `service`/`handler`, as Restate derives it.

        A workflow's run and an idempotent request have deterministic ids (a repeat finds the first); a keyed
        invocation hashes its key; a plain one is minted in this partition's range. The owner of the result
        (:meth:`owner`) is where the invocation must be created.
        """
        if workflow:
            return InvocationId.for_workflow(service, key, scope)
        if idempotency_key is not None:
            return InvocationId.for_idempotent_request(service, handler, idempotency_key, key if keyed else None,
                                                       scope)
        if keyed:
            return InvocationId.for_keyed(service, key)
        return self.mint() if not self.single else InvocationId.random()
