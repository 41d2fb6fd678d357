"""How `--pin-partitions` splits the CPUs the server may use among its partition processes."""

from __future__ import annotations

import pytest

from durably.server.partitions.cpus import describe, partition_cpus


def test_as_many_partitions_as_cpus_get_one_each() -> None:
    assert [partition_cpus({0, 1}, i, 2) for i in range(2)] == [{0}, {1}]


def test_fewer_partitions_than_cpus_get_contiguous_groups_covering_all() -> None:
    groups = [partition_cpus(set(range(16)), i, 4) for i in range(4)]
    assert groups == [set(range(0, 4)), set(range(4, 8)), set(range(8, 12)), set(range(12, 16))]
    uneven = [partition_cpus(set(range(5)), i, 2) for i in range(2)]
    assert uneven == [{0, 1}, {2, 3, 4}]


def test_the_allowed_cpus_are_used_not_the_machine_s() -> None:
    # e.g. `taskset -c 2,3,6,7 durably serve --partitions 2`
    assert [partition_cpus({2, 3, 6, 7}, i, 2) for i in range(2)] == [{2, 3}, {6, 7}]


def test_more_partitions_than_cpus_take_them_in_turn() -> None:
    assert [partition_cpus({0, 1}, i, 5) for i in range(5)] == [{0}, {1}, {0}, {1}, {0}]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        partition_cpus(set(), 0, 2)
    with pytest.raises(ValueError):
        partition_cpus({0, 1}, 2, 2)


def test_describe_writes_the_list_form_of_proc_status() -> None:
    assert describe({0}) == "0"
    assert describe({0, 1, 2, 3, 8}) == "0-3,8"
    assert describe({1, 3, 4, 5, 9, 10}) == "1,3-5,9-10"
