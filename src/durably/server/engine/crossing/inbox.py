"""The inbox: what other partitions deliver here, applied exactly once and acknowledged after the commit.

Each partition's outbox (server/engine/crossing/outbox.py) numbers its messages; a destination gets them in that order,
at least once. Here each message is applied (an invocation created, a notification journaled, a cancel or kill
done) in the current batch, together with the record "messages of source S are applied up to seq Q"
(`MarkApplied`); the answer names Q only once that batch is committed. A message at or below Q (a duplicate, or
one sent again after the sender's crash) is acknowledged without a second effect.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from durably.protocol import protocol_pb2 as pb
from durably.server.engine.calls import Calls, failure_note
from durably.server.engine.calltree import CallTree
from durably.server.engine.catalog import Catalog
from durably.server.engine.crossing.outbox import PAYLOAD_VERSION, encode_answer, unb64
from durably.server.engine.flow_control import FlowControlError
from durably.server.engine.interfaces import AttemptLifecycle, EngineStopped, InvocationTable
from durably.server.partitions.map import PartitionMap
from durably.server.store.ops import AddCall, MarkApplied

log = logging.getLogger("durably.engine")


class Inbox:
    """Applies what other partitions' outboxes deliver, once each."""

    def __init__(self, partitions: PartitionMap, table: InvocationTable, lifecycle: AttemptLifecycle,
                 catalog: Catalog, calls: Calls, calltree: CallTree, barrier: Callable[[], Awaitable[None]]) -> None:
        self.partitions = partitions
        self.table = table
        self.lifecycle = lifecycle
        self.catalog = catalog
        self.calls = calls
        self.calltree = calltree
        self.barrier = barrier
        self._applied: dict[int, int] = {}  # source partition -> last seq applied (committed or in the batch)
        self.applied = 0  # messages applied since the start (tests, metrics)

    def restore(self, applied: dict[int, int]) -> None:
        """At start: per source partition, the last seq applied."""
        self._applied = dict(applied)

    async def receive(self, payload: bytes) -> bytes:
        """Apply a delivery from another partition; answer with the highest seq of that source applied."""
        try:
            doc = json.loads(payload)
            if not isinstance(doc, dict) or doc.get("v") != PAYLOAD_VERSION:
                raise ValueError(f"unknown payload version {doc.get('v') if isinstance(doc, dict) else None!r}")
            source, messages = doc["from"], doc["messages"]
            if not isinstance(source, int) or not 0 <= source < self.partitions.count or \
                    source == self.partitions.index:
                raise ValueError(f"bad source partition {source!r}")
            if not isinstance(messages, list):
                raise ValueError("'messages' is not a list")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            return encode_answer(error=f"malformed delivery: {e}")
        try:
            self.lifecycle.check_writable()
        except EngineStopped as e:
            return encode_answer(error=str(e))  # nothing applied: the sender keeps the messages and retries
        last = top = self._applied.get(source, 0)
        for msg in messages:
            seq = msg.get("seq") if isinstance(msg, dict) else None
            if not isinstance(seq, int):
                return encode_answer(error="a message without a seq")
            if seq <= top:
                continue  # applied before: acknowledged again, not applied again
            try:
                self._apply(msg)
            except EngineStopped:
                break  # not applied: acknowledged up to the one before, the rest comes again
            except Exception:  # one message this code cannot apply must not stop the ones behind it for ever
                log.exception("partition %d: message %d from partition %d could not be applied; skipped",
                              self.partitions.index, seq, source)
            top = seq
            self.applied += 1
        if top > last:
            self._applied[source] = top
            self.table.write(MarkApplied(source, top))
        try:
            await self.barrier()
        except EngineStopped as e:
            return encode_answer(error=str(e))
        return encode_answer(applied=top)

    def _apply(self, msg: dict[str, Any]) -> None:
        kind = msg["kind"]
        if kind == "invoke":
            self._invoke(msg)
        elif kind == "attach":
            self.calls.wait_for(msg["caller"], msg["target"], msg["cid"], msg["type"], wait=msg["wait"])
        elif kind == "notify":
            note = pb.NotificationMessage.FromString(unb64(msg["note"]))
            self.lifecycle.notify(msg["target"], msg["type"], note)
        elif kind == "cancel":
            self.calltree.cancel(msg["target"])
        elif kind == "kill":
            self.calltree.kill(msg["target"])
        elif kind in ("pause", "resume", "purge"):
            getattr(self.calltree, kind)(msg["target"])
        else:
            raise ValueError(f"unknown message kind {kind!r}")

    def _invoke(self, msg: dict[str, Any]) -> None:
        """Create the invocation a call or send of another partition asked for (with the id it journaled)."""
        caller, reply = msg["caller"], msg.get("reply")
        handler = self.catalog.handler(msg["service"], msg["handler"])
        if handler is None:
            log.warning("partition %d: %s/%s asked for by %s is not here: dropped", self.partitions.index,
                        msg["service"], msg["handler"], caller)
            if reply is not None:
                self.calls.notify(caller, reply["type"], failure_note(
                    reply["cid"], 404, f"handler '{msg['service']}/{msg['handler']}' not found"))
            return
        delay = max(0, msg["invoke_time"] - self.table.now_ms()) if msg.get("invoke_time") else 0
        headers = [(k, v) for k, v in msg["headers"]]
        try:
            _, child_id, created = self.calls.invoke(handler, unb64(msg["param"]), headers, msg["key"],
                                                     msg.get("idempotency_key"), delay, msg.get("scope"),
                                                     msg.get("limit_key"), inv_id=msg["id"])
        except FlowControlError as e:
            if reply is not None:
                self.calls.notify(caller, reply["type"], failure_note(reply["cid"], 400, str(e)))
            return
        if created and caller is not None:  # None: no invocation asked (a Kafka record consumed elsewhere)
            self.table.write(AddCall(child_id, caller))
        if reply is None:
            return
        if handler.kind == "workflow" and not created:
            self.calls.notify(caller, reply["type"], failure_note(reply["cid"], 409,
                                                                    "the workflow method was already invoked"))
            return
        self.calls.wait_for(caller, child_id, reply["cid"], reply["type"], wait=True)
