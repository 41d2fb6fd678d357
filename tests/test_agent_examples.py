"""The agent examples (examples/agents/) with their scripted models, in process and in always-replay mode."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from agent_waits import has_sleep_timer, wait_for

from durably.testing import TestRuntime

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

EXAMPLES = {"openai": ("agents", "OpenAI"), "pydantic": ("pydantic_ai", "Pydantic")}


@pytest.fixture(params=sorted(EXAMPLES))
def example(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    framework_module, prefix = EXAMPLES[request.param]
    if importlib.util.find_spec(framework_module) is None:
        pytest.skip(f"{framework_module} is not installed")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the scripted models, never the network
    monkeypatch.setenv("APPROVAL_LOG", str(tmp_path / "approvals.log"))
    module = importlib.import_module(f"examples.agents.{request.param}_agents")
    return module.app, prefix, tmp_path / "approvals.log"


def approval_link(log: Path) -> str | None:
    if not log.exists():
        return None
    found = re.findall(r"awakeables/(\S+)/resolve", log.read_text())
    return found[-1] if found else None


async def wait_link(rt: TestRuntime, log: Path) -> str:
    await wait_for(rt, lambda: approval_link(log) is not None, "approval link")
    return approval_link(log) or ""


async def test_chat_remembers_per_key(example) -> None:  # type: ignore[no-untyped-def]
    app, p, _ = example
    async with TestRuntime(app, always_replay=True) as rt:
        assert await rt.call(f"{p}Chat/alice/message", "hi") == "You have told me 1 thing(s); before this: []"
        assert await rt.call(f"{p}Chat/alice/message", "again") == "You have told me 2 thing(s); before this: ['hi']"
        assert await rt.call(f"{p}Chat/bob/message", "yo") == "You have told me 1 thing(s); before this: []"


async def test_handoff_reaches_the_specialist(example) -> None:  # type: ignore[no-untyped-def]
    app, p, _ = example
    async with TestRuntime(app, always_replay=True) as rt:
        assert await rt.call(f"{p}Triage/ask", "Why was I charged twice?") == "Billing: invoice 17 for you: 2 x 9.99"
        assert await rt.call(f"{p}Triage/ask", "How is the weather?") == "Weather: sunny, 21 C"


async def test_small_claim_needs_no_human(example) -> None:  # type: ignore[no-untyped-def]
    app, p, log = example
    async with TestRuntime(app, always_replay=True) as rt:
        answer = await rt.call(f"{p}Claims/review", {"amount": 20, "reason": "lunch"})
    assert answer.endswith(": approved") and approval_link(log) is None


async def test_large_claim_waits_for_the_human(example) -> None:  # type: ignore[no-untyped-def]
    app, p, log = example
    async with TestRuntime(app, always_replay=True, virtual_clock=True) as rt:
        inv = await rt.send(f"{p}Claims/review", {"amount": 2500, "reason": "laptop"})
        link = await wait_link(rt, log)
        async with rt.http() as http:
            r = await http.post(f"/restate/awakeables/{link}/resolve", json="rejected")
            assert r.status_code == 202, r.text
        assert (await rt.attach(inv, f"{p}Claims/review")).endswith(": rejected")
    assert len(log.read_text().splitlines()) == 1  # the approver was told once despite the replays


async def test_large_claim_times_out_without_an_answer(example) -> None:  # type: ignore[no-untyped-def]
    app, p, log = example
    async with TestRuntime(app, always_replay=True, virtual_clock=True) as rt:
        inv = await rt.send(f"{p}Claims/review", {"amount": 2500, "reason": "laptop"})
        await wait_link(rt, log)
        await wait_for(rt, lambda: has_sleep_timer(rt, inv), "timer for the approver's answer")
        await rt.advance(timedelta(days=1, seconds=1))
        assert (await rt.attach(inv, f"{p}Claims/review")).endswith(": no answer in time")
