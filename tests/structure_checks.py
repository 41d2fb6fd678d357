"""The checkers behind tests/test_structure.py, which states the rules: plain functions over the parsed sources
of src/durably (or synthetic ones, for the checkers' own tests), each returning one line per offender."""

from __future__ import annotations

import ast
import importlib
import itertools
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
STORE_PACKAGE = "durably.server.store"
MAX_LINES = 700
MAX_ROOT_MODULES = 18
MAX_FOLDER_MODULES = 20


# ------------------------------------------------------------------------------------------------ the source tree


@dataclass(frozen=True)
class Module:
    """One module of the package: its dotted name, where it is, its parsed source."""

    name: str
    path: str  # for messages: relative to the repository when it is there
    tree: ast.Module
    is_package: bool  # an __init__.py

    @property
    def package(self) -> str:
        """The package this module's relative imports start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def parse_module(rel: str, source: str, shown: str | None = None) -> Module:
    """A module from its path below the source root (`durably/x/y.py`) and its source."""
    parts = rel.removesuffix(".py").split("/")
    is_package = parts[-1] == "__init__"
    name = ".".join(parts[:-1] if is_package else parts)
    return Module(name, shown or rel, ast.parse(source, rel), is_package)


def load_modules(src: Path = SRC, package: str = "durably") -> dict[str, Module]:
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        shown = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
        mod = parse_module(rel, path.read_text(encoding="utf-8"), shown)
        out[mod.name] = mod
    return out


def modules_from(sources: dict[str, str]) -> dict[str, Module]:
    """Synthetic modules for the checkers' own tests: {"durably/x.py": source}."""
    mods = [parse_module(rel, source) for rel, source in sources.items()]
    return {m.name: m for m in mods}


def resolve_from(mod: Module, node: ast.ImportFrom) -> str:
    """The absolute module name of `from X import ...`, relative forms included."""
    if node.level == 0:
        return node.module or ""
    base = mod.package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def docstring_nodes(tree: ast.Module) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


# ------------------------------------------------------------------------------------------------ SQL


_OP = r"(?:=|!=|<>|<=|>=|<|>|\bIN\b|\bLIKE\b|\bGLOB\b|\bIS\b)"
SQL_STATEMENT = re.compile(r"""^\s*(?:
      SELECT\s.*?\bFROM\s+\w
    | SELECT\s+(?:\?|\d+\s*;?\s*$|count\(|max\(|min\(|sum\()
    | INSERT\s+(?:OR\s+[A-Z]+\s+)?INTO\s+\w
    | REPLACE\s+INTO\s+\w
    | UPDATE\s+\w+\s+SET\s
    | DELETE\s+FROM\s+\w
    | CREATE\s+(?:UNIQUE\s+|TEMP\s+|TEMPORARY\s+|VIRTUAL\s+)?(?:TABLE|INDEX|VIEW|TRIGGER)\b
    | DROP\s+(?:TABLE|INDEX|VIEW|TRIGGER)\b
    | ALTER\s+TABLE\s+\w
    | PRAGMA\s+\w+\s*(?:=|\(|;|$)
    | WITH\s+(?:RECURSIVE\s+)?\w+(?:\s*\([^)]*\))?\s+AS\s*\(
    | (?:BEGIN(?:\s+(?:DEFERRED|IMMEDIATE|EXCLUSIVE))?(?:\s+TRANSACTION)?|COMMIT|ROLLBACK)\s*;?\s*$
    | (?:ROLLBACK\s+TO|SAVEPOINT|RELEASE)\s+\w+\s*;?\s*$
    | VACUUM\b
    )""", re.X | re.S)
SQL_CLAUSE = re.compile(rf"""
      \bWHERE\s+[\w.]+\s*{_OP}
    | \b(?:AND|OR)\s+[\w.]+\s*{_OP}\s*(?:\?|\()
    | ^\s*[a-z_][\w.]*\s*(?:=|!=|<>|<=|>=|<|>)\s*\?\s*$
    | \b(?:ORDER|GROUP)\s+BY\s+[\w.]+
    | \bLIMIT\s+(?:\?|\d+)\s*(?:OFFSET\b|$)
    """, re.X | re.S)
TABLE_NAME = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+(\w+)")


def looks_like_sql(text: str) -> bool:
    return bool(SQL_STATEMENT.search(text) or SQL_CLAUSE.search(text))


def string_literals(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, text) of every string literal but docstrings; an f-string as its constant parts with `x` between."""
    skip = docstring_nodes(tree)
    found: list[tuple[int, str]] = []

    class Visitor(ast.NodeVisitor):
        def visit_Constant(self, node: ast.Constant) -> None:
            if isinstance(node.value, str) and id(node) not in skip:
                found.append((node.lineno, node.value))

        def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
            parts = []
            for value in node.values:
                if isinstance(value, ast.Constant):
                    parts.append(str(value.value))
                else:
                    parts.append("x")
                    self.visit(value)
            found.append((node.lineno, "".join(parts)))

    Visitor().visit(tree)
    return iter(found)


def sql_outside_store(modules: dict[str, Module]) -> list[str]:
    out = []
    for mod in modules.values():
        if inside(mod.name, STORE_PACKAGE):
            continue
        hits = [(line, text) for line, text in string_literals(mod.tree) if looks_like_sql(text)]
        tables = {t for _, text in hits for t in TABLE_NAME.findall(text) if SQL_STATEMENT.search(text)}
        if tables and all(t.startswith("sys_") for t in tables):
            continue  # Restate's introspection SQL, sent to a Restate server's /query (see the module docstring)
        out += [f"{mod.path}:{line}: {' '.join(text.split())[:100]!r}" for line, text in hits]
    return out


# ------------------------------------------------------------------------------------------------ private names


def private_module_problem(mod: Module, dotted: str, modules: dict[str, Module]) -> str | None:
    """Why importing `dotted` from `mod` breaks the rule for private modules (None: it does not)."""
    parts = dotted.split(".")
    for i, part in enumerate(parts[1:], start=1):
        owner, name = ".".join(parts[:i]), ".".join(parts[: i + 1])
        if is_private(part) and name in modules and not inside(mod.name, owner):
            return f"private module {name} from outside {owner}"
    return None


def definitions(mod: Module) -> set[str]:
    """Private names this module defines for objects: functions, methods, classes, attributes of self/cls and
    class-level names."""
    out = set()
    for node in ast.walk(mod.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else (
                        [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
                    out |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                out.add(node.attr)
    return {n for n in out if is_private(n)}


def attribute_chain(node: ast.Attribute) -> tuple[ast.expr, list[str]]:
    attrs = [node.attr]
    value = node.value
    while isinstance(value, ast.Attribute):
        attrs.append(value.attr)
        value = value.value
    return value, attrs[::-1]


def module_bindings(mod: Module, modules: dict[str, Module], report: Callable[[int, str], None]) -> dict[str, str]:
    """The names this module binds to durably modules (local name -> module); reports private imports."""
    bound: dict[str, str] = {}
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not inside(alias.name, "durably"):
                    continue
                if problem := private_module_problem(mod, alias.name, modules):
                    report(node.lineno, f"import {alias.name}: {problem}")
                bound[alias.asname or "durably"] = alias.name if alias.asname else "durably"
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(mod, node)
            if not inside(base, "durably"):
                continue
            if problem := private_module_problem(mod, base, modules):
                report(node.lineno, f"from {base} import ...: {problem}")
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in modules:
                    bound[alias.asname or alias.name] = target
                    if problem := private_module_problem(mod, target, modules):
                        report(node.lineno, f"from {base} import {alias.name}: {problem}")
                elif is_private(alias.name):
                    report(node.lineno, f"from {base} import {alias.name}: a private name of {base}")
    return bound


def private_imports(modules: dict[str, Module]) -> list[str]:
    """Private names imported from, or looked up on, another durably module (and private modules from outside
    their package)."""
    out: list[str] = []
    for mod in modules.values():
        def report(line: int, what: str, mod: Module = mod) -> None:
            out.append(f"{mod.path}:{line}: {what}")

        bound = module_bindings(mod, modules, report)
        for node in ast.walk(mod.tree):
            if not isinstance(node, ast.Attribute):
                continue
            root, attrs = attribute_chain(node)
            if not (isinstance(root, ast.Name) and root.id in bound):
                continue
            current = bound[root.id]
            for i, attr in enumerate(attrs):
                if f"{current}.{attr}" in modules:
                    current = f"{current}.{attr}"
                    if i == len(attrs) - 1 and (problem := private_module_problem(mod, current, modules)):
                        report(node.lineno, f"{'.'.join([root.id, *attrs])}: {problem}")
                    continue
                if i == len(attrs) - 1 and is_private(attr) and current != mod.name:
                    report(node.lineno, f"{'.'.join([root.id, *attrs])}: a private name of {current}")
                break
    return sorted(set(out), key=_by_place)


def private_attributes(modules: dict[str, Module]) -> list[str]:
    """`obj._name` (obj not self/cls, not a module) where only other durably modules define `_name`."""
    defined = {name: definitions(mod) for name, mod in modules.items()}
    out: list[str] = []
    for mod in modules.values():
        bound = module_bindings(mod, modules, lambda line, what: None)
        mine = defined[mod.name]
        for node in ast.walk(mod.tree):
            if not isinstance(node, ast.Attribute) or not is_private(node.attr) or node.attr in mine:
                continue
            root, _ = attribute_chain(node)
            if isinstance(root, ast.Name) and root.id in bound:
                continue  # a module's name: private_imports' business
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            owners = sorted(name for name, names in defined.items() if name != mod.name and node.attr in names)
            if owners:
                receiver = ast.unparse(node.value)[:40]
                out.append(f"{mod.path}:{node.lineno}: {receiver}.{node.attr}: a private name of {', '.join(owners)}")
    return sorted(set(out), key=_by_place)


def _by_place(line: str) -> tuple[str, int, str]:
    path, number, rest = line.split(":", 2)
    return path, int(number), rest


# ------------------------------------------------------------------------------------------------ import cycles


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def load_time_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module loads: not in function bodies, not under `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and is_type_checking(child.test):
            for stmt in child.orelse:
                yield from load_time_imports(ast.Module(body=[stmt], type_ignores=[]))
        else:
            yield from load_time_imports(child)


def ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(modules: dict[str, Module]) -> dict[str, dict[str, int]]:
    """module -> {module it loads: the line of the first import that does}."""
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for mod in modules.values():
        loading = set(ancestors(mod.name)) | {mod.name}  # already loading when this module runs

        def edge(target: str, implied: bool, line: int, mod: Module = mod, loading: set[str] = loading) -> None:
            if target in modules and target != mod.name and not (implied and target in loading):
                graph[mod.name].setdefault(target, line)

        for node in load_time_imports(mod.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    edge(alias.name, False, node.lineno)
                    for parent in ancestors(alias.name):
                        edge(parent, True, node.lineno)
                continue
            base = resolve_from(mod, node)
            submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            for target in submodules:
                edge(target, False, node.lineno)
            edge(base, len(submodules) == len(node.names), node.lineno)
            for parent in ancestors(base):
                edge(parent, True, node.lineno)
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively; the parts with more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    parts: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    part.append(top)
                    if top == node:
                        break
                if len(part) > 1:
                    parts.append(sorted(part))
    return sorted(parts)


def shortest_cycle(graph: dict[str, dict[str, int]], part: list[str]) -> list[str]:
    """A shortest cycle through the part's first module, staying inside the part."""
    start, members = part[0], set(part)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*path[::-1], start]
                if child in members and child not in previous:
                    previous[child] = node
                    nxt.append(child)
        frontier = nxt
    return part


def import_cycles(modules: dict[str, Module]) -> list[str]:
    graph = import_graph(modules)
    out = []
    for part in strongly_connected(graph):
        cycle = shortest_cycle(graph, part)
        steps = " -> ".join(f"{a} ({modules[a].path}:{graph[a][b]})" for a, b in itertools.pairwise(cycle))
        out.append(f"cycle of {len(part)} modules, e.g. {steps} -> {cycle[-1]}")
        for a in part:
            for b, line in sorted(graph[a].items()):
                if b in part:
                    out.append(f"    {modules[a].path}:{line}: imports {b}")
    return out


# ------------------------------------------------------------------------------------------------ sizes


def long_modules(src: Path = SRC, package: str = "durably") -> list[str]:
    out = []
    for path in sorted((src / package).rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            out.append(f"{path.relative_to(src.parent).as_posix()}: {lines} lines (at most {MAX_LINES})")
    return out


def crowded_folders(src: Path = SRC, package: str = "durably") -> list[str]:
    out = []
    root = src / package
    for folder in sorted([root, *(p for p in root.rglob("*") if p.is_dir() and p.name != "__pycache__")]):
        count = len(list(folder.glob("*.py")))
        limit = MAX_ROOT_MODULES if folder == root else MAX_FOLDER_MODULES
        if count > limit:
            out.append(f"{folder.relative_to(src.parent).as_posix()}/: {count} modules (at most {limit})")
    return out
# ------------------------------------------------------------------------------------------------ import durably

LIGHT_PROBE = """
import sys
import durably
print("\\n".join(sorted(m for m in sys.modules if m.startswith("durably.server") or m.split(".")[0] == "hypercorn")))
"""


def import_chains(importtime: str) -> dict[str, list[str]]:
    """module -> the chain of imports that first loaded it, from `python -X importtime` output (which lists a module
    after the modules it imported, indented one step deeper)."""
    rows = []
    for line in importtime.splitlines():
        if not line.startswith("import time:") or line.rstrip().endswith("imported package"):
            continue
        column = line.rsplit("|", 1)[1]
        name = column.strip()
        rows.append(((len(column) - len(column.lstrip()) - 1) // 2, name))
    chains = {}
    for i, (level, name) in enumerate(rows):
        chain, want = [name], level
        for later_level, later in rows[i + 1:]:
            if later_level < want:
                chain.append(later)
                want = later_level
        chains.setdefault(name, chain[::-1])
    return chains


def heavy_imports_of_import_durably() -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", LIGHT_PROBE], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    chains = import_chains(proc.stderr)
    heavy = proc.stdout.split()
    out = []
    for name in heavy:  # name the first heavy module of each chain, with what it pulls in
        chain = chains.get(name, [name])
        if not any(m in heavy for m in chain[:-1]):
            pulled = sum(1 for other in heavy if other != name and name in chains.get(other, [])[:-1])
            more = f" (and {pulled} more modules it imports)" if pulled else ""
            out.append(f"{name}{more}, loaded through {' -> '.join(chain)}")
    return out


# ------------------------------------------------------------------------------------------------ public names

# The restate-sdk modules that `from durably.X import Y` stands in for (README, "Coming from restate-sdk").
RESTATE_MODULES = ("exceptions", "serde", "context", "service", "object", "workflow", "client", "client_types",
                   "harness", "logging", "retry_policy", "asyncio", "endpoint")
PUBLIC = ("durably.app", "durably.Service", "durably.VirtualObject", "durably.Workflow", "durably.Context",
          "durably.ObjectContext", "durably.WorkflowContext", "durably.create_client", "durably.getLogger",
          "durably.testing", "durably.testing.TestRuntime", "durably.ext", "durably.ext.openai",
          "durably.ext.pydantic", "durably.ext.langchain", "durably.ext.adk", "durably.ext.tracing")
# Named like modules in the docs but not Python names: the files of a data directory, a span attribute.
NOT_NAMES = {"durably.sqlite3", "durably.id", "durably.lock", "durably.toml", "durably.replayed"}
DOCS = ("README.md", "SECURITY.md", "docs/*.md", "examples/**/*.py")
FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+(durably(?:\.\w+)*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]+)", re.M)
DOTTED = re.compile(r"(?<![\w./-])durably(?:\.[A-Za-z_]\w*)+")


def documented_names(texts: list[str]) -> set[str]:
    """Every `durably` module and `module.name` the texts import or name (placeholders like `durably.X` left out)."""
    out = set()
    for text in texts:
        for module, names in FROM_IMPORT.findall(text):
            for item in names.strip("()").split(","):
                if name := item.split(" as ")[0].strip():
                    out.add(f"{module}.{name}")
        out.update(DOTTED.findall(text))
    return {n for n in out if n not in NOT_NAMES and not any(re.fullmatch(r"[A-Z]", p) for p in n.split("."))}


class MissingExtra(Exception):
    """The name needs a third-party package that is not installed (an extra)."""


def resolve(dotted: str) -> None:
    """Import `dotted` as modules and attributes (durably.ext.openai.DurableRunner); raise if it does not resolve."""
    parts = dotted.split(".")
    obj: object = importlib.import_module(parts[0])
    for i in range(1, len(parts)):
        name = ".".join(parts[: i + 1])
        try:
            obj = importlib.import_module(name)
            continue
        except ModuleNotFoundError as e:
            if e.name and not inside(e.name, parts[0]):
                raise MissingExtra(e.name) from None
            if e.name != name:
                raise
        obj = getattr(obj, parts[i])


def public_names() -> list[str]:
    texts = [p.read_text(encoding="utf-8") for pattern in DOCS for p in sorted(REPO.glob(pattern))]
    names = {f"durably.{m}" for m in RESTATE_MODULES} | set(PUBLIC) | documented_names(texts)
    packages = [p for p in PUBLIC if not p.rpartition(".")[2][:1].isupper()]  # modules, not classes
    for module in sorted({"durably", *packages, *(f"durably.{m}" for m in RESTATE_MODULES)}):
        try:
            exported = getattr(importlib.import_module(module), "__all__", ())
        except ImportError:
            continue  # a missing extra, or a module that is gone: unresolved_public_names says which
        names |= {f"{module}.{n}" for n in exported}
    return sorted(names)


def unresolved_public_names() -> list[str]:
    out = []
    for name in public_names():
        try:
            resolve(name)
        except MissingExtra:
            continue
        except (ImportError, AttributeError) as e:
            out.append(f"{name}: {type(e).__name__}: {e}")
    return out


# ------------------------------------------------------------------------------------------------ bench/

BENCH = REPO / "bench"
BENCH_HELPERS = "procs.py"  # free ports, the durably command, starting and waiting for processes


def bench_import_graph(bench: Path = BENCH) -> dict[str, dict[str, int]]:
    """bench script -> {bench script it imports, at any level: line}. bench/ is not a package: a script imports
    its neighbours by bare name, and bench/compare/ scripts also those of bench/ (they put it on sys.path)."""
    graph: dict[str, dict[str, int]] = {}
    for path in sorted(bench.rglob("*.py")):
        name = path.relative_to(bench).as_posix()
        graph[name] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), name)):
            if isinstance(node, ast.Import):
                targets = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module.split(".")[0]]
            else:
                continue
            for target in targets:
                for candidate in (path.parent / f"{target}.py", bench / f"{target}.py"):
                    if candidate.exists() and candidate != path:
                        graph[name].setdefault(candidate.relative_to(bench).as_posix(), node.lineno)
                        break
    return graph


def bench_import_cycles(bench: Path = BENCH) -> list[str]:
    graph = bench_import_graph(bench)
    out = []
    for part in strongly_connected(graph):
        cycle = shortest_cycle(graph, part)
        out.append("bench/: " + " -> ".join(f"{a}:{graph[a][b]}" for a, b in itertools.pairwise(cycle))
                   + f" -> {cycle[-1]}")
    return out


def bench_helper_copies(bench: Path = BENCH) -> list[str]:
    """Functions and classes of bench/procs.py that another bench script defines again instead of importing."""
    def defined(path: Path) -> dict[str, int]:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        return {node.name: node.lineno for node in tree.body
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}

    shared = defined(bench / BENCH_HELPERS)
    out = []
    for path in sorted(bench.rglob("*.py")):
        if path.name != BENCH_HELPERS:
            out += [f"bench/{path.relative_to(bench).as_posix()}:{line}: defines {name} again (bench/{BENCH_HELPERS}"
                    " has it)" for name, line in defined(path).items() if name in shared]
    return out


def bench_script_loads(path: Path) -> str | None:
    """Run a bench script's `--help` (one with argparse) or load its module (the apps, helpers); None if it works,
    else what went wrong."""
    source = path.read_text(encoding="utf-8")
    if "ArgumentParser" in source and '__name__ == "__main__"' in source:
        cmd = [sys.executable, str(path), "--help"]
    else:
        cmd = [sys.executable, "-c", "import runpy, sys; sys.path.insert(0, sys.argv[2]); "
               "runpy.run_path(sys.argv[1], run_name='bench_check')", str(path), str(path.parent)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    return None if proc.returncode == 0 else f"{' '.join(cmd[1:])}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
