"""`durably serve` exposed with care: separate admin bind address, bearer tokens, TLS, refused bad settings."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import APPS, REPO_ROOT, SERVING_LINE, free_port, wait_until

pytestmark = pytest.mark.system

APP = f"{APPS / 'objects.py'}:app"


class Serve:
    """One `durably serve` process with extra flags and environment."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.log_path = tmp / f"serve-{self.port}.log"
        cmd = [sys.executable, "-m", "durably.cli.main", "serve", APP, "--port", str(self.port), "--admin-port",
               str(self.admin_port), "--data-dir", str(tmp / "data"), *args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_serving(self) -> Serve:
        wait_until(lambda: SERVING_LINE in self.log() or self.proc.poll() is not None, 20, "durably serve",
                   lambda: self.log())
        assert self.proc.poll() is None, self.log()
        return self

    def wait_exit(self) -> int:
        return self.proc.wait(20)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[type[Serve]]:
    started: list[Serve] = []

    def make(*args: str, env: dict[str, str] | None = None) -> Serve:
        s = Serve(tmp_path, *args, env=env)
        started.append(s)
        return s

    yield make  # type: ignore[misc]
    for s in started:
        s.stop()


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_")}
    return subprocess.run([sys.executable, "-m", "durably.cli.main", *args], cwd=REPO_ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_admin_listener_stays_on_loopback_when_the_ingress_moves(serve) -> None:
    # 127.0.0.2 stands in for a public interface (the tests may only use loopback).
    s = serve("--host", "127.0.0.2").wait_serving()
    assert httpx.get(f"http://127.0.0.2:{s.port}/restate/health").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{s.admin_port}/health").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.2:{s.admin_port}/health")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{s.port}/restate/health")
    line = next(x for x in s.log().splitlines() if SERVING_LINE in x)
    assert f"http://127.0.0.2:{s.port}" in line and f"http://127.0.0.1:{s.admin_port}" in line


def test_tokens_from_the_environment_guard_both_apis_and_the_cli_sends_them(serve) -> None:
    tokens = {"DURABLY_ADMIN_TOKEN": "adm-0f9e8d7c6b5a", "DURABLY_INGRESS_TOKEN": "ing-1a2b3c4d5e6f"}
    s = serve("--log-level", "debug", env=tokens).wait_serving()
    urls = {"DURABLY_ADMIN_URL": f"http://127.0.0.1:{s.admin_port}",
            "DURABLY_INGRESS_URL": f"http://127.0.0.1:{s.port}"}
    assert httpx.get(f"{urls['DURABLY_ADMIN_URL']}/services").status_code == 401
    assert httpx.post(f"{urls['DURABLY_INGRESS_URL']}/Counter/a/add", json=1).status_code == 401
    assert httpx.get(f"{urls['DURABLY_INGRESS_URL']}/restate/health").status_code == 200
    refused = cli("services", "list", env=urls)
    assert refused.returncode == 1 and "401" in refused.stderr and "DURABLY_ADMIN_TOKEN" in refused.stderr
    assert cli("invoke", "Counter/a/add", "2", env=urls).returncode == 1
    listed = cli("services", "list", env={**urls, **tokens})
    assert listed.returncode == 0, listed.stderr
    assert "Counter" in listed.stdout
    called = cli("invoke", "Counter/a/add", "2", env={**urls, **tokens})
    assert (called.returncode, called.stdout.strip()) == (0, "2"), called.stderr
    s.stop()
    log = s.log()
    assert "token required" in log
    for value in tokens.values():
        assert value not in log


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_on_both_listeners(serve, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    s = serve("--tls-cert", str(cert), "--tls-key", str(key)).wait_serving()
    ingress, admin = f"https://127.0.0.1:{s.port}", f"https://127.0.0.1:{s.admin_port}"
    assert f"(admin API on {admin})" in s.log()
    with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as client:
        assert client.post(f"{ingress}/Counter/tls/add", json=3).json() == 3
        assert client.get(f"{admin}/services").status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{s.port}/restate/health")
    with pytest.raises(httpx.ConnectError):  # not trusted without the certificate
        httpx.get(f"{ingress}/restate/health")
    listed = cli("invocations", "list", env={"DURABLY_ADMIN_URL": admin, "SSL_CERT_FILE": str(cert)})
    assert listed.returncode == 0, listed.stderr
    assert "Counter/tls/add" in listed.stdout


@pytest.mark.parametrize(("args", "words"), [
    (["--tls-cert", "{cert}"], "needs both --tls-cert and --tls-key"),
    (["--tls-cert", "{key}", "--tls-key", "{key}"], "cannot use the TLS certificate"),
    (["--request-identity-key", "{cert}"], "is not an unencrypted PEM private key"),
    (["--request-identity-key", "{key}"], "request identity needs an ed25519 key"),
    (["--admin-token", ""], "empty --admin-token"),
])
def test_unusable_security_files_stop_the_start(serve, tmp_path: Path, args: list[str], words: str) -> None:
    cert, key = _self_signed(tmp_path)
    s = serve(*[a.format(cert=cert, key=key) for a in args])
    assert s.wait_exit() == 1
    assert words in s.log()
    assert not (tmp_path / "data").exists()  # nothing was opened
