"""`durably serve`'s Kafka cluster settings: flag, `DURABLY_*` environment and TOML forms, the extra client
properties per cluster, and clear errors for a malformed one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from durably.cli.main import main
from durably.cli.serve import serve, server_config


def _config_of(args: list[str], env: dict[str, str] | None = None) -> Any:
    captured: dict[str, Any] = {}
    ctx = serve.make_context("serve", list(args), default_map=None)
    captured.update(ctx.params)
    return server_config(captured)


def test_flags_give_clusters_with_their_client_properties() -> None:
    cfg = _config_of(["--kafka-cluster", "local=127.0.0.1:9092,127.0.0.1:9093",
                      "--kafka-cluster", "other=k:9092",
                      "--kafka-cluster-option", "local:security.protocol=SASL_SSL",
                      "--kafka-cluster-option", "local:sasl.mechanism=PLAIN"])
    assert sorted(cfg.kafka_clusters) == ["local", "other"]
    local = cfg.kafka_clusters["local"]
    assert local.bootstrap_servers == ("127.0.0.1:9092", "127.0.0.1:9093")
    assert local.client_config() == {"bootstrap.servers": "127.0.0.1:9092,127.0.0.1:9093",
                                     "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}
    assert dict(cfg.kafka_clusters["other"].properties) == {}


def test_toml_tables_and_environment(tmp_path: Path) -> None:
    conf = tmp_path / "durably.toml"
    conf.write_text('[kafka_cluster]\nlocal = ["a:1", "b:2"]\n[kafka_cluster_option.local]\n'
                    '"sasl.username" = "u"\n"sasl.password" = "pw"\n')
    result = CliRunner().invoke(main, ["serve", "--config", str(conf), "--dump-config"], env={})
    assert result.exit_code == 0, result.output
    assert 'kafka_cluster = ["local=a:1,b:2"]  # file' in result.output
    # A dump gets pasted into tickets: the SASL password is not in it.
    assert "pw" not in result.output and "local:sasl.password=(hidden)" in result.output
    result = CliRunner().invoke(main, ["serve", "--dump-config"], env={"DURABLY_KAFKA_CLUSTER": "x=h:1 y=h:2"})
    assert 'kafka_cluster = ["x=h:1", "y=h:2"]  # env DURABLY_KAFKA_CLUSTER' in result.output


@pytest.mark.parametrize(("args", "says"), [
    (["--kafka-cluster", "nobrokers"], "NAME=HOST:PORT"),
    (["--kafka-cluster", "a=h:1", "--kafka-cluster", "a=h:2"], "configured twice"),
    (["--kafka-cluster", "a=h:1", "--kafka-cluster-option", "b:x=y"], "unconfigured Kafka cluster"),
    (["--kafka-cluster", "a=h:1", "--kafka-cluster-option", "a-x-y"], "NAME:KEY=VALUE"),
])
def test_malformed_cluster_settings_are_refused_naming_the_flag(args: list[str], says: str) -> None:
    with pytest.raises(click.BadParameter) as info:
        _config_of(args)
    assert says in info.value.format_message()
