"""The server-wide default retry policy: Restate's env vars, DURABLY_ ones, `--default-retry-*` flags."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import click
import pytest

import durably
from durably import InvocationRetryPolicy, TerminalError
from durably.cli.serve import retry_policy
from durably.server.engine.invocation import PAUSED
from durably.server.process.retry_config import RetryConfigError, default_retry_policy, settings_from_env
from durably.server.store.base import COL
from durably.testing import TestRuntime


def test_restate_env_vars_have_restates_meaning() -> None:
    env = {"RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS": "3",
           "RESTATE_DEFAULT_RETRY_POLICY__ON_MAX_ATTEMPTS": "kill",
           "RESTATE_DEFAULT_RETRY_POLICY__INITIAL_INTERVAL": "10ms",
           "RESTATE_DEFAULT_RETRY_POLICY__MAX_INTERVAL": "2s",
           "RESTATE_DEFAULT_RETRY_POLICY__EXPONENTIATION_FACTOR": "1.5"}
    policy = default_retry_policy(settings_from_env(env))
    assert policy == InvocationRetryPolicy(initial_interval=timedelta(milliseconds=10), exponentiation_factor=1.5,
                                           max_interval=timedelta(seconds=2), max_attempts=3, on_max_attempts="kill")


def test_durably_prefix_wins_over_restate_and_unset_fields_keep_restates_defaults() -> None:
    env = {"RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS": "3", "DURABLY_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS": "5"}
    policy = default_retry_policy(settings_from_env(env))
    assert (policy.max_attempts, policy.on_max_attempts, policy.initial_interval) == (
        5, "pause", timedelta(milliseconds=500))


def test_unlimited_attempts() -> None:
    policy = default_retry_policy(settings_from_env({"RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS": "unlimited"}))
    assert policy.max_attempts is None


@pytest.mark.parametrize(("var", "value"), [("MAX_ATTEMPTS", "0"), ("ON_MAX_ATTEMPTS", "explode"),
                                            ("INITIAL_INTERVAL", "soon"), ("EXPONENTIATION_FACTOR", "x")])
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(RetryConfigError, match=f"RESTATE_DEFAULT_RETRY_POLICY__{var}"):
        settings_from_env({f"RESTATE_DEFAULT_RETRY_POLICY__{var}": value})


def test_serve_flags_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS", "3")
    monkeypatch.setenv("RESTATE_DEFAULT_RETRY_POLICY__ON_MAX_ATTEMPTS", "kill")
    policy = retry_policy({"retry_max_attempts": "9", "retry_on_max_attempts": None})
    assert (policy.max_attempts, policy.on_max_attempts) == (9, "kill")
    with pytest.raises(click.ClickException, match="--default-retry-max-interval"):
        retry_policy({"retry_max_interval": "later"})


def test_no_settings_keep_the_built_in_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for prefix in ("RESTATE", "DURABLY"):
        monkeypatch.delenv(f"{prefix}_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS", raising=False)
    assert retry_policy({"retry_max_attempts": None}) is None


def _app() -> durably.App:
    svc = durably.Service("Flaky")

    @svc.handler()
    async def always(ctx: durably.Context) -> None:
        raise RuntimeError("down")

    @svc.handler(invocation_retry_policy=InvocationRetryPolicy(max_attempts=2, on_max_attempts="pause"))
    async def own_policy(ctx: durably.Context) -> None:
        raise RuntimeError("down")

    return durably.app(services=[svc])


async def test_server_default_kills_after_max_attempts_and_handler_policy_wins() -> None:
    policy = default_retry_policy(settings_from_env({
        "RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS": "3", "RESTATE_DEFAULT_RETRY_POLICY__ON_MAX_ATTEMPTS": "kill",
        "RESTATE_DEFAULT_RETRY_POLICY__INITIAL_INTERVAL": "1ms"}))
    async with TestRuntime(_app(), retry_policy=policy) as rt:
        with pytest.raises(TerminalError) as info:
            await rt.call("Flaky/always")
        assert info.value.status_code == 500 and "down" in info.value.message
        inv = await rt.send("Flaky/own_policy")
        # The handler's own policy (2 attempts, then pause) wins over the server's kill.
        for _ in range(200):
            await rt.settle()
            row = rt.store.load_invocation(inv)
            if row[COL["status"]] == PAUSED:
                break
            await asyncio.sleep(0.005)
        assert (row[COL["status"]], row[COL["attempts"]]) == (PAUSED, 2)
