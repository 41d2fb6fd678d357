"""The comparison benchmark's Durably handlers (bench/compare/durably_app.py) as a Restate deployment, with
request identity on when BENCH_IDENTITY_KEY holds a `publickeyv1_...` key. Served by hypercorn in
bench/identity_bench.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "compare"))

from durably_app import app as _bench_app

import durably

_key = os.environ.get("BENCH_IDENTITY_KEY")
app = durably.app(services=list(_bench_app.services.values()), identity_keys=[_key] if _key else None)
