"""`durably endpoint` as a process: a real Restate server registers it and drives it; SIGTERM drains (a running
attempt finishes before the process exits); a killed worker is replaced; TLS serves HTTP/2 over ALPN."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import RestateServer, free_port, wait_until

pytestmark = pytest.mark.interop

TEMPLATE = Path(__file__).resolve().parents[1] / "system" / "apps" / "template" / "__main__.py"


class EndpointProcess:
    """`durably endpoint` on a free port, its output in a log file."""

    def __init__(self, tmp_path: Path, *args: str, app: str = str(TEMPLATE), port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = tmp_path / f"endpoint-{self.port}-{len(list(tmp_path.glob('endpoint-*.log')))}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_")}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "durably.cli.main", "endpoint", app, "--port", str(self.port), *args],
                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        return [int(line.split("worker ")[1].split()[0]) for line in self.log().splitlines()
                if "durably endpoint: worker" in line and line.endswith("started")]

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"durably endpoint exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 30, "durably endpoint")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in self.worker_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def restate_node(tmp_path: Path) -> Iterator[RestateServer]:
    base = tmp_path / "restate"
    base.mkdir()
    server = RestateServer(base, {})
    yield server
    server.stop()


def effects(work: Path) -> list[tuple[int, int]]:
    path = work / "effects.log"
    if not path.exists():
        return []
    return [(int(step), int(pid)) for _, step, pid in (line.split() for line in path.read_text().splitlines())]


def test_restate_drives_endpoint_workers_and_sigterm_lets_the_running_attempt_finish(
        tmp_path: Path, restate_node: RestateServer) -> None:
    ep = EndpointProcess(tmp_path, "--workers", "2", "--graceful-timeout", "30")
    try:
        ep.wait_healthy()
        wait_until(lambda: len(ep.worker_pids()) == 2, 20, "two workers")
        restate_node.register(ep.url)
        work = tmp_path / "work"
        work.mkdir()
        r = httpx.post(f"{restate_node.ingress}/Steps/run", json={"dir": str(work), "steps": 2}, timeout=30)
        assert (r.status_code, r.json()) == (200, ["value-0", "value-1"]), r.text

        # A killed worker is replaced, and the endpoint keeps serving.
        victim = ep.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(ep.worker_pids()) == 3, 20, "a replacement worker")
        r = httpx.post(f"{restate_node.ingress}/Steps/run", json={"dir": str(work), "steps": 1}, timeout=30)
        assert r.status_code == 200, r.text

        # SIGTERM while an attempt is inside a step: the endpoint drains instead of cutting the stream.
        drain = tmp_path / "drain"
        drain.mkdir()
        r = httpx.post(f"{restate_node.ingress}/Steps/run/send", json={"dir": str(drain), "steps": 3, "block_at": 1},
                       headers={"idempotency-key": "drain"}, timeout=30)
        assert r.status_code == 202, r.text
        wait_until(lambda: len(effects(drain)) == 2, 30, "the attempt to block in step 1")
        ep.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "draining" in ep.log(), 10, "the endpoint to start draining")
        (drain / "gate").touch()
        assert ep.proc.wait(40) == 0, ep.log()
        r = httpx.get(f"{restate_node.ingress}/restate/invocation/Steps/run/drain/output", timeout=30)
        assert (r.status_code, r.json()) == (200, ["value-0", "value-1", "value-2"]), r.text
        assert Counter(step for step, _ in effects(drain)) == {0: 1, 1: 1, 2: 1}
        assert len({pid for _, pid in effects(drain)}) == 1  # one attempt did all of it, before the exit
    finally:
        ep.stop()


def test_tls_serves_http2_over_alpn(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ep = EndpointProcess(tmp_path, "--certfile", str(certfile), "--keyfile", str(keyfile))
    try:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)

        def up() -> bool:
            if ep.proc.poll() is not None:
                pytest.fail(f"durably endpoint exited:\n{ep.log()}")
            try:
                return httpx.get(f"https://127.0.0.1:{ep.port}/health", verify=ctx, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 30, "the TLS endpoint")
        with httpx.Client(http2=True, verify=ctx) as client:
            r = client.get(f"https://127.0.0.1:{ep.port}/discover",
                           headers={"accept": "application/vnd.restate.endpointmanifest.v3+json"})
        assert r.status_code == 200 and r.http_version == "HTTP/2", (r.status_code, r.http_version)
        assert r.json()["protocolMode"] == "BIDI_STREAM"
        assert [s["name"] for s in r.json()["services"]] == ["Steps"]
    finally:
        ep.stop()


def test_sigterm_past_the_graceful_timeout_hands_the_attempt_back_to_restate(
        tmp_path: Path, restate_node: RestateServer) -> None:
    """A step that outlives the drain: the endpoint still exits on time, and Restate retries the attempt on the
    next endpoint without re-running the committed step."""
    ep = EndpointProcess(tmp_path, "--graceful-timeout", "1")
    port = ep.port
    try:
        ep.wait_healthy()
        restate_node.register(ep.url)
        work = tmp_path / "work"
        work.mkdir()
        r = httpx.post(f"{restate_node.ingress}/Steps/run/send", json={"dir": str(work), "steps": 3, "block_at": 1},
                       headers={"idempotency-key": "stuck"}, timeout=30)
        assert r.status_code == 202, r.text
        wait_until(lambda: len(effects(work)) == 2, 30, "the attempt to block in step 1")
        ep.proc.send_signal(signal.SIGTERM)
        assert ep.proc.wait(20) == 0, ep.log()
    finally:
        ep.stop()
    (work / "gate").touch()
    again = EndpointProcess(tmp_path, port=port)  # Restate knows the deployment by its URL
    try:
        again.wait_healthy()
        r = httpx.get(f"{restate_node.ingress}/restate/invocation/Steps/run/stuck/attach", timeout=60)
        assert (r.status_code, r.json()) == (200, ["value-0", "value-1", "value-2"]), r.text
        assert Counter(step for step, _ in effects(work)) == {0: 1, 1: 2, 2: 1}
    finally:
        again.stop()
