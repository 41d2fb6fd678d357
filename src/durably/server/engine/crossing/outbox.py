"""The outbox: what this partition tells others, committed with its cause, delivered at least once, in order.

With `durably serve --partitions N` every invocation has one owner partition (`PartitionMap.owner`). When an
invocation here acts on one owned elsewhere (a call or send to a keyed or idempotent target, an attach, an
awakeable or signal, a cancel or kill following a call tree), or a callee here completes for a caller owned
elsewhere, the engine writes a message to the outbox table in the SAME batch as the journal entry (or the
completion) it comes from: the message exists exactly when its cause is committed.

Once committed, a message joins its destination's queue. One deliverer task per destination sends the queue's
head in order, in batches, through the process layer's `PeerLink`, and retries with a backoff while the peer is
unreachable. The peer's answer says up to which seq it has durably applied this partition's messages; those are
deleted (`AckOutbox`). After a restart the queues are rebuilt from the table, so nothing is lost; a message
sent again after a crash is recognised by the receiver (server/engine/inbox.py) and applied once.

The payload (JSON, versioned; bytes fields base64):

    request  {"v": 1, "from": <source partition>, "messages": [{"seq": <int>, "kind": <kind>, ...fields}, ...]}
    answer   {"v": 1, "applied": <the highest seq of this source applied at the receiver>}
             {"v": 1, "error": "<why>"}          (the batch was not applied; the sender retries)

Kinds and their fields (ids are invocation ids; `type` a notification type id):

    invoke  id service handler key idempotency_key scope limit_key param headers invoke_time caller reply
            create invocation `id` (chosen by the caller, journaled before delivery); `reply` {"cid", "type"}
            or null: the caller waits for the outcome (a call) or not (a send)
    attach  target caller cid type wait      wait for (or peek at) target's outcome; answered with `notify`
    notify  target type note                 journal notification `note` (protobuf, base64) for target
    cancel  target                           cancel target (the handler sees it at its next await)
    kill    target                           kill target and every call below it
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections import deque
from typing import Any

from durably.server.engine.interfaces import InvocationTable
from durably.server.partitions.link import PeerLink, PeerUnreachable
from durably.server.partitions.map import PartitionMap
from durably.server.store.base import Store
from durably.server.store.ops import AckOutbox, AddOutbox

log = logging.getLogger("durably.engine")

PAYLOAD_VERSION = 1
# Messages per delivery: enough to carry a burst in one round trip, small enough to keep one payload modest.
BATCH_MESSAGES = 256
BATCH_BYTES = 4 << 20  # ...and about this many bytes (one bigger message goes alone)
# The wait between attempts while a peer is unreachable: doubles from the first to the last.
RETRY_FIRST_S = 0.01
RETRY_MAX_S = 1.0


def b64(data: bytes) -> str:
    """Bytes as the payload carries them."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Bytes from the payload."""
    return base64.b64decode(text)


def encode_request(source: int, messages: list[tuple[int, bytes]]) -> bytes:
    """A delivery: the source partition and its messages (seq, stored JSON) in order."""
    body = b",".join(b'{"seq":%d,' % seq + raw[1:] for seq, raw in messages)
    return b'{"v":%d,"from":%d,"messages":[' % (PAYLOAD_VERSION, source) + body + b"]}"


def encode_answer(applied: int | None = None, error: str | None = None) -> bytes:
    """A receiver's answer: the highest seq applied from the source, or why nothing was."""
    if error is not None:
        return json.dumps({"v": PAYLOAD_VERSION, "error": error}).encode()
    return json.dumps({"v": PAYLOAD_VERSION, "applied": applied}).encode()


class Outbox:
    """Messages for other partitions: written with their cause, delivered in order per destination."""

    def __init__(self, table: InvocationTable, store: Store, partitions: PartitionMap) -> None:
        self.table = table
        self.store = store
        self.partitions = partitions
        self._seq = 0
        # Committed, not yet acknowledged, per destination, in seq order.
        self._queues: dict[int, deque[tuple[int, bytes]]] = {}
        self._wake: dict[int, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._link: PeerLink | None = None
        self._running = False
        self.delivered = 0  # messages acknowledged by peers since the start (tests, metrics)
        # Who waits for a message to be applied by its destination (`applied`): per destination, (seq, future).
        self._waiters: dict[int, list[tuple[int, asyncio.Future[None]]]] = {}

    def restore(self, outbox: list[tuple[int, int, bytes]], last_seq: int) -> None:
        """At start: the messages committed but not acknowledged before the stop, and the last seq used."""
        self._seq = last_seq
        for dest, seq, raw in outbox:
            self._queues.setdefault(dest, deque()).append((seq, raw))

    def send(self, dest: int, message: dict[str, Any]) -> int:
        """Write a message for partition `dest` with the current batch; it goes out once committed."""
        self._seq += 1
        seq = self._seq
        raw = json.dumps(message, separators=(",", ":")).encode()
        self.table.write(AddOutbox(dest, seq, raw))
        self.table.after_commit(lambda: self._committed(dest, seq, raw))
        return seq

    def send_to_owner(self, inv_id: str, message: dict[str, Any]) -> tuple[int, int]:
        """Write a message for the partition that owns invocation `inv_id`; its (destination, seq)."""
        dest = self.partitions.owner(inv_id)
        return dest, self.send(dest, message)

    def applied(self, dest: int, seq: int) -> asyncio.Future[None]:
        """Resolves once partition `dest` has applied message `seq` (committed it there and acknowledged it)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(dest, []).append((seq, fut))
        return fut

    def pending(self) -> int:
        """Messages committed and not yet acknowledged."""
        return sum(len(q) for q in self._queues.values())

    def _committed(self, dest: int, seq: int, raw: bytes) -> None:
        self._queues.setdefault(dest, deque()).append((seq, raw))
        ev = self._wake.get(dest)
        if ev is not None:
            ev.set()

    # ---- delivery ----

    def attach(self, link: PeerLink) -> None:
        """The process layer's link to the other partitions: deliver through it (once `begin` was called)."""
        self._link = link
        self._start_tasks()

    def begin(self) -> None:
        """The engine runs: deliver (once a link is attached)."""
        self._running = True
        self._start_tasks()

    def _start_tasks(self) -> None:
        if self._tasks or self._link is None or not self._running:
            return
        loop = asyncio.get_running_loop()
        for dest in range(self.partitions.count):
            if dest != self.partitions.index:
                self._wake[dest] = asyncio.Event()
                self._tasks.append(loop.create_task(self._deliver(dest)))

    async def stop(self) -> None:
        """Stop delivering; what is not acknowledged stays in the table for the next start."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._running = False

    async def _deliver(self, dest: int) -> None:
        wake = self._wake[dest]
        delay = RETRY_FIRST_S
        while True:
            queue = self._queues.get(dest)
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            batch, size = [], 0
            for seq, raw in queue:
                if batch and (len(batch) >= BATCH_MESSAGES or size + len(raw) > BATCH_BYTES):
                    break
                batch.append((seq, raw))
                size += len(raw)
            try:
                answer = await self._link.deliver(dest, encode_request(self.partitions.index, batch))  # type: ignore[union-attr]
                applied = _applied(answer)
            except (PeerUnreachable, ValueError) as e:
                if delay == RETRY_FIRST_S or delay >= RETRY_MAX_S:
                    log.info("partition %d: %d message(s) for partition %d wait: %s", self.partitions.index,
                             len(queue), dest, e)
                await asyncio.sleep(delay)  # the peer is down or restarting: back off, keep the messages
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in a link must not end delivery for good
                log.exception("partition %d: delivering to partition %d failed", self.partitions.index, dest)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay = RETRY_FIRST_S
            done = 0
            while queue and queue[0][0] <= applied:
                queue.popleft()
                done += 1
            if done:
                self.delivered += done
                self._release(dest, applied)
                # Not waited for: if this is lost in a crash the messages go again and the receiver skips them.
                self.table.write(AckOutbox(dest, applied))


    def _release(self, dest: int, applied: int) -> None:
        waiters = self._waiters.get(dest)
        if not waiters:
            return
        keep = []
        for seq, fut in waiters:
            if seq <= applied:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((seq, fut))
        self._waiters[dest] = keep


def _applied(answer: bytes) -> int:
    """The seq a receiver says it applied up to; ValueError for an error answer or one this code cannot read."""
    try:
        doc = json.loads(answer)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"unreadable answer: {e}") from None
    if not isinstance(doc, dict) or doc.get("v") != PAYLOAD_VERSION:
        raise ValueError(f"answer of an unknown version: {answer[:100]!r}")
    if "error" in doc:
        raise ValueError(f"the receiver refused: {doc['error']}")
    applied = doc.get("applied")
    if not isinstance(applied, int):
        raise ValueError(f"answer without 'applied': {answer[:100]!r}")
    return applied
