"""The shape of src/durably (issue 19), checked over its source with `ast`; each failure lists every offender.

The rules:

- **SQL lives in the store.** No string literal outside `durably/server/store/` looks like SQL: a statement
  (an uppercase `SELECT ... FROM`, `INSERT [OR ...] INTO`, `UPDATE t SET`, `DELETE FROM`, `CREATE/DROP TABLE|INDEX|
  VIEW|TRIGGER`, `ALTER TABLE`, `PRAGMA x`, `WITH x AS (`, or a bare `BEGIN`/`COMMIT`/`ROLLBACK`/`SAVEPOINT`) or a
  clause of one (`WHERE col = ...`, `AND col = ?`, `ORDER BY col`, `GROUP BY col`, `LIMIT ?`, a bare `col = ?`).
  f-strings are read with their constant parts joined (each `{...}` as `x`); implicitly concatenated literals are
  one literal. Docstrings are documentation, never SQL, and are not read. Prose does not trip it: the keywords
  must be uppercase and followed by SQL's structure ("Delete a completed invocation" is not SQL).
  One exception: SQL over Restate's introspection tables (`sys_invocation`, `sys_journal`, ...), which the
  clients send to a Restate server's `POST /query`, is that server's API, not Durably's storage; a module whose
  statements name only `sys_*` tables may hold such SQL (and the clauses it appends to it).
- **No private name crosses a module.** A name with one leading underscore (dunder names are public protocol)
  belongs to the module that defines it. Outside it, none of these may appear: `from durably.x import _name`,
  `import durably.x as y` then `y._name`, `from durably.x import y` (a module) then `y._name`, and `obj._name`
  on some object (not `self`/`cls`) when `_name` is defined only in other durably modules (a method, a class or
  an attribute set on `self`/`cls` there), which is how one module reaches into another's objects.
  A private *module* is private to its package, not to a module: `durably/ext/_context.py` may be imported by
  every module inside `durably/ext/` (its `__init__`, its siblings and their subpackages), by nothing outside it.
- **No import cycle at load time.** The graph has an edge from a module to each `durably` module it imports at
  load time: module level, class bodies, `try`/`if` blocks, but not function bodies and not the body of
  `if TYPE_CHECKING:`. `import a.b.c` and `from a.b import c` also load the packages `a` and `a.b` (their
  `__init__`), except the importer's own enclosing packages, which are loading already; `from a.b import name`
  loads `a.b` whatever it is. Every strongly connected part of more than one module is a cycle.
- **Sizes.** No module over 700 lines; at most 18 modules (`.py` files, `__init__.py` included) directly in
  `src/durably/`, at most 20 in any other folder.
- **`import durably` is light**: it loads no `durably.server` module and no `hypercorn` (checked in a fresh
  interpreter, with the chain of imports that pulled an offender in).
- **The public names import**: the restate-compatible modules, every name in a public package's `__all__`, and
  every `durably` module and name that README.md, SECURITY.md, docs/ and examples/ use. `durably.ext` packages
  whose extra is not installed are skipped (their import fails on the missing third-party package).
- **bench/ shares its helpers** (issue 19, item 6): no script defines again a function or class of
  `bench/procs.py` (free ports, the `durably` command, starting a process and waiting until it answers); no two
  scripts import each other, at any level; every script still loads (`--help`, or its module for the apps).

The checkers are plain functions over parsed sources, in tests/structure_checks.py; `test_checker_*` run them on
small synthetic sources, so a checker that stops finding anything fails here too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from structure_checks import (  # tests/ is on sys.path, as for the other test helpers
    BENCH,
    MAX_FOLDER_MODULES,
    MAX_LINES,
    MAX_ROOT_MODULES,
    STORE_PACKAGE,
    Module,
    bench_helper_copies,
    bench_import_cycles,
    bench_import_graph,
    bench_script_loads,
    crowded_folders,
    documented_names,
    heavy_imports_of_import_durably,
    import_chains,
    import_cycles,
    import_graph,
    inside,
    load_modules,
    long_modules,
    looks_like_sql,
    modules_from,
    private_attributes,
    private_imports,
    public_names,
    sql_outside_store,
    string_literals,
    unresolved_public_names,
)

# ------------------------------------------------------------------------------------------------ the tests


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return load_modules()


def fail_with(what: str, offenders: list[str]) -> None:
    if offenders:
        pytest.fail(f"{what} ({len(offenders)}):\n" + "\n".join(offenders), pytrace=False)


def test_no_sql_outside_the_store(modules: dict[str, Module]) -> None:
    fail_with(f"SQL outside src/durably/{STORE_PACKAGE.removeprefix('durably.').replace('.', '/')}/",
              sql_outside_store(modules))


def test_no_private_name_imported_across_modules(modules: dict[str, Module]) -> None:
    fail_with("private names imported from or looked up on another module", private_imports(modules))


def test_no_private_attribute_of_another_modules_objects(modules: dict[str, Module]) -> None:
    fail_with("private names of another module's objects", private_attributes(modules))


def test_no_import_cycle_at_load_time(modules: dict[str, Module]) -> None:
    edges = sum(len(targets) for targets in import_graph(modules).values())
    assert edges > 100, "the import graph of src/durably is nearly empty: the checker is broken"
    fail_with("import cycles at load time", import_cycles(modules))


def test_module_and_folder_sizes() -> None:
    fail_with("modules too long or folders too crowded", long_modules() + crowded_folders())


def test_the_store_is_where_the_sql_is(modules: dict[str, Module]) -> None:
    """The SQL check finds the store's own statements: it cannot pass by finding nothing anywhere."""
    store = {n: m for n, m in modules.items() if inside(n, STORE_PACKAGE)}
    hits = [t for m in store.values() for _, t in string_literals(m.tree) if looks_like_sql(t)]
    assert len(hits) >= 20, hits


def test_import_durably_loads_no_server_and_no_hypercorn() -> None:
    fail_with("`import durably` loads server modules or hypercorn", heavy_imports_of_import_durably())


def test_public_names_still_import() -> None:
    fail_with("public names that no longer import", unresolved_public_names())


def test_the_public_names_are_read_from_the_docs() -> None:
    """The list is not empty by accident: the docs' imports and names are in it."""
    names = public_names()
    assert len(names) > 80, names
    assert {"durably.ext.openai.DurableRunner", "durably.RunOptions", "durably.testing.TestRuntime",
            "durably.select", "durably.getLogger"} <= set(names)


# ------------------------------------------------------------------------------------------------ the checkers' tests


@pytest.mark.parametrize("text", [
    "SELECT id, status FROM invocations WHERE seq = ?",
    "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)",
    "INSERT INTO journal VALUES (?, ?)",
    "UPDATE invocations SET status = ? WHERE id = ?",
    "DELETE FROM waiters WHERE target = ?",
    "\n    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)",
    "CREATE UNIQUE INDEX IF NOT EXISTS by_key ON invocations (key)",
    "DROP TABLE old",
    "ALTER TABLE invocations ADD COLUMN x",
    "PRAGMA journal_mode=WAL",
    "PRAGMA user_version",
    "BEGIN IMMEDIATE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT batch",
    "WITH RECURSIVE tree(id) AS (SELECT id FROM calls)",
    "SELECT 1",
    " WHERE status = ?",
    " AND service = ?",
    "created_at <= ?",
    " ORDER BY created_at DESC, seq DESC LIMIT ?",
    " GROUP BY status",
    " LIMIT ?",
])
def test_checker_sees_sql(text: str) -> None:
    assert looks_like_sql(text)


@pytest.mark.parametrize("text", [
    "Delete a completed invocation",
    "Delete a completed invocation (its row, output and journal) from the store.",
    "Select the rows from the store where the status is set",
    "Create or change a concurrency rule (Restate's `restate rules set PATTERN --concurrency N`).",
    "say which rule: DELETE /rules?pattern=checkout/*",
    "DELETE /invocations/{id}",
    "Update the state, then commit it",
    "COMMIT the batch once the tick ends",
    "BEGIN: the handler starts",
    "with the key's lock held, from the inbox",
    "An RFC 3339 time from the server in local time",
    "select id from invocations",  # SQL keywords are written in uppercase here
    "the WHERE clause is built by the store",
    "limit={limit} order={order}",
    "Insert into the inbox the next invocation",
    "PRAGMA",
])
def test_checker_leaves_prose_alone(text: str) -> None:
    assert not looks_like_sql(text)


def test_checker_finds_sql_in_f_strings_and_joined_literals_outside_the_store_only() -> None:
    modules = modules_from({
        "durably/server/store/sqlite.py": 'Q = "SELECT a FROM t WHERE id = ?"\n',
        "durably/server/engine/engine.py": (
            'Q = f"SELECT {cols} FROM invocations WHERE id = ?"\n'
            'R = ("DELETE FROM state "\n     "WHERE service = ? AND key = ?")\n'
            'S = " AND " + f"{c} = ?"\n'
            'log.info(f"Delete a completed invocation {inv_id}")\n'),
        "durably/server/http/admin.py": (
            '"""The admin API: SELECT a FROM t WHERE x = ? is how the store reads (docs are not code)."""\n'
            'def f():\n    """DELETE FROM t"""\n    return 1\n'),
    })
    hits = sql_outside_store(modules)
    assert [h.split(": ")[0] for h in hits] == ["durably/server/engine/engine.py:1",
                                                "durably/server/engine/engine.py:2",
                                                "durably/server/engine/engine.py:4"], hits


def test_checker_lets_restates_query_sql_be_and_nothing_else() -> None:
    modules = modules_from({
        "durably/clients/restate_query.py": ('Q = f"SELECT {cols} FROM sys_invocation"\n'
                                             'O = " ORDER BY created_at DESC"\n'),
        "durably/clients/mixed.py": 'Q = "SELECT a FROM sys_invocation"\nR = "SELECT b FROM invocations"\n',
    })
    assert [h.split(": ")[0] for h in sql_outside_store(modules)] == ["durably/clients/mixed.py:1",
                                                                      "durably/clients/mixed.py:2"]


PRIVATE_CASES = {
    # importer source (as durably/user.py unless a path is given) -> whether it breaks the rule
    "from durably.lib import _helper": True,
    "from .lib import _helper": True,
    "from durably.lib import helper, __version__": False,
    "import durably.lib as lib\nlib._helper()": True,
    "import durably.lib as lib\nlib.helper(lib.__name__)": False,
    "from durably import lib\nlib._helper": True,
    "from . import lib\nx = lib._CACHE": True,
    "import durably.lib\ndurably.lib._helper()": True,
    "import durably\ndurably.lib._helper()": True,
    "import durably\ndurably._version": True,
    "import durably.lib\ndurably.lib.helper()": False,
    "from durably.pkg import _impl": True,
    "from durably.pkg._impl import thing": True,
    "import durably.pkg._impl": True,
    "durably/pkg/__init__.py|from durably.pkg import _impl": False,
    "durably/pkg/__init__.py|from ._impl import thing": False,
    "durably/pkg/__init__.py|from ._impl import _thing": True,
    "durably/pkg/other.py|from durably.pkg._impl import thing": False,
    "durably/pkg/sub/deep.py|from durably.pkg import _impl\n_impl.thing()": False,
    "durably/pkg/sub/deep.py|from durably.pkg import _impl\n_impl._secret()": True,
    "durably/lib.py|import durably.lib as me\nme._helper()": False,
    "import json\njson._default_encoder": False,
}


@pytest.mark.parametrize("case", list(PRIVATE_CASES))
def test_checker_of_private_imports(case: str) -> None:
    path, _, source = case.rpartition("|")
    sources = {"durably/__init__.py": "", "durably/lib.py": "_CACHE = {}\ndef _helper(): ...\n",
               "durably/pkg/__init__.py": "", "durably/pkg/_impl.py": "def thing(): ...\ndef _thing(): ...\n",
               "durably/pkg/sub/__init__.py": ""}
    sources[path or "durably/user.py"] = source
    found = private_imports(modules_from(sources))
    assert bool(found) == PRIVATE_CASES[case], found


def test_checker_of_private_attributes_of_another_modules_objects() -> None:
    modules = modules_from({
        "durably/engine.py": ("class Engine:\n    def __init__(self):\n        self._active = {}\n"
                              "    def _load(self, i): return self._active[i]\n"),
        "durably/calltree.py": ("def kill(engine, i):\n    inv = engine._load(i)\n    engine._active.pop(i)\n"
                                "    return inv._asdict(), sys._getframe(), engine.load(i)\n"),
        "durably/keys.py": ("class Keys:\n    _load: int = 0\n    def f(self, other):\n"
                            "        return self._load + other._load + other._active\n"),
    })
    assert private_attributes(modules) == [
        "durably/calltree.py:2: engine._load: a private name of durably.engine, durably.keys",
        "durably/calltree.py:3: engine._active: a private name of durably.engine",
        "durably/keys.py:4: other._active: a private name of durably.engine",
    ]


CYCLE_CASES = {
    "plain": ({"durably/a.py": "import durably.b", "durably/b.py": "from durably import a"}, True),
    "in a function": ({"durably/a.py": "import durably.b", "durably/b.py": "def f():\n    from durably import a"},
                      False),
    "type checking": ({"durably/a.py": "import durably.b",
                       "durably/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                       "    from durably import a"}, False),
    "type checking's else": ({"durably/a.py": "import durably.b",
                              "durably/b.py": "import typing\nif typing.TYPE_CHECKING:\n    pass\nelse:\n"
                                              "    from durably.a import x"}, True),
    "class body and try": ({"durably/a.py": "class A:\n    from durably.b import x",
                            "durably/b.py": "try:\n    from .a import A\nexcept ImportError:\n    A = None"}, True),
    "relative": ({"durably/p/__init__.py": "", "durably/p/q.py": "from . import r",
                  "durably/p/r.py": "from .q import x"}, True),
    "a package's __init__ is loaded": ({"durably/p/__init__.py": "from durably.a import x", "durably/p/q.py": "",
                                        "durably/a.py": "from durably.p.q import y"}, True),
    "own packages are loading already": ({"durably/p/__init__.py": "from durably.p import q",
                                          "durably/p/q.py": "from durably.p.r import y", "durably/p/r.py": ""},
                                         False),
    "a name from the own package": ({"durably/p/__init__.py": "from durably.p import q\nVALUE = 1",
                                     "durably/p/q.py": "from durably.p import VALUE"}, True),
    "chain without cycle": ({"durably/a.py": "import durably.b", "durably/b.py": "import durably.c",
                             "durably/c.py": "import json"}, False),
    "three": ({"durably/a.py": "import durably.b", "durably/b.py": "import durably.c",
               "durably/c.py": "from durably import a"}, True),
}


@pytest.mark.parametrize("case", list(CYCLE_CASES))
def test_checker_of_import_cycles(case: str) -> None:
    sources, cyclic = CYCLE_CASES[case]
    found = import_cycles(modules_from({"durably/__init__.py": "", **sources}))
    assert bool(found) == cyclic, found


def test_checker_prints_the_cycle_and_every_import_in_it() -> None:
    found = import_cycles(modules_from({"durably/__init__.py": "", "durably/a.py": "import json\nimport durably.b",
                                        "durably/b.py": "import durably.c", "durably/c.py": "from durably import a"}))
    assert found == [
        "cycle of 3 modules, e.g. durably.a (durably/a.py:2) -> durably.b (durably/b.py:1) -> "
        "durably.c (durably/c.py:1) -> durably.a",
        "    durably/a.py:2: imports durably.b",
        "    durably/b.py:1: imports durably.c",
        "    durably/c.py:1: imports durably.a",
    ]


def test_checker_of_sizes(tmp_path: Path) -> None:
    root = tmp_path / "durably"
    (root / "crowded").mkdir(parents=True)
    (root / "fine").mkdir()
    for i in range(MAX_ROOT_MODULES):
        (root / f"m{i}.py").write_text("x = 1\n" * (MAX_LINES if i == 0 else 1))
    for i in range(MAX_FOLDER_MODULES):
        (root / "fine" / f"m{i}.py").write_text("")
        (root / "crowded" / f"m{i}.py").write_text("")
    assert long_modules(tmp_path) == [] and crowded_folders(tmp_path) == []
    (root / "m0.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (root / "extra.py").write_text("")
    (root / "crowded" / "extra.py").write_text("")
    top = tmp_path.name
    assert long_modules(tmp_path) == [f"{top}/durably/m0.py: {MAX_LINES + 1} lines (at most {MAX_LINES})"]
    assert crowded_folders(tmp_path) == [
        f"{top}/durably/: {MAX_ROOT_MODULES + 1} modules (at most {MAX_ROOT_MODULES})",
        f"{top}/durably/crowded/: {MAX_FOLDER_MODULES + 1} modules (at most {MAX_FOLDER_MODULES})"]


def test_checker_reads_import_chains_from_importtime() -> None:
    text = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:        10 |         10 |   json",
        "import time:        10 |         10 |         hypercorn.config",
        "import time:        10 |         10 |       hypercorn",
        "import time:        10 |         10 |     hypercorn.asyncio",
        "import time:        10 |         10 |   durably.hosting.embedded",
        "import time:        10 |         10 | durably",
    ])
    chains = import_chains(text)
    assert chains["hypercorn.config"] == ["durably", "durably.hosting.embedded", "hypercorn.asyncio", "hypercorn",
                                          "hypercorn.config"]
    assert chains["json"] == ["durably", "json"]


def test_checker_of_documented_names() -> None:
    text = ("from durably import RunOptions, TerminalError as TE\n"
            "from durably.ext.openai import (\n    DurableRunner,\n    restate_context,\n)\n"
            "import durably\nx = durably.Service('S')\n"
            "`from durably.X import Y`, `<dir>/durably.sqlite3`, `durably.toml`, durably-data/durably.lock\n")
    assert documented_names([text]) == {"durably.RunOptions", "durably.TerminalError", "durably.Service",
                                        "durably.ext.openai", "durably.ext.openai.DurableRunner",
                                        "durably.ext.openai.restate_context"}


# ------------------------------------------------------------------------------------------------ bench/


def test_bench_shares_its_helpers_and_has_no_import_cycle() -> None:
    assert "http_bench.py" in bench_import_graph()["interop_bench.py"]  # the graph is read
    fail_with("bench/ copies its shared helpers or imports in a cycle", bench_helper_copies() + bench_import_cycles())


@pytest.mark.parametrize("script", sorted(p.relative_to(BENCH).as_posix() for p in BENCH.rglob("*.py")))
def test_bench_script_loads(script: str) -> None:
    problem = bench_script_loads(BENCH / script)
    missing = re.search(r"ModuleNotFoundError: No module named '([\w.]+)'", problem or "")
    if missing and not missing[1].startswith("durably") and not list(BENCH.rglob(f"{missing[1]}.py")):
        pytest.skip(f"needs {missing[1]}, which the comparison installs in its own environment")
    assert problem is None, problem


def test_checker_of_bench(tmp_path: Path) -> None:
    (tmp_path / "compare").mkdir()
    (tmp_path / "procs.py").write_text("def free_port(): ...\nclass Proc: ...\n")
    (tmp_path / "http_bench.py").write_text("from procs import free_port\nimport json\n")
    (tmp_path / "sleep_bench.py").write_text("import socket\n\n\ndef free_port(): ...\n")
    (tmp_path / "compare" / "run.py").write_text("from http_bench import x\ndef main():\n    from report import w\n")
    (tmp_path / "compare" / "report.py").write_text("import json\nfrom run import LABELS\n")
    assert bench_helper_copies(tmp_path) == ["bench/sleep_bench.py:4: defines free_port again (bench/procs.py has it)"]
    assert bench_import_graph(tmp_path)["compare/run.py"] == {"http_bench.py": 1, "compare/report.py": 3}
    assert bench_import_cycles(tmp_path) == ["bench/: compare/report.py:2 -> compare/run.py:3 -> compare/report.py"]
