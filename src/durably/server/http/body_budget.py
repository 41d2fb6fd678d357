"""The budget of request-body bytes the ingress holds at once.

Each body may be up to the body limit (32 MiB), and a dozen concurrent ones used to take the process to
gigabytes. The ingress reserves a request's body against this budget before it buffers it (the declared
length at once, chunks as they come otherwise) and gives it back when the request is answered. A request
that does not fit is answered 503 with Retry-After, which Restate's clients retry.
"""

from __future__ import annotations

from collections.abc import Callable

from durably.server.process.entry_limit import size_text

# Bytes of bodies handled before an idle moment gives memory back.
TRIM_AFTER = 64 * 1024 * 1024


class OverBudget(Exception):
    """A request body does not fit in what is left of the budget."""


class BodyBudget:
    """Bytes of request bodies held now, against a limit. Use from the event loop only."""

    def __init__(self, limit: int, on_idle: Callable[[], None] = lambda: None) -> None:
        self.limit = limit
        self.in_use = 0
        self.refused = 0
        # Called when no body is held any more after many bytes were (to give memory back).
        self.on_idle = on_idle
        self.since_trim = 0

    def lease(self) -> BodyLease:
        """A lease for one request; release it when the request is answered."""
        return BodyLease(self)

    def refusal(self) -> str:
        """The message of a 503 when the budget is spent."""
        return (f"the server holds {size_text(self.in_use)} of request bodies, its limit is "
                f"{size_text(self.limit)} (--max-inflight-body): retry later")


class BodyLease:
    """The bytes one request holds."""

    __slots__ = ("budget", "held")

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.held = 0

    def reserve(self, n: int) -> None:
        """Hold n more bytes, or raise OverBudget."""
        b = self.budget
        if b.in_use + n > b.limit:
            b.refused += 1
            raise OverBudget(b.refusal())
        b.in_use += n
        self.held += n

    def release(self) -> None:
        """Give back everything this request held."""
        b = self.budget
        b.in_use -= self.held
        b.since_trim += self.held
        self.held = 0
        if b.in_use == 0 and b.since_trim >= TRIM_AFTER:
            b.since_trim = 0
            b.on_idle()
