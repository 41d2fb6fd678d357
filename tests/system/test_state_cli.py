"""`durably state get|set|edit|clear` against a real `durably serve`: values written by the CLI are what
the object's handlers read, and an edit made in $EDITOR is saved with the version it was read at."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import _SERVERS_KEY, ServerFactory, ServerProcess
from .test_cli import cli

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    servers: list[ServerProcess] = []
    try:
        yield ServerFactory(tmp_path_factory.mktemp("state"), servers).start("objects")
    finally:
        for s in servers:
            s.ensure_dead()


@pytest.fixture(autouse=True)
def _server_log_on_failure(request: pytest.FixtureRequest, server: ServerProcess) -> None:
    request.node.stash[_SERVERS_KEY] = [server]


def ok(server: ServerProcess, *args: str, **kwargs: object) -> str:
    r = cli(server, *args, **kwargs)  # type: ignore[arg-type]
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r.stdout


def test_set_get_merge_clear(server: ServerProcess) -> None:
    assert json.loads(ok(server, "invoke", "Counter/ann/add", "2")) == 2
    assert json.loads(ok(server, "state", "get", "Counter", "ann")) == {"value": 2}
    ok(server, "state", "set", "Counter", "ann", '{"value": 40}')
    assert json.loads(ok(server, "invoke", "Counter/ann/add", "2")) == 42
    ok(server, "state", "set", "Counter", "ann", '{"note": "hi"}', "--merge")
    assert json.loads(ok(server, "state", "get", "Counter", "ann")) == {"note": "hi", "value": 42}
    body = json.loads(ok(server, "state", "get", "Counter", "ann", "--json"))
    assert body["object_key"] == "ann" and body["version"]
    ok(server, "state", "clear", "Counter", "ann", "--yes")
    assert json.loads(ok(server, "state", "get", "Counter", "ann")) == {}
    assert json.loads(ok(server, "invoke", "Counter/ann/add", "1")) == 1


def test_edit_saves_what_the_editor_wrote(server: ServerProcess, tmp_path: Path) -> None:
    ok(server, "invoke", "Counter/ben/add", "5")
    editor = tmp_path / "editor.py"
    # A stand-in for $EDITOR: doubles every number in the file it is given.
    editor.write_text("import json, sys\np = sys.argv[1]\nd = json.load(open(p))\n"
                      "json.dump({k: v * 2 for k, v in d.items()}, open(p, 'w'))\n")
    out = ok(server, "state", "edit", "Counter", "ben", env={"EDITOR": f"{sys.executable} {editor}"})
    assert "saved Counter/ben" in out
    assert json.loads(ok(server, "invoke", "Counter/ben/get")) == 10


def test_errors_are_one_line(server: ServerProcess) -> None:
    r = cli(server, "state", "get", "Greeter", "x")
    assert r.returncode == 1 and "only virtual objects and workflows" in r.stderr
    r = cli(server, "state", "set", "Counter", "x", "[1]")
    assert r.returncode == 2 and "JSON object" in r.stderr
    r = cli(server, "state", "clear", "Counter", "x", stdin="n\n")
    assert r.returncode == 1 and "Aborted" in r.stderr


def test_get_is_paged(server: ServerProcess) -> None:
    many = {f"n{i:04d}": i for i in range(30)}
    ok(server, "state", "set", "Counter", "many", json.dumps(many))
    r = cli(server, "state", "get", "Counter", "many", "--limit", "20")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first == {k: v for k, v in many.items() if k < "n0020"}
    # The rest is a cursor away, and the CLI says how to get it.
    assert "--after" in r.stderr
    cursor = r.stderr.split("--after ")[1].split()[0]
    assert json.loads(ok(server, "state", "get", "Counter", "many", "--after", cursor)) == {
        k: v for k, v in many.items() if k >= "n0020"}
    assert json.loads(ok(server, "state", "get", "Counter", "many", "--limit", "7", "--all")) == many
    body = json.loads(ok(server, "state", "get", "Counter", "many", "--limit", "20", "--json"))
    assert body["next_cursor"] == cursor and "version" not in body
