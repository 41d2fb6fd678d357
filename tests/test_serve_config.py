"""`durably serve` settings: flag > environment > --config file > default, shown by --dump-config; the README's
table lists every setting."""

from __future__ import annotations

import tomllib
from pathlib import Path

from click.testing import CliRunner

from durably.cli import settings as serve_config
from durably.cli.main import main, serve

REPO = Path(__file__).resolve().parents[1]


def dump(*args: str, env: dict[str, str] | None = None) -> dict[str, tuple[object, str]]:
    """{key: (value, source)} from `serve --dump-config`."""
    result = CliRunner().invoke(main, ["serve", *args, "--dump-config"], env=env or {}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out: dict[str, tuple[object, str]] = {}
    for line in result.output.splitlines():
        if line.startswith("#"):
            continue
        setting, _, source = line.partition("  # ")
        out.update({k: (v, source) for k, v in tomllib.loads(setting).items()})
    return out


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    cfg = tmp_path / "durably.toml"
    cfg.write_text('app = "file_app:app"\nport = 7000\nadmin-port = 7001\nlog_level = "debug"\nmetrics = false\n'
                   'data_dir = "/srv/durably"\n')
    got = dump("--config", str(cfg), "--port", "6000", env={"DURABLY_PORT": "5000", "DURABLY_ADMIN_PORT": "5001",
                                                              "DURABLY_LOG_FORMAT": "json"})
    assert got["port"] == (6000, "flag")
    assert got["admin_port"] == (5001, "env DURABLY_ADMIN_PORT")
    assert got["log_format"] == ("json", "env DURABLY_LOG_FORMAT")
    assert got["log_level"] == ("debug", "file")
    assert got["metrics"] == (False, "file")
    assert got["data_dir"] == ("/srv/durably", "file")
    assert got["app"] == ("file_app:app", "file")
    assert got["host"] == ("127.0.0.1", "default")
    assert got["retention"] == ("1d", "default")


def test_config_file_from_the_environment_and_app_from_env(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("in_memory = true\n")
    got = dump(env={"DURABLY_CONFIG": str(cfg), "DURABLY_APP": "env_app:app"})
    assert got["in_memory"] == (True, "file")
    assert got["app"] == ("env_app:app", "env DURABLY_APP")
    assert dump("arg_app:app")["app"] == ("arg_app:app", "argument")


def test_dump_is_a_config_file_that_gives_the_same_settings(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "x:app", "--port", "1234", "--no-metrics", "--dump-config"], env={})
    cfg = tmp_path / "saved.toml"
    cfg.write_text(result.output)
    again = dump("--config", str(cfg))
    assert again["port"] == (1234, "file") and again["metrics"] == (False, "file") and again["app"][0] == "x:app"


def test_bad_files_and_missing_app_are_clear(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.toml"
    bad.write_text("prot = 1\n")
    result = runner.invoke(main, ["serve", "--config", str(bad)], env={})
    assert result.exit_code == 2 and "unknown setting 'prot'" in result.output and "port" in result.output
    bad.write_text("port = \n")
    result = runner.invoke(main, ["serve", "--config", str(bad)], env={})
    assert result.exit_code == 2 and "not valid TOML" in result.output
    result = runner.invoke(main, ["serve", "--config", str(tmp_path / "none.toml")], env={})
    assert result.exit_code == 2 and "cannot read" in result.output
    result = runner.invoke(main, ["serve", "x:app", "--dump-config"], env={"DURABLY_PORT": "eighty"})
    assert result.exit_code == 2 and "eighty" in result.output


def test_readme_table_lists_every_setting() -> None:
    expected = serve_config.table(serve)
    readme = (REPO / "README.md").read_text()
    assert expected in readme, f"README.md's serve settings table is out of date; it should read:\n\n{expected}\n"


def test_repeatable_and_float_flags_round_trip(tmp_path: Path) -> None:
    import click

    @click.command()
    @click.option("--limit", "limits", multiple=True, help="PATTERN=N, repeatable.")
    @click.option("--grace", default=30.0, type=float, help="Seconds.")
    def cmd(limits: tuple[str, ...], grace: float) -> None:
        click.echo(f"{limits} {grace}")

    serve_config.apply(cmd)
    runner = CliRunner()
    out = runner.invoke(cmd, ["--limit", "A/*=2", "--limit", "B=1", "--dump-config"], env={}).output
    assert 'limit = ["A/*=2", "B=1"]  # flag' in out and "grace = 30.0  # default" in out
    cfg = tmp_path / "c.toml"
    cfg.write_text(out)
    assert runner.invoke(cmd, ["--config", str(cfg)], env={}).output.strip() == "('A/*=2', 'B=1') 30.0"
    assert runner.invoke(cmd, [], env={"DURABLY_LIMIT": "X=1 Y=2", "DURABLY_GRACE": "5"}).output.strip() == (
        "('X=1', 'Y=2') 5.0")


def test_settings_are_named_after_their_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('default_retry_max_attempts = "5"\nconcurrency_limit = ["checkout/*=5", "*=100"]\n')
    got = dump("--config", str(cfg), env={"DURABLY_DEFAULT_RETRY_INITIAL_INTERVAL": "2s"})
    assert got["default_retry_max_attempts"] == ("5", "file")
    assert got["concurrency_limit"] == (["checkout/*=5", "*=100"], "file")
    assert got["default_retry_initial_interval"] == ("2s", "env DURABLY_DEFAULT_RETRY_INITIAL_INTERVAL")


def test_dump_hides_tokens() -> None:
    result = CliRunner().invoke(main, ["serve", "--admin-token", "s3cret-value", "--dump-config"],
                                env={"DURABLY_INGRESS_TOKEN": "other-s3cret"})
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    assert "# admin_token is set (hidden)  # flag" in result.output
    assert "# ingress_token is set (hidden)  # env DURABLY_INGRESS_TOKEN" in result.output
