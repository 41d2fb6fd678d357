"""Event transactions: a Kafka topic of card transactions, keyed by user, kept in a per-user ledger.

A producer (a payment network, say) publishes `{"id", "amount", "merchant"}` records keyed by user id to the
`transactions` topic; a subscription feeds them to `Account/process`. Each user's transactions are applied in
the order they were produced: a journaled risk check (a call to a scoring service in a real app) runs once per
transaction, a debit beyond the credit limit is declined, and a transaction id seen before (a producer that
re-sent it) is ignored. The balance and the ledger are read over the ingress.
"""

from __future__ import annotations

import durably

CREDIT_LIMIT = 1_000

account = durably.VirtualObject("Account")


def risk_check(tx: dict, balance: int) -> str:
    if tx["amount"] < 0 and balance + tx["amount"] < -CREDIT_LIMIT:
        return "declined"
    return "accepted"


@account.handler()
async def process(ctx: durably.ObjectContext, tx: dict) -> str:
    ledger = await ctx.get("ledger") or []
    if any(entry["id"] == tx["id"] for entry in ledger):
        return "duplicate"
    balance = await ctx.get("balance") or 0
    verdict = await ctx.run_typed("risk check", risk_check, None, tx, balance)
    if verdict == "accepted":
        balance += tx["amount"]
        ctx.set("balance", balance)
    headers = ctx.request().headers
    ledger.append({"id": tx["id"], "amount": tx["amount"], "merchant": tx["merchant"], "status": verdict,
                   "partition": int(headers["kafka.partition"]), "offset": int(headers["kafka.offset"])})
    ctx.set("ledger", ledger)
    return verdict


@account.handler(kind="shared")
async def balance(ctx: durably.ObjectSharedContext) -> int:
    return await ctx.get("balance") or 0


@account.handler(kind="shared")
async def ledger(ctx: durably.ObjectSharedContext) -> list[dict]:
    return await ctx.get("ledger") or []


app = durably.app(services=[account])
