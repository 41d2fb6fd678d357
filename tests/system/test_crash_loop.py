"""The crash loop (bench/crash_loop.py) as a test: SIGKILLs under load lose nothing and re-run no committed step.

With `--partitions 2` the kills are of one partition process or of the whole group, and every invocation's call
to a `Tally` object (most cross partitions) must be applied exactly once.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("partitions", [1, 2])
def test_crash_loop_loses_nothing_and_applies_every_call_once(partitions: int) -> None:
    result = subprocess.run(
        [sys.executable, "bench/crash_loop.py", "--invocations", "80", "--kills", "4", "--step-ms", "20",
         "--clients", "16", "--partitions", str(partitions), "--timeout", "240"],
        cwd=ROOT, capture_output=True, text=True, timeout=280)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "verdict             OK" in out, out
    assert re.search(r"lost\s+0\n", out) and re.search(r"committed re-run\s+0\n", out), out
    assert re.search(r"calls applied\s+80 once\n", out), out
    during = re.search(r"\((\d+) while invocations were running\)", out)
    assert during is not None and int(during.group(1)) >= 1, out  # the kills hit work in flight
