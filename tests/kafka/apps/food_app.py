"""Food ordering: orders published to Kafka by ordering platforms drive a workflow per order.

Each record of the `orders` topic is keyed by order id and carries `{"restaurant", "items", "total",
"delivery_seconds"}`; a subscription makes it the `run` of an `Order` workflow (the order id is the workflow
key, so an order published twice runs once). The workflow:

1. charges the customer through the `Payments` service (a declined payment ends the order as rejected);
2. asks the restaurant's point-of-sale system to prepare it and waits, durably, on an awakeable the restaurant
   completes when the food is ready (the awakeable id is in the order's status, as the POS would receive it);
3. gets a driver from the restaurant's `Drivers` pool (a virtual object: one order per driver at a time);
4. waits out the delivery (a durable sleep), then frees the driver.

`Order/<id>/status` answers where an order stands at any time, over the ingress.
"""

from __future__ import annotations

from datetime import timedelta

import durably

payments = durably.Service("Payments")
drivers = durably.VirtualObject("Drivers")
order = durably.Workflow("Order")

PAYMENT_LIMIT = 100


@payments.handler()
async def charge(ctx: durably.Context, request: dict) -> bool:
    def authorize() -> bool:  # a payment provider's API in a real app
        return request["amount"] <= PAYMENT_LIMIT

    return await ctx.run_typed("authorize", authorize)


@drivers.handler()
async def assign(ctx: durably.ObjectContext, order_id: str) -> str | None:
    busy = await ctx.get("busy") or {}
    for driver in ("driver-1", "driver-2"):
        if driver not in busy:
            busy[driver] = order_id
            ctx.set("busy", busy)
            return driver
    return None


@drivers.handler()
async def release(ctx: durably.ObjectContext, driver: str) -> None:
    busy = await ctx.get("busy") or {}
    busy.pop(driver, None)
    ctx.set("busy", busy)


@drivers.handler(kind="shared")
async def busy(ctx: durably.ObjectSharedContext) -> dict:
    return await ctx.get("busy") or {}


@order.main()
async def run(ctx: durably.WorkflowContext, details: dict) -> dict:
    key = ctx.key()
    ctx.set("status", {"status": "NEW"})
    paid = await ctx.service_call(charge, {"order": key, "amount": details["total"]})
    if not paid:
        ctx.set("status", {"status": "REJECTED", "reason": "payment declined"})
        return {"order": key, "status": "REJECTED"}
    ready_id, ready = ctx.awakeable(type_hint=dict)
    ctx.set("status", {"status": "IN_PREPARATION", "restaurant_callback": ready_id})
    prepared = await ready
    driver = None
    while driver is None:
        driver = await ctx.object_call(assign, details["restaurant"], key)
        if driver is None:
            ctx.set("status", {"status": "WAITING_FOR_DRIVER"})
            await ctx.sleep(timedelta(milliseconds=100))
    ctx.set("status", {"status": "IN_DELIVERY", "driver": driver, "meal": prepared["meal"]})
    await ctx.sleep(timedelta(seconds=details["delivery_seconds"]))
    ctx.object_send(release, details["restaurant"], driver)
    ctx.set("status", {"status": "DELIVERED", "driver": driver, "meal": prepared["meal"]})
    return {"order": key, "status": "DELIVERED", "driver": driver}


@order.handler()
async def status(ctx: durably.WorkflowSharedContext) -> dict:
    return await ctx.get("status") or {"status": "UNKNOWN"}


app = durably.app(services=[payments, drivers, order])
