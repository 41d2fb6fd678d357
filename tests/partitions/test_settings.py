"""`--partitions N`: a flag, DURABLY_PARTITIONS and the `partitions` file key, through the one settings layer."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from durably.cli.serve import serve, server_config
from durably.cli.settings import from_environment


def test_partitions_default_is_one_process() -> None:
    out = CliRunner().invoke(serve, ["--dump-config"], env={}).output
    assert "partitions = 1  # default" in out


def test_partitions_from_flag_env_and_file(tmp_path: Path) -> None:
    runner = CliRunner()
    assert "partitions = 4  # flag" in runner.invoke(serve, ["--partitions", "4", "--dump-config"], env={}).output
    assert "partitions = 3  # env DURABLY_PARTITIONS" in runner.invoke(
        serve, ["--dump-config"], env={"DURABLY_PARTITIONS": "3"}).output
    cfg = tmp_path / "durably.toml"
    cfg.write_text("partitions = 2\n")
    assert "partitions = 2  # file" in runner.invoke(serve, ["--config", str(cfg), "--dump-config"], env={}).output


def test_partitions_out_of_range_is_refused() -> None:
    result = CliRunner().invoke(serve, ["--partitions", "0"], env={})
    assert result.exit_code == 2 and "--partitions" in result.output and "0" in result.output


def test_partitions_reach_the_server_config(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DURABLY_PARTITIONS", "2")
    assert server_config(from_environment(serve).values).partitions == 2


def test_in_memory_is_refused_with_partitions() -> None:
    # (Kafka subscriptions work with partitions: tests/kafka/test_serve_partitions.py.)
    runner = CliRunner()
    memory = runner.invoke(serve, ["--partitions", "2", "--in-memory"], env={})
    assert memory.exit_code == 2 and "--partitions needs a --data-dir" in memory.output
