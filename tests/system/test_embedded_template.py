"""A script shaped like Restate's Python template (tests/system/apps/template/__main__.py: app built in main(),
hypercorn started there) run with `python __main__.py`: with DURABLY_EMBEDDED=1 (or under `durably run`) the
process is a whole system, ingress, admin and SQLite in ./durably-data, and survives a SIGKILL mid-handler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import APPS, free_port, wait_until

pytestmark = pytest.mark.system

TEMPLATE = APPS / "template" / "__main__.py"
SERVING_LINE = "durably is serving"
WAIT_S = 20.0
STEPS = 4


class ScriptProcess:
    """`python __main__.py` (or `durably run python __main__.py`) in `cwd`, on fresh ports each start."""

    def __init__(self, cwd: Path, log_path: Path, via_durably_run: bool = False, embedded: bool = True,
                 extra_env: dict[str, str] | None = None) -> None:
        self.extra_env = extra_env or {}
        self.cwd = cwd
        self.log_path = log_path
        self.via_durably_run = via_durably_run
        self.embedded = embedded
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = self.admin_port = self.deployment_port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, wait: bool = True) -> ScriptProcess:
        self.port, self.admin_port, self.deployment_port = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_")}
        env.update(PYTHONUNBUFFERED="1", TEMPLATE_BIND=f"127.0.0.1:{self.deployment_port}", **self.extra_env)
        cmd = [sys.executable, str(TEMPLATE)]
        if self.via_durably_run:
            cmd = [sys.executable, "-m", "durably.cli.main", "run", "--port", str(self.port), "--admin-port",
                   str(self.admin_port), *cmd]
        else:
            env.update(DURABLY_PORT=str(self.port), DURABLY_ADMIN_PORT=str(self.admin_port))
            if self.embedded:
                env["DURABLY_EMBEDDED"] = "1"
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        if wait:
            wait_until(self._serving, WAIT_S, "the template script to serve", lambda: "\n" + self.log())
        return self

    def _serving(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"the script exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return (httpx.get(f"http://127.0.0.1:{self.deployment_port}/health", timeout=2).status_code == 200
                    and (not self.embedded or httpx.get(f"{self.url}/restate/health", timeout=2).status_code == 200))
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def scripts(tmp_path: Path) -> Iterator[list[ScriptProcess]]:
    started: list[ScriptProcess] = []
    yield started
    for s in started:
        s.ensure_dead()


def effects(work: Path) -> list[tuple[int, int]]:
    path = work / "effects.log"
    if not path.exists():
        return []
    return [(int(step), int(pid)) for _, step, pid in (line.split() for line in path.read_text().splitlines())]


@pytest.mark.parametrize("trigger", ["env", "durably-run"])
def test_template_script_embedded_survives_sigkill_mid_handler(
        tmp_path: Path, scripts: list[ScriptProcess], trigger: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    project = tmp_path / "project"  # the script's working directory: the data goes to ./durably-data there
    project.mkdir()
    first = ScriptProcess(project, tmp_path / "script.log", via_durably_run=trigger == "durably-run")
    scripts.append(first)
    first.start()
    assert SERVING_LINE in first.log()
    assert (project / "durably-data").is_dir()

    # The admin API of the embedded runtime lists the script's services.
    services = httpx.get(f"http://127.0.0.1:{first.admin_port}/services", timeout=5).json()["services"]
    assert [s["name"] for s in services] == ["Steps"]

    block_at = 2
    body = {"dir": str(work), "steps": STEPS, "block_at": block_at}
    r = httpx.post(f"{first.url}/Steps/run/send", json=body, headers={"idempotency-key": "k1"}, timeout=10)
    assert r.status_code == 202, r.text
    inv_id = r.json()["invocationId"]
    first_pid = first.proc.pid  # type: ignore[union-attr]
    wait_until(lambda: (block_at, first_pid) in effects(work), WAIT_S, "the handler to reach the blocking step",
               lambda: f"\n{effects(work)}\n{first.log()}")

    first.kill()
    (work / "gate").touch()
    second = ScriptProcess(project, tmp_path / "script.log", via_durably_run=trigger == "durably-run")
    scripts.append(second)
    second.start()
    second_pid = second.proc.pid  # type: ignore[union-attr]

    r = httpx.get(f"{second.url}/restate/invocation/Steps/run/k1/attach", timeout=WAIT_S)
    assert r.status_code == 200, r.text
    assert r.headers["x-restate-id"] == inv_id
    assert r.json() == [f"value-{i}" for i in range(STEPS)]
    counts = Counter(step for step, _ in effects(work))
    for i in range(block_at):
        assert counts[i] == 1, f"step {i} was committed before the kill but ran again: {effects(work)}"
    assert effects(work)[-(STEPS - block_at):] == [(i, second_pid) for i in range(block_at, STEPS)]
    # SIGTERM goes to hypercorn, which stops the embedded runtime through the lifespan and exits cleanly.
    assert second.terminate() == 0, second.log()
    assert "shutting down" in second.log()


@pytest.mark.parametrize("trigger", ["env", "durably-run"])
def test_embedded_script_keeps_serves_guards(tmp_path: Path, scripts: list[ScriptProcess], trigger: str) -> None:
    """Issue 20: tokens and the body limit of the environment hold in embedded mode as in `durably serve`."""
    project = tmp_path / "project"
    project.mkdir()
    script = ScriptProcess(project, tmp_path / "script.log", via_durably_run=trigger == "durably-run",
                           extra_env={"DURABLY_INGRESS_TOKEN": "in-tok", "DURABLY_ADMIN_TOKEN": "ad-tok",
                                      "DURABLY_MAX_BODY": "1KiB"})
    scripts.append(script)
    script.start()
    admin = f"http://127.0.0.1:{script.admin_port}"
    assert httpx.get(f"{admin}/services", timeout=5).status_code == 401
    assert httpx.get(f"{admin}/services", headers={"Authorization": "Bearer ad-tok"}, timeout=5).status_code == 200
    body = {"dir": str(tmp_path), "steps": 0}
    assert httpx.post(f"{script.url}/Steps/run", json=body, timeout=5).status_code == 401
    big = httpx.post(f"{script.url}/Steps/run", json={**body, "pad": "x" * 4096},
                     headers={"Authorization": "Bearer in-tok"}, timeout=5)
    assert big.status_code == 413, big.text


def test_embedded_script_refuses_a_bad_setting_as_serve_does(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_")}
    env.update(DURABLY_EMBEDDED="1", DURABLY_MAX_BODY="lots", TEMPLATE_BIND=f"127.0.0.1:{free_port()}",
               DURABLY_DATA_DIR=str(tmp_path / "data"))
    out = subprocess.run([sys.executable, str(TEMPLATE)], cwd=tmp_path, env=env, capture_output=True, timeout=30)
    served = subprocess.run([sys.executable, "-m", "durably.cli.main", "serve"], cwd=tmp_path, env=env,
                            capture_output=True, timeout=30)
    assert out.returncode != 0 and served.returncode != 0
    text = (out.stdout + out.stderr).decode(errors="replace")
    assert "'lots' is not a size" in text and "'lots' is not a size" in served.stderr.decode(), text


def test_without_the_variable_the_script_is_a_plain_deployment(tmp_path: Path, scripts: list[ScriptProcess]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    plain = ScriptProcess(project, tmp_path / "script.log", embedded=False)
    scripts.append(plain)
    plain.start()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{plain.url}/restate/health", timeout=2)
    assert not (project / "durably-data").exists()
    assert SERVING_LINE not in plain.log()


def test_embedded_start_failure_stops_the_script_with_the_reason(
        tmp_path: Path, scripts: list[ScriptProcess]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    first = ScriptProcess(project, tmp_path / "first.log")
    scripts.append(first)
    first.start()
    # A second copy asking for the first one's ingress port cannot start its runtime: it says so and exits.
    second_port = first.port
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_")}
    env.update(DURABLY_EMBEDDED="1", DURABLY_PORT=str(second_port), DURABLY_ADMIN_PORT=str(free_port()),
               TEMPLATE_BIND=f"127.0.0.1:{free_port()}", DURABLY_DATA_DIR=str(tmp_path / "other-data"))
    out = subprocess.run([sys.executable, str(TEMPLATE)], cwd=project, env=env, capture_output=True, timeout=30)
    assert out.returncode != 0
    text = (out.stdout + out.stderr).decode(errors="replace")
    assert "cannot listen" in text and str(second_port) in text, text


def test_durably_serve_finds_the_app_built_in_main_without_starting_its_server(tmp_path: Path) -> None:
    from .conftest import ServerProcess

    server = ServerProcess(str(TEMPLATE), tmp_path / "data", tmp_path / "serve.log")
    try:
        server.start()
        work = tmp_path / "work"
        work.mkdir()
        with server.client() as c:
            r = c.post("/Steps/run", json={"dir": str(work), "steps": 2})
        assert r.status_code == 200, r.text
        assert r.json() == ["value-0", "value-1"]
        assert "Running on" not in server.log()  # the script's hypercorn call never ran
    finally:
        server.ensure_dead()
