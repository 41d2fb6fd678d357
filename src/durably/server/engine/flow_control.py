"""Scopes, limit keys and the hierarchical concurrency limits of Restate 1.7's flow control.

An invocation may carry a scope (`ctx.scope("tenant1")`, `/restate/scope/{scope}/call/...`) and, within it,
a limit key of one or two levels (`"premium"` or `"premium/user42"`). It then counts against up to three
budgets at once: its scope, `scope/l1` and `scope/l1/l2`, and starts only when every budget that has a rule
has a free slot. Rules come from a rule book of patterns, as Restate's `restate rules set`:

    *                  every scope (each scope gets its own budget: not a global pool)
    checkout           one scope
    checkout/*         each L1 key under `checkout`
    */premium          L1 key `premium` under any scope
    checkout/*/*       each L2 key under `checkout`

A rule limits the level of its own depth; when several match, the most specific wins (an exact component
beats `*`, ranked from the scope down). An invocation holds its slots from the moment it is admitted until
it completes (suspended ones included: they will resume), and queued invocations are admitted in arrival
order as slots free up.

The rule book is capped (`MAX_RULES_TOTAL` rules, `MAX_RULES_PER_REQUEST` in one admin request) and a limit
is looked up by the at most 8 patterns that could match a budget, so admission does not walk the rule book.

The scope and limit key travel with the request: they are journaled in the invocation's input command as
the `x-restate-scope` / `x-restate-limit-key` headers (the latter is Restate's own ingress header), so they
survive restarts with the journal; `ctx.request()` shows them as `scope` and `limit_key`, not as headers.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from itertools import product
from typing import Any

from durably.sdk.scope import FLOW_HEADERS, LIMIT_KEY_HEADER, SCOPE_HEADER

__all__ = ["FLOW_HEADERS", "LIMIT_KEY_HEADER", "MAX_RULES_PER_REQUEST", "MAX_RULES_TOTAL", "SCOPE_HEADER",
           "ConcurrencyLimiter", "FlowControlError", "TooManyRules"]

# Rules one admin request may change (413 past it) and rules the book may hold (422 past it). A rule costs
# memory and a row; a change costs in proportion to the rules it names.
MAX_RULES_PER_REQUEST = 1000
MAX_RULES_TOTAL = 10_000

_COMPONENT = re.compile(r"^[A-Za-z0-9_.-]{1,36}$")

Level = tuple[str, ...]


def without_flow_headers(inp: Any) -> Any:
    """A copy of an input command without the scope and limit-key headers (what a deployment is shown)."""
    out = type(inp)()
    out.CopyFrom(inp)
    del out.headers[:]
    out.headers.extend(h for h in inp.headers if h.key not in FLOW_HEADERS)
    return out


class FlowControlError(ValueError):
    """A malformed scope, limit key or rule (the message says what is accepted)."""


class TooManyRules(FlowControlError):
    """A change would take the rule book past MAX_RULES_TOTAL."""


# The largest concurrency a rule may allow: far above what one server runs at once, and small enough that a
# typo (or 10**30) is refused rather than stored.
MAX_CONCURRENCY_LIMIT = 1_000_000


def check_limit(limit: int, where: str) -> None:
    """Raise FlowControlError unless 1 <= limit <= MAX_CONCURRENCY_LIMIT (`where` names the rule)."""
    if not 1 <= limit <= MAX_CONCURRENCY_LIMIT:
        raise FlowControlError(f"invalid concurrency limit {limit} for {where!r}: at least 1 and at most "
                               f"{MAX_CONCURRENCY_LIMIT}")


def check_scope(scope: str | None, limit_key: str | None) -> None:
    """Raise FlowControlError unless the scope and limit key are well formed (a limit key needs a scope)."""
    if scope is not None and not _COMPONENT.match(scope):
        raise FlowControlError(f"invalid scope {scope!r}: use 1 to 36 characters of [a-zA-Z0-9_.-]")
    if limit_key is None:
        return
    if scope is None:
        raise FlowControlError("a limit key needs a scope: call through ctx.scope(...) or /restate/scope/{scope}/")
    parts = limit_key.split("/")
    if len(parts) > 2 or not all(_COMPONENT.match(p) for p in parts):
        raise FlowControlError(f"invalid limit key {limit_key!r}: one or two levels separated by '/', each 1 to "
                               "36 characters of [a-zA-Z0-9_.-]")


def levels(scope: str, limit_key: str | None) -> list[Level]:
    """The budgets an invocation counts against: its scope, then each limit-key level below it."""
    out: list[Level] = [(scope,)]
    if limit_key:
        for part in limit_key.split("/"):
            out.append((*out[-1], part))
    return out


def parse_rule(pattern: str) -> Level:
    """A rule pattern as its components; raises FlowControlError if malformed."""
    parts = tuple(pattern.strip().split("/"))
    if not 1 <= len(parts) <= 3 or not all(p == "*" or _COMPONENT.match(p) for p in parts):
        raise FlowControlError(f"invalid rule pattern {pattern!r}: use scope[/l1[/l2]], each component a value "
                               "of [a-zA-Z0-9_.-] or '*'")
    return parts


def parse_rules(specs: Iterable[str]) -> dict[str, int]:
    """Rules given as `PATTERN=LIMIT` strings (e.g. from `--concurrency-limit checkout/*=5`)."""
    rules: dict[str, int] = {}
    for spec in specs:
        pattern, sep, value = spec.rpartition("=")
        if not sep or not pattern:
            raise FlowControlError(f"invalid concurrency rule {spec!r}: use PATTERN=LIMIT, e.g. 'checkout/*=5'")
        parse_rule(pattern)
        try:
            limit = int(value)
        except ValueError:
            raise FlowControlError(f"invalid concurrency limit in {spec!r}: a whole number") from None
        if limit < 1:
            raise FlowControlError(f"invalid concurrency limit in {spec!r}: at least 1")
        check_limit(limit, pattern.strip())
        rules[pattern.strip()] = limit
    return rules


class ConcurrencyLimiter:
    """Counts what runs per budget and queues what does not fit. Pure bookkeeping; the engine acts."""

    def __init__(self, rules: Mapping[str, int] | None = None) -> None:
        self._rules: dict[Level, int] = {}
        for pattern, limit in (rules or {}).items():
            self.set_rule(pattern, limit)
        self._used: dict[Level, int] = {}
        self._holding: dict[str, list[Level]] = {}
        self._queue: OrderedDict[str, list[Level]] = OrderedDict()

    # ---- the rule book ----

    def set_rule(self, pattern: str, limit: int) -> None:
        """Create or change a rule."""
        if limit < 1:
            raise FlowControlError("a concurrency limit must be at least 1")
        check_limit(limit, pattern)
        self._rules[parse_rule(pattern)] = limit

    def delete_rule(self, pattern: str) -> bool:
        """Remove a rule; False if there was none."""
        return self._rules.pop(parse_rule(pattern), None) is not None

    def check_changes(self, changes: Mapping[str, int | None]) -> None:
        """Raise FlowControlError unless every change is well formed, or TooManyRules if applying them would
        take the book past MAX_RULES_TOTAL (changing or deleting existing rules is always allowed)."""
        parsed: dict[Level, int | None] = {}
        for pattern, limit in changes.items():
            level = parse_rule(pattern)
            if limit is not None:
                check_limit(limit, pattern)
            parsed[level] = limit
        added = sum(1 for lv, limit in parsed.items() if limit is not None and lv not in self._rules)
        removed = sum(1 for lv, limit in parsed.items() if limit is None and lv in self._rules)
        after = len(self._rules) + added - removed
        if added and after > MAX_RULES_TOTAL:
            raise TooManyRules(f"the rule book would hold {after} rules, at most {MAX_RULES_TOTAL}: delete rules "
                               "first, or use '*' patterns that cover many scopes or keys")

    def rules(self) -> dict[str, int]:
        """The rule book, pattern -> concurrency."""
        return {"/".join(p): n for p, n in sorted(self._rules.items())}

    def limit_of(self, level: Level) -> int | None:
        """The concurrency limit of a budget: its most specific matching rule, or None (unlimited)."""
        if not self._rules:
            return None
        # The patterns that can match: each component either itself or '*', most specific first (an exact
        # component beats '*', ranked from the scope down), so the first one found wins.
        for pattern in product(*((v, "*") for v in level)):
            limit = self._rules.get(pattern)
            if limit is not None:
                return limit
        return None

    # ---- admission ----

    def _full(self, lv: list[Level]) -> list[Level]:
        """The budgets among `lv` that have no free slot."""
        full = []
        for level in lv:
            limit = self.limit_of(level)
            if limit is not None and self._used.get(level, 0) >= limit:
                full.append(level)
        return full

    def _fits(self, lv: list[Level]) -> bool:
        return not self._full(lv)

    def _take(self, inv_id: str, lv: list[Level]) -> None:
        for level in lv:
            self._used[level] = self._used.get(level, 0) + 1
        self._holding[inv_id] = lv

    def admit(self, inv_id: str, scope: str, limit_key: str | None) -> bool:
        """Take the invocation's slots now (True), or queue it behind the others (False).

        It waits if one of its budgets is full, or if an earlier invocation already waits for one of its
        budgets (first come, first served per budget; a wait on one budget holds up no other).
        """
        if inv_id in self._holding:
            return True
        lv = levels(scope, limit_key)
        if self._fits(lv) and not set(lv) & self._awaited():
            self._take(inv_id, lv)
            return True
        self._queue[inv_id] = lv
        return False

    def _awaited(self) -> set[Level]:
        """The budgets queued invocations wait for."""
        return {level for q in self._queue.values() for level in self._full(q)}

    def occupy(self, inv_id: str, scope: str, limit_key: str | None) -> None:
        """Record an invocation that already runs (found in the store at start)."""
        if inv_id not in self._holding:
            self._take(inv_id, levels(scope, limit_key))

    def enqueue(self, inv_id: str, scope: str, limit_key: str | None) -> None:
        """Record a queued invocation found in the store at start (in arrival order)."""
        self._queue[inv_id] = levels(scope, limit_key)

    def is_queued(self, inv_id: str) -> bool:
        """Whether the invocation waits for a slot."""
        return inv_id in self._queue

    def release(self, inv_id: str) -> list[str]:
        """The invocation is done (or left the queue); returns the queued ones that may start now."""
        self._queue.pop(inv_id, None)
        lv = self._holding.pop(inv_id, None)
        if lv is not None:
            for level in lv:
                n = self._used.get(level, 0) - 1
                if n > 0:
                    self._used[level] = n
                else:
                    self._used.pop(level, None)
        return self.drain()

    def drain(self) -> list[str]:
        """Admit queued invocations that fit, oldest first; one that does not fit holds up only the budgets
        it waits for."""
        started: list[str] = []
        blocked: set[Level] = set()
        for inv_id, lv in list(self._queue.items()):
            full = self._full(lv)
            if not full and not set(lv) & blocked:
                del self._queue[inv_id]
                self._take(inv_id, lv)
                started.append(inv_id)
            else:
                blocked.update(full)
        return started

    def usage(self) -> list[dict[str, object]]:
        """Every budget in use: its level, usage and limit (like Restate's sys_user_limits)."""
        return [{"level": "/".join(level), "used": used, "limit": self.limit_of(level)}
                for level, used in sorted(self._used.items())]
