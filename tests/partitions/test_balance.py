"""The partitions' shared connection counts, and when a partition sends a connection away to even them out."""

from __future__ import annotations

from pathlib import Path

import pytest

from durably.server.partitions import balance
from durably.server.partitions.balance import ConnectionShares, create_shares, mark_down, open_shares


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(balance.time, "monotonic", lambda: now[0])
    return now


def shares(root: Path, count: int) -> list[ConnectionShares]:
    (root / "sockets").mkdir(exist_ok=True)
    create_shares(root, count)
    return [ConnectionShares(root, i, count) for i in range(count)]


def test_a_partition_over_its_share_closes_one_connection_at_a_time(tmp_path: Path, clock: list[float]) -> None:
    p0, p1 = shares(tmp_path, 2)
    p0.publish(22)
    p1.publish(10)
    assert not p1.should_close(10)
    assert p0.should_close(22)
    assert not p0.should_close(22), "a second close within CLOSE_EVERY_S"
    clock[0] += balance.CLOSE_EVERY_S * 1.01
    assert p0.should_close(22)


def test_a_share_is_the_total_divided_and_rounded_up(tmp_path: Path, clock: list[float]) -> None:
    p0, p1, p2 = shares(tmp_path, 3)
    p1.publish(11)
    p2.publish(11)
    assert not p0.should_close(11)  # 33 / 3
    assert not p0.should_close(12)  # 34 / 3 rounds up to 12
    assert p0.should_close(13)  # 35 / 3 rounds up to 12: one over


def test_nothing_is_closed_while_a_partition_is_down(tmp_path: Path, clock: list[float]) -> None:
    p0, p1 = shares(tmp_path, 2)
    p0.publish(30)
    mark_down(tmp_path, 1)  # what the supervisor does when partition 1 dies
    assert not p0.should_close(30)
    p1.publish(0)  # restarted: it counts again
    assert p0.should_close(30)


def test_every_partition_starts_down_until_it_opens_its_count(tmp_path: Path, clock: list[float]) -> None:
    (tmp_path / "sockets").mkdir()
    create_shares(tmp_path, 2)
    p0 = ConnectionShares(tmp_path, 0, 2)
    assert not p0.should_close(5)  # partition 1 has not started yet
    ConnectionShares(tmp_path, 1, 2)
    assert p0.should_close(5)


def test_without_the_supervisor_s_file_there_is_no_balancing(tmp_path: Path) -> None:
    assert open_shares(tmp_path, 0, 2) is None
    (tmp_path / "sockets").mkdir()
    create_shares(tmp_path, 2)
    assert open_shares(tmp_path, 0, 4) is None  # a file of another count
    assert open_shares(tmp_path, 1, 2) is not None
