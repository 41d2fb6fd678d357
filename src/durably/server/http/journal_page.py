"""Paging of the journal in the admin API's invocation description and in the UI, bounded by bytes.

A journal can hold tens of thousands of entries, or a few entries of many megabytes each. The description
carries one page (`journal_offset`, `journal_limit`) and says where the next page starts
(`journal_next_offset`), so clients such as `durably invocations describe` follow pages. A page holds at
most `journal_limit` entries and at most `JOURNAL_PAGE_BYTES` of them (always at least one); an entry over
`JOURNAL_VALUE_PREVIEW` bytes is read only up to that size and shown with its value cut, `value_truncated`
and the `value_url` that returns it whole. Pages are read on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from durably.protocol import messages as m
from durably.server.http.shapes import iso, journal_entry_json
from durably.server.process.limits import JOURNAL_PAGE_BYTES, JOURNAL_VALUE_PREVIEW
from durably.server.store.base import Store

DEFAULT_JOURNAL_PAGE = 1000
MAX_JOURNAL_PAGE = 10_000


def journal_page(query: dict[str, str]) -> tuple[int, int] | str:
    """The (offset, limit) a describe request asks for, or why the query is wrong."""
    try:
        offset = int(query.get("journal_offset", "0"))
        if offset < 0:
            raise ValueError
    except ValueError:
        return "journal_offset must be an integer >= 0"
    try:
        limit = int(query.get("journal_limit", str(DEFAULT_JOURNAL_PAGE)))
        if not 1 <= limit <= MAX_JOURNAL_PAGE:
            raise ValueError
    except ValueError:
        return f"journal_limit must be an integer from 1 to {MAX_JOURNAL_PAGE}"
    return offset, limit


def journal_paging(total: int, offset: int, count: int) -> dict[str, Any]:
    """The paging fields of a description: the journal's length, this page's offset, the next page's."""
    out: dict[str, Any] = {"journal_length": total, "journal_offset": offset}
    if offset + count < total:
        out["journal_next_offset"] = offset + count
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise IndexError(pos)
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _repair(desc: Descriptor, data: bytes) -> bytes:
    """The fields of a protobuf message cut at `len(data)`, re-encoded: the field the cut went through is
    kept with what arrived of it (a byte or string field shortened, a message field repaired in turn)."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        start = pos
        try:
            key, pos = _varint(data, pos)
            wire = key & 7
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
                if pos > len(data):
                    break
            elif wire == 2:
                length, body_at = _varint(data, pos)
                pos = body_at + length
                if pos > len(data):
                    body = data[body_at:]
                    field = desc.fields_by_number.get(key >> 3)
                    if field is None:
                        break
                    if field.type == FieldDescriptor.TYPE_MESSAGE:
                        body = _repair(field.message_type, body)
                    elif field.type == FieldDescriptor.TYPE_STRING:
                        body = body.decode("utf-8", "ignore").encode()
                    out += _encode_varint(key) + _encode_varint(len(body)) + body
                    break
            else:
                break
        except IndexError:
            break
        out += data[start:pos]
    return bytes(out)


def decode_prefix(type_id: int, prefix: bytes) -> Any:
    """A journal entry decoded from its first bytes: what was cut off is missing or shortened (None for an
    entry type that is not protobuf, such as a custom entry)."""
    try:
        msg = m.message_class(type_id)()
        msg.ParseFromString(_repair(msg.DESCRIPTOR, prefix))
    except Exception:
        return None
    return msg


def entry_json(idx: int, type_id: int, raw: bytes, appended_at: int, size: int, value_url: str) -> dict[str, Any]:
    """One entry as the describe shows it; an entry read only in part (`len(raw) < size`) says so and where
    to get it whole."""
    if len(raw) >= size:
        return journal_entry_json(idx, type_id, raw, appended_at)
    msg = decode_prefix(type_id, raw)
    if msg is None:
        out: dict[str, Any] = {"index": idx, "type": m.type_name(type_id), "appended_at": iso(appended_at)}
    else:
        out = journal_entry_json(idx, type_id, raw, appended_at, msg)
    out["value_truncated"] = True
    out["entry_size"] = size
    out["value_url"] = value_url
    return out


def read_page_and_length(store: Store, inv_id: str, offset: int, limit: int,
                         value_url: str) -> tuple[list[dict[str, Any]], int]:
    """`read_page` and the journal's length. Blocking: call it on a worker thread."""
    return read_page(store, inv_id, offset, limit, value_url), store.journal_length(inv_id)


def read_page(store: Store, inv_id: str, offset: int, limit: int, value_url: str,
              max_bytes: int = JOURNAL_PAGE_BYTES, cap: int = JOURNAL_VALUE_PREVIEW) -> list[dict[str, Any]]:
    """One page of the journal as JSON entries: at most `limit` entries and `max_bytes` of them, at least
    one; `value_url` has `{index}` where an entry's index goes. Blocking: call it on a worker thread."""
    sizes = store.journal_sizes(inv_id, offset, limit)
    if not sizes:
        return []
    total = 0
    last = sizes[0][0]
    for idx, _type, size, _at in sizes:
        total += min(size, cap)
        if total > max_bytes and idx != sizes[0][0]:
            break
        last = idx
    rows = store.journal_previews(inv_id, sizes[0][0], last, cap)
    return [entry_json(i, t, bytes(raw), at, size, value_url.format(index=i)) for i, t, raw, at, size in rows]


async def read_page_off_loop(store: Store, inv_id: str, offset: int, limit: int,
                             value_url: str) -> tuple[list[dict[str, Any]], int]:
    """`read_page` and the journal's length, on a worker thread (even counting the entries of a journal of
    large entries reads them)."""
    return await asyncio.to_thread(read_page_and_length, store, inv_id, offset, limit, value_url)
