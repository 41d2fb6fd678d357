"""The `durably` CLI against a real `durably serve` process: invoke, invocations, services, errors.

One server (tests/system/apps/objects.py) serves the whole module; every test uses its own object keys or its
own invocations, so the tests do not depend on each other. No sleeps: every wait polls with a deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from .conftest import _SERVERS_KEY, REPO_ROOT, ServerFactory, ServerProcess, free_port, wait_until

pytestmark = pytest.mark.system

WAIT_S = 15.0
NO_SERVER = "start one with `durably serve module:app`"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    servers: list[ServerProcess] = []
    try:
        yield ServerFactory(tmp_path_factory.mktemp("cli"), servers).start("objects")
    finally:
        for s in servers:
            s.ensure_dead()


@pytest.fixture(autouse=True)
def _server_log_on_failure(request: pytest.FixtureRequest, server: ServerProcess) -> None:
    # The system conftest's report hook shows the logs of the servers stashed on the test item.
    request.node.stash[_SERVERS_KEY] = [server]


def admin_url(server: ServerProcess) -> str:
    return f"http://127.0.0.1:{server.admin_port}"


def cli(server: ServerProcess | None, *args: str, stdin: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m durably.cli.main ARGS`, with the server's URLs in the environment."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_")}
    full_env["COLUMNS"] = "200"  # wide enough that no cell a test looks at is clipped
    if server is not None:
        full_env.update(DURABLY_INGRESS_URL=server.url, DURABLY_ADMIN_URL=admin_url(server))
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "durably.cli.main", *args], capture_output=True, text=True,
                          input=stdin, env=full_env, cwd=REPO_ROOT, timeout=30)


def clis(server: ServerProcess | None, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run independent CLI commands at once (each is a new Python process: in a row they add up)."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: cli(server, *args), commands))


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def fails(result: subprocess.CompletedProcess[str], code: int, stderr: str) -> None:
    assert result.returncode == code, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert stderr in result.stderr
    assert "Traceback" not in result.stderr


def invocation_id(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("invocation id: ")]
    assert lines, stderr
    return lines[0].removeprefix("invocation id: ")


def describe(server: ServerProcess, inv: str) -> dict[str, Any]:
    """The admin API's description (straight over HTTP: polling through a new process each time is slow)."""
    resp = httpx.get(f"{admin_url(server)}/invocations/{inv}", timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_describe(server: ServerProcess, inv: str, condition: Any, what: str) -> dict[str, Any]:
    """Poll the invocation until `condition(body)` holds."""
    def check() -> dict[str, Any] | None:
        body = describe(server, inv)
        return body if condition(body) else None

    return wait_until(check, WAIT_S, what)  # type: ignore[return-value]


def sleeping(body: dict[str, Any]) -> bool:
    return any(e["type"] == "sleep" for e in body["journal"])


def send_nap(server: ServerProcess) -> str:
    """Start Sleeper/nap and wait until it sleeps."""
    out = ok(cli(server, "invoke", "Sleeper/nap", "--send")).stdout.split()
    assert out[1] == "Accepted", out
    wait_describe(server, out[0], sleeping, f"{out[0]} to sleep")
    return out[0]


def test_invoke_plain_keyed_stdin_json_and_failure(server: ServerProcess) -> None:
    result = ok(cli(server, "invoke", "Greeter/greet", '"ada"'))
    assert json.loads(result.stdout) == {"greeting": "hello ADA", "length": 3}
    assert result.stdout.startswith('{\n  "greeting"')  # pretty-printed
    assert invocation_id(result.stderr).startswith("inv_1")

    ok_keyed = ok(cli(None, "invoke", "Counter/plain/add", "5", "--ingress", server.url))
    assert ok_keyed.stdout == "5\n"
    from_stdin = ok(cli(server, "invoke", "Counter/plain/add", "-", stdin="2\n"))
    assert from_stdin.stdout == "7\n"
    raw = ok(cli(server, "invoke", "Counter/plain/get", "--json"))
    assert json.loads(raw.stdout) == 7

    first = ok(cli(server, "invoke", "Counter/idem/add", "1", "--idempotency-key", "k1"))
    again = ok(cli(server, "invoke", "Counter/idem/add", "1", "--idempotency-key", "k1"))
    assert first.stdout == again.stdout == "1\n"
    assert invocation_id(first.stderr) == invocation_id(again.stderr)

    refused, not_json, unknown, bad_target = clis(
        server, ["invoke", "Greeter/refuse", '"bo"'], ["invoke", "Greeter/greet", "ada"], ["invoke", "Nope/x"],
        ["invoke", "Greeter"])
    fails(refused, 1, "error 422: no greeting for bo")
    assert refused.stdout == ""
    fails(not_json, 1, "error 400: ")
    assert "BODY must be JSON" in not_json.stderr
    fails(unknown, 1, "error 404: service 'Nope' not found")
    fails(bad_target, 2, "Service/handler or Object/key/handler")


def test_invoke_send_with_json_and_delay(server: ServerProcess) -> None:
    sent = ok(cli(server, "invoke", "Counter/sent/add", "3", "--send", "--json"))
    reply = json.loads(sent.stdout)
    assert reply["status"] == "Accepted"
    done = wait_describe(server, reply["invocationId"], lambda b: b["status"] == "completed", "the send to complete")
    assert done["output"] == 3

    delayed = json.loads(ok(cli(server, "invoke", "Sleeper/nap", "--send", "--delay", "1h", "--json")).stdout)
    assert "executionTime" in delayed
    assert describe(server, delayed["invocationId"])["status"] == "scheduled"
    assert ok(cli(server, "invocations", "kill", delayed["invocationId"])).stdout.startswith("killed ")

    no_send, bad_delay = clis(server, ["invoke", "Sleeper/nap", "--delay", "1h"],
                              ["invoke", "Sleeper/nap", "--send", "--delay", "soon"])
    fails(no_send, 2, "--delay needs --send")
    fails(bad_delay, 1, "error 400: ")


def test_list_with_filters_limit_and_json(server: ServerProcess) -> None:
    for delta in ("1", "2", "3"):
        ok(cli(server, "invoke", "Counter/listed/add", delta))
    result = ok(cli(server, "invocations", "list", "--service", "Counter", "--key", "listed"))
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ID", "TARGET", "STATUS", "ATTEMPTS", "CREATED", "OUTPUT", "/", "LAST", "ERROR"]
    assert len(rows) == 3
    assert [r.split()[1:4] for r in rows] == [["Counter/listed/add", "completed", "1"]] * 3
    assert [r.split()[-1] for r in rows] == ["6", "3", "1"]  # newest first, the output last
    # Columns are aligned: every row's target starts where the header's does.
    assert {r.index("Counter/listed/add") for r in rows} == {header.index("TARGET")}

    limited, nothing, completed, bad_status = clis(
        server, ["invocations", "list", "--key", "listed", "--limit", "2", "--json"],
        ["invocations", "list", "--service", "Nobody"], ["invocations", "list", "--status", "completed", "--json"],
        ["invocations", "list", "--status", "sleepy"])
    assert [r["output"] for r in json.loads(ok(limited).stdout)["invocations"]] == [6, 3]
    assert ok(nothing).stdout == "no invocations\n"
    assert {r["status"] for r in json.loads(ok(completed).stdout)["invocations"]} == {"completed"}
    fails(bad_status, 2, "Invalid value for '--status'")


def test_describe_shows_the_journal_then_cancel_runs_the_compensation(server: ServerProcess) -> None:
    inv = send_nap(server)
    text = ok(cli(server, "invocations", "describe", inv)).stdout
    assert f"id:       {inv}" in text
    assert "target:   Sleeper/nap" in text
    assert "status:   invoked" in text or "status:   suspended" in text
    assert "journal (4 entries):" in text
    table = text.split("journal (4 entries):\n")[1].splitlines()
    assert table[0].split() == ["#", "TYPE", "NAME", "RESULT", "TIME"]
    assert table[1].split()[:2] == ["0", "input"]
    assert table[2].split()[:3] == ["1", "run", "book"]
    assert table[3].split()[:4] == ["2", "run", "completion", '"booked"']
    assert table[4].split()[:3] == ["3", "sleep", "until"]

    assert ok(cli(server, "invocations", "cancel", inv)).stdout == f"cancelled {inv}\n"
    wait_describe(server, inv, lambda b: b["status"] == "completed", "the cancelled nap to complete")
    body = json.loads(ok(cli(server, "invocations", "describe", inv, "--json")).stdout)
    assert (body["id"], body["target"], body["status"]) == (inv, "Sleeper/nap", "completed")
    assert (body["failure_code"], body["failure_message"]) == (409, "cancelled")
    assert [e.get("name") for e in body["journal"] if e["type"] == "run"] == ["book", "undo"]
    text = ok(cli(server, "invocations", "describe", inv)).stdout
    assert "status:     completed (failed)" in text
    assert "failure:    409 cancelled" in text
    assert "journal (8 entries):" in text
    rows = [line.split() for line in text.split("journal (8 entries):\n")[1].splitlines()[1:]]
    assert [r[0] for r in rows] == [str(i) for i in range(8)]
    assert rows[4][1:3] == ["signal", "cancel"]
    assert rows[5][1:3] == ["run", "undo"]
    assert rows[7][1:5] == ["output", "failure", "409", "cancelled"]
    fails(cli(server, "invocations", "cancel", inv), 1, "error 409: cannot cancel")


def test_a_cancel_that_cannot_reach_the_handler_is_shown_pending_while_it_retries(server: ServerProcess) -> None:
    # As on restate-server 1.7.12 (measured): cancel answers 202, and a handler that fails before its first
    # await never sees it, so the invocation goes on being retried; describe says the cancel is pending.
    inv = ok(cli(server, "invoke", "Sleeper/stumble", "--send")).stdout.split()[0]
    wait_describe(server, inv, lambda b: b.get("last_error") is not None, "the first failed attempt")
    assert ok(cli(server, "invocations", "cancel", inv)).stdout == f"cancelled {inv}\n"
    cancelled = wait_describe(server, inv, lambda b: any(e["type"] == "signal" for e in b["journal"]),
                              "the cancel to be journaled")
    wait_describe(server, inv, lambda b: b["attempts"] > cancelled["attempts"], "another attempt after the cancel")
    text = ok(cli(server, "invocations", "describe", inv)).stdout
    assert "status:" in text and "completed" not in text.split("journal")[0]
    assert "cancel:" in text and "the handler sees it at its next await" in text and "kill ends it now" in text
    assert ok(cli(server, "invocations", "kill", inv)).stdout.startswith("killed")
    done = wait_describe(server, inv, lambda b: b["status"] == "completed", "the kill")
    assert (done["failure_code"], done["failure_message"]) == (409, "killed")
    assert "cancel:" not in ok(cli(server, "invocations", "describe", inv)).stdout


def test_kill_ends_a_waiting_call(server: ServerProcess) -> None:
    env = dict(os.environ, DURABLY_INGRESS_URL=server.url)
    caller = subprocess.Popen([sys.executable, "-m", "durably.cli.main", "invoke", "Counter/held/hold"], env=env,
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def held() -> str | None:
            resp = httpx.get(f"{admin_url(server)}/invocations", params={"key": "held"}, timeout=10)
            running = [r for r in resp.json()["invocations"] if r["status"] in ("invoked", "suspended")]
            return running[0]["id"] if running else None

        inv = wait_until(held, WAIT_S, "the held invocation to run")
        assert ok(cli(server, "invocations", "kill", str(inv))).stdout == f"killed {inv}\n"
        out, err = caller.communicate(timeout=WAIT_S)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
    assert caller.returncode == 1, (out, err)
    assert "error 409: killed" in err
    assert f"invocation id: {inv}" in err
    fails(cli(server, "invocations", "kill", str(inv)), 1, "error 409: cannot kill")
    assert ok(cli(server, "invoke", "Counter/held/add", "1")).stdout == "1\n"  # the key is free


def test_pause_resume_purge_and_bad_ids(server: ServerProcess) -> None:
    inv = send_nap(server)
    assert ok(cli(server, "invocations", "pause", inv)).stdout == f"paused {inv}\n"
    wait_describe(server, inv, lambda b: b["status"] == "paused", "the nap to pause")
    assert ok(cli(server, "invocations", "pause", inv)).stdout == f"{inv} was already paused\n"
    assert ok(cli(server, "invocations", "resume", inv)).stdout == f"resumed {inv}\n"
    fails(cli(server, "invocations", "purge", inv), 1, "error 409: cannot purge")
    ok(cli(server, "invocations", "kill", inv))
    wait_describe(server, inv, lambda b: b["status"] == "completed", "the nap to complete")
    assert ok(cli(server, "invocations", "purge", inv)).stdout == f"purged {inv}\n"
    gone, resume_gone, malformed, missing = clis(
        server, ["invocations", "describe", inv], ["invocations", "resume", inv],
        ["invocations", "describe", "inv_nope"], ["invocations", "cancel"])
    fails(gone, 1, f"error 404: invocation {inv} not found")
    fails(resume_gone, 1, "error 404")
    fails(malformed, 1, "error 400: malformed invocation id")
    fails(missing, 2, "Missing argument")


def test_services_list(server: ServerProcess) -> None:
    text = ok(cli(None, "services", "list", "--admin", admin_url(server))).stdout
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "HANDLERS"]
    assert lines[1].split(maxsplit=2) == ["Counter", "VirtualObject",
                                          "add (exclusive), get (shared), hold (exclusive)"]
    assert lines[2].split(maxsplit=2) == ["Greeter", "Service", "greet, refuse"]
    assert lines[3].split(maxsplit=2) == ["Sleeper", "Service", "nap, stumble"]
    as_json, on_group, wrong_url = clis(
        server, ["services", "list", "--json"], ["services", "--admin", admin_url(server), "list"],
        ["services", "list", "--admin", server.url])
    found = json.loads(ok(as_json).stdout)["services"]
    assert {s["name"]: s["ty"] for s in found} == {"Counter": "VirtualObject", "Greeter": "Service",
                                                   "Sleeper": "Service"}
    assert ok(on_group).stdout == text  # the admin URL given to the group works too
    fails(wrong_url, 1, "does not look like a durably admin API")  # the ingress URL is recognised


def test_no_server_is_a_clear_message_and_exit_2() -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    results = clis(None, ["invocations", "list", "--admin", nobody], ["services", "list", "--admin", nobody],
                   ["invocations", "kill", "inv_1aiTkvjXbWmr7imTAIZ2SuFTcl5Iw8lnhL", "--admin", nobody],
                   ["invoke", "Greeter/greet", '"x"', "--ingress", nobody])
    for result in results:
        fails(result, 2, f"no durably server at {nobody}: {NO_SERVER}")
        assert result.stdout == ""
    from_env = cli(None, "invocations", "list", env={"DURABLY_ADMIN_URL": nobody})
    fails(from_env, 2, f"no durably server at {nobody}")
