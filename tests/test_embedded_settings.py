"""Embedded mode (`DURABLY_EMBEDDED=1 python app.py`, `durably run CMD`) runs on the same settings as
`durably serve`: every setting of the README's table, with the same defaults and the same refusals.

The walk below goes over `serve`'s own settings (the registry the README table is generated from), so a setting
added to `serve` is checked here without more code: it must reach the same ServerConfig in both modes, or be
one of the few embedded mode documents as ignored (with a logged warning).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import fields
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner

import durably
from durably.cli import serve as serve_module
from durably.cli import settings as serve_settings
from durably.cli.main import main
from durably.hosting import embedded
from durably.hosting.embedded import EmbeddedConfigError, EmbeddingEndpoint
from durably.sdk.service import App
from durably.server.config import ServerConfig

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clear_durably_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("DURABLY_", "RESTATE_")):
            monkeypatch.delenv(name)


@pytest.fixture
def app() -> App:
    greeter = durably.Service("Greeter")

    @greeter.handler()
    async def greet(ctx: durably.Context, name: str) -> str:
        return f"hello {name}"

    return durably.app([greeter])


@pytest.fixture
async def embedded_server(app: App, monkeypatch: pytest.MonkeyPatch,
                          tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    _clear_durably_env(monkeypatch)
    port, admin_port = free_port(), free_port()
    monkeypatch.setenv("DURABLY_EMBEDDED", "1")
    monkeypatch.setenv("DURABLY_PORT", str(port))
    monkeypatch.setenv("DURABLY_ADMIN_PORT", str(admin_port))
    monkeypatch.setenv("DURABLY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DURABLY_INGRESS_TOKEN", "ingress-secret")
    monkeypatch.setenv("DURABLY_ADMIN_TOKEN", "admin-secret")
    monkeypatch.setenv("DURABLY_MAX_BODY", "1KiB")
    endpoint = EmbeddingEndpoint(app)
    await endpoint.start()
    try:
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    finally:
        await endpoint.stop()


async def test_embedded_mode_keeps_the_tokens_and_the_body_limit(embedded_server: tuple[str, str]) -> None:
    ingress, admin = embedded_server
    async with httpx.AsyncClient(timeout=10) as client:
        refused = await client.post(f"{ingress}/Greeter/greet", json="ada")
        assert refused.status_code == 401, refused.text
        assert "message" in refused.json()
        ok = await client.post(f"{ingress}/Greeter/greet", json="ada",
                               headers={"Authorization": "Bearer ingress-secret"})
        assert ok.status_code == 200 and ok.json() == "hello ada"
        assert (await client.get(f"{admin}/services")).status_code == 401
        assert (await client.get(f"{admin}/services",
                                 headers={"Authorization": "Bearer admin-secret"})).status_code == 200
        big = await client.post(f"{ingress}/Greeter/greet", json="x" * 4096,
                                headers={"Authorization": "Bearer ingress-secret"})
        assert big.status_code == 413, big.text


# ---- the walk over every setting ----

# Settings that embedded mode does not take from the environment, and why (the README says the same).
# Each is ignored with a logged warning that names it.
IGNORED_EMBEDDED = set(serve_module.EMBEDDED_IGNORED)

# A valid, non-default value for the settings whose type does not say what one looks like (plain strings
# with a format of their own). Any other setting gets one derived from its click type below.
SAMPLES: dict[str, str] = {
    "retention": "3h",
    "default_retry_max_attempts": "7",
    "default_retry_on_max_attempts": "kill",
    "default_retry_initial_interval": "2s",
    "default_retry_max_interval": "30s",
    "default_retry_exponentiation_factor": "3.0",
    "concurrency_limit": "checkout=5",
    "host": "127.0.0.2",
    "admin_host": "127.0.0.3",
    "kafka_cluster": "local=127.0.0.1:9092",
    "kafka_cluster_option": "local:security.protocol=SASL_SSL",
}
# Settings that mean something only with another one set: that one is set in both runs (the default and the
# sample), so only the setting under test differs.
COMPANIONS: dict[str, dict[str, str]] = {
    "kafka_cluster_option": {"DURABLY_KAFKA_CLUSTER": "local=127.0.0.1:9092"},
}
# A value each setting must refuse, where its type refuses anything.
BAD: dict[str, str] = {"retention": "soon", "default_retry_max_attempts": "many", "concurrency_limit": "x=y",
                       "default_retry_on_max_attempts": "explode"}


def _settings() -> list[click.Parameter]:
    return [p for p in serve_module.serve.params if p.name not in ("config", "dump_config")]


def _sample(param: click.Parameter, tmp_path: Path) -> str:
    name = serve_settings.setting_name(param)
    if name in SAMPLES:
        return SAMPLES[name]
    t = param.type
    default = param.default
    if isinstance(param, click.Option) and param.is_flag:
        return "0" if default is True else "1"
    if isinstance(t, click.Choice):
        return next(c for c in t.choices if str(c).lower() != str(default).lower())
    if isinstance(t, click.IntRange | click.FloatRange) or isinstance(default, int | float):
        return str((default or 0) * 2 + 1)
    if t.name == "size":
        return str(int(default) * 2)
    if isinstance(t, click.Path):
        f = tmp_path / f"{name}.file"
        f.write_text("x")
        return str(f)
    return f"sample-{name.replace('_', '-')}.example"  # a plain string (a token, a header name, a host name)


def _bad(param: click.Parameter) -> str | None:
    name = serve_settings.setting_name(param)
    if name in BAD:
        return BAD[name]
    t = param.type
    if isinstance(param, click.Option) and param.is_flag:
        return None  # any string is read as on or off
    if isinstance(t, click.Choice | click.IntRange | click.FloatRange) or t.name in ("size", "integer", "float"):
        return "not-a-value"
    return None


def _serve_config(env: dict[str, str]) -> ServerConfig:
    """The ServerConfig `durably serve` would run on with this environment."""
    from durably.server.observe import log_format

    seen: list[ServerConfig] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serve_module, "run", lambda app, config: seen.append(config))
        # serve would replace the root logger's handlers (pytest's capture among them).
        patch.setattr(log_format, "configure_logging", lambda *_: None)
        result = CliRunner().invoke(main, ["serve"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return seen[0]


def _serve_refusal(env: dict[str, str]) -> str:
    result = CliRunner().invoke(main, ["serve"], env=env)
    assert result.exit_code != 0, result.output
    return result.output


def _embedded_config(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ServerConfig:
    _clear_durably_env(monkeypatch)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return embedded.config_from_env()


def _differs(a: ServerConfig, b: ServerConfig) -> list[str]:
    return [f.name for f in fields(ServerConfig) if getattr(a, f.name) != getattr(b, f.name)]


@pytest.mark.parametrize("param", _settings(), ids=lambda p: serve_settings.setting_name(p))
def test_every_setting_means_the_same_embedded(param: click.Parameter, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    name = serve_settings.setting_name(param)
    env_var = param.envvar if isinstance(param.envvar, str) else serve_settings.env_name(name)
    _clear_durably_env(monkeypatch)
    base = COMPANIONS.get(name, {})
    default = _embedded_config(base, monkeypatch)
    assert default == _serve_config(base), "embedded mode's defaults must be serve's"
    value = _sample(param, tmp_path)
    env = {**base, env_var: value}
    if name in IGNORED_EMBEDDED:
        with caplog.at_level(logging.WARNING, logger="durably"):
            got = _embedded_config(env, monkeypatch)
        assert got == default
        assert any(env_var in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records), (
            f"{env_var} is ignored embedded, and that must be logged")
        return
    served = _serve_config(env)
    assert _differs(served, default), f"durably serve does not honour {env_var}={value!r}"
    got = _embedded_config(env, monkeypatch)
    assert got == served, f"{env_var}={value!r}: embedded differs from serve in {_differs(got, served)}"
    bad = _bad(param)
    if bad is not None:
        refusal = _serve_refusal({env_var: bad})
        with pytest.raises(EmbeddedConfigError) as refused:
            _embedded_config({env_var: bad}, monkeypatch)
        assert str(refused.value) in refusal, (str(refused.value), refusal)


def test_a_config_file_is_read_embedded_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "durably.toml"
    cfg.write_text('port = 7001\ningress_token = "from-file"\nmax_body = "2KiB"\n')
    got = _embedded_config({"DURABLY_CONFIG": str(cfg), "DURABLY_ADMIN_PORT": "7002"}, monkeypatch)
    assert (got.port, got.admin_port, got.ingress_token, got.body_limit) == (7001, 7002, "from-file", 2048)
    cfg.write_text("prot = 1\n")
    with pytest.raises(EmbeddedConfigError, match="unknown setting 'prot'"):
        _embedded_config({"DURABLY_CONFIG": str(cfg)}, monkeypatch)


def test_the_readme_says_which_settings_embedded_mode_ignores() -> None:
    readme = (REPO / "README.md").read_text()
    for name in IGNORED_EMBEDDED:
        assert f"`{serve_settings.env_name(name)}`" in readme.split("## Two ways to run the same app")[1][:6000]

