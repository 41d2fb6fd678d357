"""Issue 20 against a real `durably serve`: empty tokens refused in every form, DNS rebinding refused on both
listeners (and the UI), `--allowed-host` in its flag, env and file forms."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from .test_security import serve  # noqa: F401  (the fixture)

pytestmark = pytest.mark.system


@pytest.mark.parametrize("which", ["ADMIN", "INGRESS"])
def test_an_empty_token_in_the_environment_stops_the_start(serve, tmp_path: Path, which: str) -> None:  # noqa: F811
    s = serve(env={f"DURABLY_{which}_TOKEN": ""})
    assert s.wait_exit() == 1, s.log()
    assert f"empty --{which.lower()}-token" in s.log() and f"DURABLY_{which}_TOKEN" in s.log()
    assert not (tmp_path / "data").exists()  # nothing was opened


@pytest.mark.parametrize("which", ["admin", "ingress"])
def test_an_empty_token_in_the_config_file_stops_the_start(serve, tmp_path: Path, which: str) -> None:  # noqa: F811
    config = tmp_path / "durably.toml"
    config.write_text(f'{which}_token = ""\n')
    s = serve("--config", str(config))
    assert s.wait_exit() == 1, s.log()
    assert f"empty --{which}-token" in s.log()
    assert not (tmp_path / "data").exists()


def request(port: int, path: str, host: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    """One request with exactly this Host header (as a browser on a rebound name sends it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def test_a_rebound_name_is_refused_on_both_listeners(serve) -> None:  # noqa: F811
    s = serve().wait_serving()
    for port in (s.port, s.admin_port):
        for host in ("localhost", f"localhost:{port}", "127.0.0.1", f"127.0.0.1:{port}", f"[::1]:{port}", "[::1]"):
            status, _, _ = request(port, "/restate/health" if port == s.port else "/health", host)
            assert status == 200, (port, host)
    # The attack: a page on evil.example whose name now resolves to 127.0.0.1, with a matching Origin.
    evil = {"Origin": f"http://evil.example:{s.admin_port}"}
    for path, method in (("/ui/invocations", "GET"), ("/invocations", "GET"), ("/services", "GET")):
        status, body, headers = request(s.admin_port, path, f"evil.example:{s.admin_port}", method, headers=evil)
        assert status == 421, (path, status, body)
        payload = json.loads(body)
        assert payload["code"] == 421 and "--allowed-host" in payload["message"], payload
        assert headers["x-restate-error-source"] == "admin"
    status, body, _ = request(s.admin_port, "/ui/invocations/inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz/kill",
                              f"evil.example:{s.admin_port}", "POST", b"", evil)
    assert status == 421
    status, body, _ = request(s.port, "/Counter/a/add", f"evil.example:{s.port}", "POST", b"1",
                              {"content-type": "application/json"})
    assert status == 421 and "--allowed-host" in json.loads(body)["message"]
    status, body, _ = request(s.port, "/Counter/a/add", f"localhost:{s.port}", "POST", b"1",
                              {"content-type": "application/json"})
    assert (status, body) == (200, b"1")


@pytest.mark.parametrize("form", ["flag", "env", "file"])
def test_allowed_hosts_in_every_form(serve, tmp_path: Path, form: str) -> None:  # noqa: F811
    if form == "flag":
        s = serve("--allowed-host", "durably.internal", "--allowed-host", "ops.example:9999")
    elif form == "env":
        s = serve(env={"DURABLY_ALLOWED_HOST": "durably.internal ops.example:9999"})
    else:
        config = tmp_path / "durably.toml"
        config.write_text('allowed_host = ["durably.internal", "ops.example:9999"]\n')
        s = serve("--config", str(config))
    s.wait_serving()
    assert request(s.admin_port, "/services", f"durably.internal:{s.admin_port}")[0] == 200
    assert request(s.admin_port, "/services", "DURABLY.internal")[0] == 200
    assert request(s.port, "/restate/health", "durably.internal")[0] == 200
    assert request(s.admin_port, "/services", "ops.example:9999")[0] == 200
    assert request(s.admin_port, "/services", f"ops.example:{s.admin_port}")[0] == 421
    assert request(s.admin_port, "/services", "evil.example")[0] == 421
    assert request(s.admin_port, "/services", f"localhost:{s.admin_port}")[0] == 200


def test_an_absurd_concurrency_limit_flag_is_a_clear_cli_error(serve, tmp_path: Path) -> None:  # noqa: F811
    s = serve("--concurrency-limit", f"*={10**30}")
    assert s.wait_exit() != 0
    assert "at most 1000000" in s.log() and "Traceback" not in s.log()
    assert not (tmp_path / "data").exists()
