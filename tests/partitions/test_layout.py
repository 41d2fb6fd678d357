"""The partition count a data directory records, and the refusals (server/partitions/layout.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from durably.server.partitions.fanout import merge_metrics
from durably.server.partitions.layout import check_partitions, recorded_partitions
from durably.server.store.datadir import DataDirError


def test_a_new_directory_records_its_count_and_keeps_it(tmp_path: Path) -> None:
    d = tmp_path / "data"
    check_partitions(d, 4)
    assert json.loads((d / "partitions.json").read_text()) == {"partitions": 4}
    check_partitions(d, 4)
    with pytest.raises(DataDirError, match="created with 4 partitions, not the 2"):
        check_partitions(d, 2)


def test_one_partition_writes_nothing_new(tmp_path: Path) -> None:
    check_partitions(tmp_path, 1)
    assert not (tmp_path / "partitions.json").exists()
    assert recorded_partitions(tmp_path) is None
    (tmp_path / "durably.id").write_text("{}")
    assert recorded_partitions(tmp_path) == 1
    with pytest.raises(DataDirError, match="single-partition layout"):
        check_partitions(tmp_path, 2)


def test_a_damaged_record_is_refused(tmp_path: Path) -> None:
    (tmp_path / "partitions.json").write_text("{nope")
    with pytest.raises(DataDirError, match="damaged"):
        check_partitions(tmp_path, 2)


def test_merged_metrics_declare_each_family_once_with_a_partition_label() -> None:
    one = ("# HELP calls_total Calls.\n# TYPE calls_total counter\ncalls_total{service=\"A\"} 3\n"
           "# HELP up Up.\n# TYPE up gauge\nup 1\n")
    two = ("# HELP calls_total Calls.\n# TYPE calls_total counter\ncalls_total{service=\"A\"} 4\n"
           "# HELP up Up.\n# TYPE up gauge\nup 1\n")
    assert merge_metrics([one, two]).splitlines() == [
        "# HELP calls_total Calls.", "# TYPE calls_total counter",
        'calls_total{partition="0",service="A"} 3', 'calls_total{partition="1",service="A"} 4',
        "# HELP up Up.", "# TYPE up gauge", 'up{partition="0"} 1', 'up{partition="1"} 1']
