"""A trip-booking saga: book a flight, a car and a hotel; if one fails for good, undo the others.

Each booking is a journaled step. After a booking succeeds, the handler remembers how to undo it. If a later
step fails with a `TerminalError` (a failure that retrying will not fix, like "no rooms left"), the handler
runs the remembered undos in reverse order, each as its own journaled step, and re-raises the error so the
caller learns why the trip was not booked. Because every step is journaled, a crash in the middle of the
bookings or of the compensations resumes where it stopped: nothing committed runs twice, nothing is
forgotten.

Run it:

    durably serve examples.saga:app

Book a trip that works, then one whose hotel is full:

    curl localhost:8080/TripBooking/book --json '{"flight": "LH1", "car": "Mini", "hotel": "Ritz"}'
    curl localhost:8080/TripBooking/book --json '{"flight": "LH1", "car": "Mini", "hotel": "Ritz", "hotel_fails": true}'

The second answers 409 with the hotel's error, after cancelling the car and then the flight. The stand-in
booking systems print what they do; set `SAGA_LOG=/some/file` to have them append it to a file instead.

For the test suite: `SAGA_HOLD_UNDO=car:/path/to/gate` makes the undo of the car booking wait until the gate
file exists, so a test can kill the server in the middle of the compensations.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import durably
from durably import TerminalError

trip_booking = durably.Service("TripBooking", description="Books flight, car and hotel, or none of them.")
# durably.getLogger: silent while the handler replays, so each line is logged once per trip, not per retry.
log = durably.getLogger(__name__)


# ---- stand-ins for the booking systems -------------------------------------------------------------------


def record(line: str) -> None:
    """Make a booking system's effect visible: a line in $SAGA_LOG, or on stdout."""
    path = os.environ.get("SAGA_LOG")
    if not path:
        print(line, flush=True)
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        # fsync so a reader sees the line even if this process is killed right after.
        os.fsync(f.fileno())


def hold_if_asked(kind: str) -> None:
    """Test hook: wait for a gate file before undoing `kind`, when SAGA_HOLD_UNDO=kind:/path/to/gate."""
    held, _, gate = os.environ.get("SAGA_HOLD_UNDO", "").partition(":")
    if held != kind or not gate:
        return
    # This is the stand-in system being slow, not synchronisation in the saga: a test opens the gate.
    while not Path(gate).exists():
        time.sleep(0.01)


class BookingSystem:
    """A pretend external system that can book and cancel one kind of thing."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def book(self, trip_id: str, what: str, fail: bool = False) -> str:
        """Book `what` and return the reservation id, or fail terminally (nothing was booked)."""
        if fail:
            record(f"{trip_id} refused {self.kind} {what} pid={os.getpid()}")
            # A TerminalError is never retried: the saga sees it and compensates.
            raise TerminalError(f"{self.kind} {what!r} is fully booked", status_code=409)
        # A random id is fine here: it is created inside ctx.run_typed, so it is journaled, and a replay
        # reads it back instead of drawing a new one.
        reservation = f"{self.kind}-{uuid.uuid4().hex[:8]}"
        record(f"{trip_id} booked {self.kind} {what} {reservation} pid={os.getpid()}")
        return reservation

    def cancel(self, trip_id: str, reservation: str) -> None:
        """Undo a booking. Must be safe to repeat: a crash mid-cancel means it runs again."""
        record(f"{trip_id} cancelling {self.kind} {reservation} pid={os.getpid()}")
        hold_if_asked(self.kind)
        record(f"{trip_id} cancelled {self.kind} {reservation} pid={os.getpid()}")


flights = BookingSystem("flight")
cars = BookingSystem("car")
hotels = BookingSystem("hotel")


# ---- the saga --------------------------------------------------------------------------------------------


@trip_booking.handler()
async def book(ctx: durably.Context, trip: dict) -> dict:
    """Book a flight, a car and a hotel for `trip`; if any booking fails for good, cancel the others.

    `trip` has `flight`, `car` and `hotel` (what to book), an optional `trip_id`, and `hotel_fails: true`
    to make the hotel refuse the booking.
    """
    trip_id = trip.get("trip_id") or str(ctx.uuid())
    log.info("booking trip %s", trip_id)
    # How to undo what has been done so far; each entry starts one journaled cancellation.
    compensations: list[Callable[[], Awaitable[Any]]] = []
    try:
        flight = await ctx.run_typed("book flight", flights.book, None, trip_id, trip["flight"])
        # Registered only after the booking succeeded: a failed booking left nothing to undo. (If a booking
        # can take effect and still report a failure, register its undo before the step instead.)
        compensations.append(lambda: ctx.run_typed("cancel flight", flights.cancel, None, trip_id, flight))

        car = await ctx.run_typed("book car", cars.book, None, trip_id, trip["car"])
        compensations.append(lambda: ctx.run_typed("cancel car", cars.cancel, None, trip_id, car))

        hotel = await ctx.run_typed("book hotel", hotels.book, None, trip_id, trip["hotel"],
                                    bool(trip.get("hotel_fails")))
        compensations.append(lambda: ctx.run_typed("cancel hotel", hotels.cancel, None, trip_id, hotel))
    except TerminalError:
        # Undo in reverse order, one journaled step each: after a crash, the cancellations already done are
        # not repeated. A cancellation that raises a plain exception is retried until it succeeds, which
        # is what a compensation needs: it must not give up halfway.
        log.info("trip %s failed; undoing %d booking(s)", trip_id, len(compensations))
        for compensate in reversed(compensations):
            await compensate()
        raise
    return {"trip_id": trip_id, "flight": flight, "car": car, "hotel": hotel}


app = durably.app(services=[trip_booking])
