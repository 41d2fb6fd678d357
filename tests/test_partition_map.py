"""Which partition owns what: ranges cover the key space, minted ids stay home, keys route by their hash."""

import itertools

import pytest

from durably.protocol.ids import InvocationId
from durably.server.partitions.map import PartitionMap


@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_ranges_tile_the_key_space(count: int) -> None:
    edges = [PartitionMap(count, i).key_range() for i in range(count)]
    assert edges[0][0] == 0 and edges[-1][1] == 1 << 64
    for (_, high), (low, _) in itertools.pairwise(edges):
        assert high == low
    for i, (low, high) in enumerate(edges):
        m = PartitionMap(count, i)
        assert m.owner_of(low) == i and m.owner_of(high - 1) == i


@pytest.mark.parametrize("count", [2, 5])
def test_minted_ids_belong_to_the_minting_partition(count: int) -> None:
    for i in range(count):
        m = PartitionMap(count, i)
        for _ in range(100):
            inv = m.mint()
            assert m.is_local(inv) and m.is_local(str(inv))


def test_a_keyed_invocation_and_its_idempotent_requests_share_an_owner() -> None:
    m = PartitionMap(4, 0)
    for key in ("alice", "bob", "", "ключ"):
        keyed = InvocationId.for_keyed("Counter", key)
        idem = InvocationId.for_idempotent_request("Counter", "add", "k1", key=key)
        wf = InvocationId.for_workflow("Signup", key)
        assert m.owner(keyed) == m.owner(idem) == m.owner(wf)


def test_one_partition_owns_everything() -> None:
    m = PartitionMap()
    assert m.single and m.is_local(InvocationId.random()) and m.owner_of((1 << 64) - 1) == 0


def test_bad_counts_and_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="partition count"):
        PartitionMap(0, 0)
    with pytest.raises(ValueError, match="partition index"):
        PartitionMap(2, 2)
    with pytest.raises(ValueError, match="partition key range"):
        InvocationId.random_in(5, 5)
