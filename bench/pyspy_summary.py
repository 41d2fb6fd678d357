"""Summarise a py-spy raw (collapsed-stack) profile: top functions by own and by cumulative samples.

Record a profile of a running server (e.g. one started by bench/http_bench.py, which prints its pid):

    .venv/bin/py-spy record -o /tmp/profile.txt --format raw -d 10 --threads --pid <server pid>
    .venv/bin/python bench/pyspy_summary.py /tmp/profile.txt [--top 15] [--thread MainThread]

Functions are keyed by `file:function` (line numbers dropped). Own = samples where the function is the
innermost frame; cumulative = samples where it is anywhere on the stack (counted once per sample).
Frames matching --skip are left out of the lists (not out of the totals): by default the launcher frames
that sit under every sample (click, `durably serve`, the event loop's run, thread bootstrap) and
`concurrent/futures/thread.py:_worker`, whose "own" samples are idle pool threads waiting for work
(py-spy's idle detection misses that wait). Pass --skip '' to list everything.
With `py-spy record --gil` only the thread holding the GIL is sampled: the lists then show where the
interpreter's (single core of) CPU goes.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

DEFAULT_SKIP = (r"^(click/|threading\.py:Thread\.|durably:<module>|durably/cli/serve\.py:serve|uvloop/__init__\.py:run"
                r"|asyncio/runners\.py:Runner\.run|concurrent/futures/thread\.py:_worker)")
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_key(frame: str) -> str:
    """`Engine._commit (durably/server/engine.py:217)` -> `durably/server/engine.py:Engine._commit`."""
    m = FRAME.match(frame.strip())
    return f"{m.group('file')}:{m.group('func')}" if m else frame.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path, help="py-spy --format raw output")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--thread", default=None, help="only stacks whose thread name contains this")
    parser.add_argument("--skip", default=DEFAULT_SKIP, help="regex of file:function keys to leave out of the lists")
    args = parser.parse_args()

    own: Counter[str] = Counter()
    cum: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in args.profile.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith("thread ") else "?"
        if frames[0].startswith("thread "):
            frames = frames[1:]
            thread = re.sub(r"^thread \(\w+\): ", "", thread)
        if args.thread is not None and args.thread not in thread:
            continue
        threads[thread] += count
        total += count
        keys = [frame_key(f) for f in frames]
        if keys:
            own[keys[-1]] += count
        for k in set(keys):
            cum[k] += count
    if total == 0:
        print("no samples", file=sys.stderr)
        return 1

    print(f"{total} samples")
    print("\nby thread:")
    for name, n in threads.most_common():
        print(f"  {n:6d} {n / total:6.1%}  {name}")
    skip = re.compile(args.skip) if args.skip else None
    for title, counter in (("own", own), ("cumulative", cum)):
        shown = [(k, n) for k, n in counter.most_common() if skip is None or not skip.search(k)][: args.top]
        print(f"\ntop {args.top} by {title} samples (% of all {total} samples):")
        for key, n in shown:
            print(f"  {n:6d} {n / total:6.1%}  {key}")
    if skip is not None:
        hidden = sum(n for k, n in own.items() if skip.search(k))
        print(f"\n({hidden} samples ({hidden / total:.1%}) had a skipped innermost frame, e.g. idle pool threads "
              "or the event loop's C code under Runner.run; --skip '' shows them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
