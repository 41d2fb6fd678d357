"""Each durably.ext module names the extra to install when its framework is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    ("openai", "agents", "openai"),
    ("pydantic", "pydantic_ai", "pydantic-ai"),
    ("langchain", "langchain", "langchain"),
    ("adk", "google.adk", "adk"),
    ("tracing", "opentelemetry", "tracing"),
]


@pytest.mark.parametrize(("module", "framework", "extra"), CASES, ids=[c[0] for c in CASES])
def test_missing_framework_names_the_extra(module: str, framework: str, extra: str) -> None:
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    code = (f"import sys; sys.modules[{framework!r}] = None\n"
            f"import durably.ext.{module}")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert f"pip install -e '.[{extra}]'" in proc.stderr, proc.stderr


def test_core_import_does_not_load_any_framework() -> None:
    code = ("import sys, durably, durably.extensions\n"
            "loaded = [m for m in ('agents', 'pydantic_ai', 'langchain', 'google.adk', 'opentelemetry') "
            "if m in sys.modules]\n"
            "print(loaded)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
