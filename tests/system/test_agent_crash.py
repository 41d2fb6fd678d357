"""kill -9 of `durably serve` in the middle of an agent run, per framework integration.

The scripted model asks for two tools, then answers. The server is killed while the second tool runs
(so the first model turn and the first tool's step are journaled). After a restart on the same data
directory the agent finishes: the model was not asked again for the journaled turn, the first tool's
side effect happened once, and the answer equals that of an uninterrupted run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from .conftest import ServerFactory, ServerProcess, wait_until

pytestmark = pytest.mark.system

WAIT_S = 20.0
FRAMEWORKS = {"openai": "agents", "pydantic": "pydantic_ai", "langchain": "langchain.agents", "adk": "google.adk"}
# The ADK app is a virtual object (its session lives in the object's state).
TARGET = {"adk": "AgentCrash/k/run"}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def send(server: ServerProcess, target: str, work: Path, key: str) -> None:
    with server.client() as c:
        r = c.post(f"/{target}/send", json={"dir": str(work)}, headers={"idempotency-key": key})
    assert r.status_code == 202, r.text


def attach(server: ServerProcess, target: str, key: str) -> str:
    with server.client(timeout=WAIT_S) as c:
        r = c.get(f"/restate/invocation/{target}/{key}/attach")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_agent_survives_kill_9_between_tool_calls(durably_serve: ServerFactory, tmp_path: Path,
                                                   framework: str) -> None:
    if importlib.util.find_spec(FRAMEWORKS[framework].split(".")[0]) is None:
        pytest.skip(f"{FRAMEWORKS[framework]} is not installed")
    app = f"agent_{framework}"
    target = TARGET.get(framework, "AgentCrash/run")
    work = tmp_path / "work"
    work.mkdir()
    first = durably_serve.start(app)
    send(first, target, work, "crash")
    wait_until(lambda: lines(work / "slow-started.log"), WAIT_S, "the second tool to start",
               lambda: f"\n{first.log()}")
    first.kill()

    (work / "gate").touch()
    second = durably_serve.start(app)
    answer = attach(second, target, "crash")

    # The first turn was asked once (by the killed process), the second once (after the restart).
    assert lines(work / "model_calls.log") == [f"0 {first.pid}", f"2 {second.pid}"]
    # The first tool's step was journaled before the kill: its side effect happened once.
    assert lines(work / "effects.log") == [f"record {first.pid}"]
    # The second tool's step was not journaled when the process died: it ran again.
    assert lines(work / "slow-started.log") == [str(first.pid), str(second.pid)]

    calm = tmp_path / "calm"
    calm.mkdir()
    (calm / "gate").touch()
    send(second, target, calm, "calm")
    assert answer == attach(second, target, "calm") == "answer: recorded, done"
    assert lines(calm / "model_calls.log") == [f"0 {second.pid}", f"2 {second.pid}"]
