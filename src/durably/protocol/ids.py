"""Restate-compatible identifiers.

This module produces and parses the identifiers that cross the wire or reach users, byte-for-byte compatible
with Restate:

* :class:`InvocationId` - the 24-byte invocation id (``StartMessage.id``) and its ``inv_1...`` string form.
* :func:`awakeable_id` / :func:`parse_awakeable_id` - ``sign_1...`` awakeable ids (and legacy ``prom_1...``).
* :func:`random_seed` / :func:`sha256_random_seed` - the per-invocation seed sent in ``StartMessage``.
* :func:`siphash13` / :func:`siphash24` - the pure-Python SipHash core behind :func:`random_seed`.
* :func:`new_deployment_id` - ``dp_...`` deployment ids.

Only the standard library is used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import time
from dataclasses import dataclass

__all__ = [
    "AWAKEABLE_ID_PREFIX",
    "DEPLOYMENT_ID_PREFIX",
    "INVOCATION_ID_PREFIX",
    "LEGACY_AWAKEABLE_ID_PREFIX",
    "InvocationId",
    "awakeable_id",
    "new_deployment_id",
    "parse_awakeable_id",
    "random_seed",
    "sha256_random_seed",
    "siphash13",
    "siphash24",
]

INVOCATION_ID_PREFIX = "inv_"
AWAKEABLE_ID_PREFIX = "sign_1"
LEGACY_AWAKEABLE_ID_PREFIX = "prom_1"
DEPLOYMENT_ID_PREFIX = "dp_"

_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1
_U128_MAX = (1 << 128) - 1

_INVOCATION_ID_VERSION = "1"
_RAW_ID_LEN = 24
# 62**11 > 2**64 and 62**22 > 2**128, so these widths always suffice (and admit overflowing strings).
_PK_B62_LEN = 11
_UUID_B62_LEN = 22
_INVOCATION_ID_STR_LEN = len(INVOCATION_ID_PREFIX) + len(_INVOCATION_ID_VERSION) + _PK_B62_LEN + _UUID_B62_LEN
_B62_START = len(INVOCATION_ID_PREFIX) + len(_INVOCATION_ID_VERSION)

# Restate's "alternative" base62 alphabet: digits, then lowercase, then uppercase.
_B62_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_B62_ALPHABET_BYTES = _B62_ALPHABET.encode("ascii")
# Indexed by byte value so decoding is one tuple lookup per character; -1 marks bytes outside the alphabet.
_B62_INDEX: tuple[int, ...] = tuple(_B62_ALPHABET_BYTES.find(bytes([b])) for b in range(256))

_AWAKEABLE_RAW_LEN = _RAW_ID_LEN + 4
# base64 without padding of 28 bytes: 9 full 3-byte groups (36 chars) + 1 byte (2 chars).
_AWAKEABLE_B64_LEN = 38
_B64URL_ALPHABET_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

_DEPLOYMENT_ID_RANDOM_LEN = 26

_ULID_RANDOM_BITS = 80
_ULID_TIMESTAMP_MASK = (1 << 48) - 1


def _describe(value: object) -> str:
    """Render a rejected input for an error message without flooding logs with huge strings."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _byteswap(value: int, width: int) -> int:
    # Restate's encoder base62-encodes `x.to_be()` reinterpreted as a native (little-endian) integer,
    # i.e. the byte-swapped value. The swap is its own inverse, so decoding uses it too.
    return int.from_bytes(value.to_bytes(width, "big"), "little")


# Two digits at a time (an id is minted for every invocation): "00".."ZZ" by value.
_B62_PAIRS: tuple[str, ...] = tuple(a + b for a in _B62_ALPHABET for b in _B62_ALPHABET)


def _b62_encode(value: int, width: int) -> str:
    digits = []
    pairs = _B62_PAIRS
    for _ in range(width // 2):
        value, pair = divmod(value, 3844)
        digits.append(pairs[pair])
    if width % 2:
        digits.append(_B62_ALPHABET[value % 62])
    digits.reverse()
    return "".join(digits)


def _b62_decode(raw: bytes) -> int:
    # Characters were validated by the caller, so every lookup is a valid digit.
    value = 0
    index = _B62_INDEX
    for byte in raw:
        value = value * 62 + index[byte]
    return value


def _stable_u64(data: bytes) -> int:
    """First 8 bytes (big-endian) of SHA-256: a stable, well-distributed u64 across processes and versions."""
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def _partition_key_for_key(key: str) -> int:
    return _stable_u64(key.encode("utf-8"))


def _deterministic_uuid(pieces: list[str]) -> int:
    # Pieces are joined by ',' exactly as Restate writes them, so ids match the real server's.
    digest = hashlib.sha256(b",".join(piece.encode("utf-8") for piece in pieces)).digest()
    return int.from_bytes(digest[:16], "big")


def _new_ulid() -> int:
    timestamp_ms = time.time_ns() // 1_000_000
    randomness = int.from_bytes(os.urandom(_ULID_RANDOM_BITS // 8), "big")
    return ((timestamp_ms & _ULID_TIMESTAMP_MASK) << _ULID_RANDOM_BITS) | randomness


def _check_raw_id(invocation_id_bytes: bytes | bytearray | memoryview, what: str) -> bytes:
    raw = bytes(invocation_id_bytes)
    if len(raw) != _RAW_ID_LEN:
        raise ValueError(f"{what} must be {_RAW_ID_LEN} bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True, slots=True)
class InvocationId:
    """A Restate invocation id: a partition key (u64) plus an invocation uuid (u128).

    The raw form (:meth:`to_bytes`, 24 bytes) is what travels in ``StartMessage.id``; the string form
    (``str(invocation_id)``, e.g. ``inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz``) is what users and the HTTP APIs
    see. Both round-trip exactly with Restate's own encoding.

    Use :meth:`random`, :meth:`for_keyed`, :meth:`for_idempotent_request` or :meth:`for_workflow` to mint new
    ids, and :meth:`parse` / :meth:`from_bytes` to read existing ones.
    """

    partition_key: int
    uuid: int

    def __post_init__(self) -> None:
        # bool is an int subclass but an id made from True/False is certainly a bug.
        if type(self.partition_key) is not int or not 0 <= self.partition_key <= _U64_MAX:
            raise ValueError(
                f"partition_key must be an int in [0, 2**64), got {_describe(self.partition_key)}"
            )
        if type(self.uuid) is not int or not 0 <= self.uuid <= _U128_MAX:
            raise ValueError(f"uuid must be an int in [0, 2**128), got {_describe(self.uuid)}")

    # ---- constructors -------------------------------------------------------------------------------------

    @classmethod
    def random(cls) -> InvocationId:
        """Mint an id for a plain (unkeyed, non-idempotent) invocation.

        The uuid is a fresh ULID (48-bit millisecond timestamp in the high bits, 80 random bits) and the
        partition key is a random u64.
        """
        return cls(int.from_bytes(os.urandom(8), "big"), _new_ulid())

    @classmethod
    def random_in(cls, low: int, high: int) -> InvocationId:
        """Mint a plain invocation's id with its partition key drawn from ``[low, high)``.

        Used where partitions own ranges of the partition-key space, so a plain invocation minted by one
        partition stays in that partition (see :meth:`random` for the uuid).
        """
        if not 0 <= low < high <= _U64_MAX + 1:
            raise ValueError(f"partition key range must satisfy 0 <= low < high <= 2**64, got [{low}, {high})")
        return cls(low + int.from_bytes(os.urandom(8), "big") % (high - low), _new_ulid())

    @classmethod
    def for_keyed(cls, service: str, key: str) -> InvocationId:
        """Mint an id for an invocation on a virtual object (or any keyed target).

        The uuid is a fresh ULID; the partition key is the stable hash of ``key`` alone (first 8 bytes,
        big-endian, of SHA-256 of its UTF-8 encoding), so every invocation on the same key lands in the same
        partition. ``service`` does not influence the id; it is accepted so call sites read naturally.
        """
        return cls(_partition_key_for_key(key), _new_ulid())

    @classmethod
    def for_idempotent_request(
        cls,
        service: str,
        handler: str,
        idempotency_key: str,
        key: str | None = None,
        scope: str | None = None,
    ) -> InvocationId:
        """Deterministically derive the id of an idempotent request, as Restate does.

        The uuid is the first 16 bytes (big-endian) of SHA-256 over ``"ik"``, ``scope`` (if given),
        ``service``, ``key`` (if given), ``handler`` and ``idempotency_key``, UTF-8 encoded and joined by
        ``","``. The same inputs therefore always produce the same id, which is what deduplicates retries.

        Partition key (a stable u64; first 8 bytes, big-endian, of SHA-256):

        * for a keyed target (``key`` given) it is the hash of ``key``, like :meth:`for_keyed`, so the
          request shares its partition with every other invocation on that key;
        * otherwise it is the hash of ``service + "," + idempotency_key``.
        """
        pieces = ["ik"]
        if scope is not None:
            pieces.append(scope)
        pieces.append(service)
        if key is not None:
            pieces.append(key)
        pieces.append(handler)
        pieces.append(idempotency_key)
        if key is not None:
            partition_key = _partition_key_for_key(key)
        else:
            partition_key = _stable_u64(f"{service},{idempotency_key}".encode())
        return cls(partition_key, _deterministic_uuid(pieces))

    @classmethod
    def for_workflow(cls, workflow_name: str, workflow_key: str, scope: str | None = None) -> InvocationId:
        """Deterministically derive the id of a workflow's ``run`` invocation, as Restate does.

        The uuid is the first 16 bytes (big-endian) of SHA-256 over ``"wf"``, ``scope`` (if given),
        ``workflow_name`` and ``workflow_key``, UTF-8 encoded and joined by ``","``. The partition key is the
        stable hash of ``workflow_key`` (see :meth:`for_keyed`), so the run shares its partition with the
        workflow's other handlers.
        """
        pieces = ["wf"]
        if scope is not None:
            pieces.append(scope)
        pieces.append(workflow_name)
        pieces.append(workflow_key)
        return cls(_partition_key_for_key(workflow_key), _deterministic_uuid(pieces))

    # ---- raw form -----------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Return the 24-byte raw form: partition key (u64 BE) followed by uuid (u128 BE)."""
        return self.partition_key.to_bytes(8, "big") + self.uuid.to_bytes(16, "big")

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> InvocationId:
        """Read the 24-byte raw form (e.g. ``StartMessage.id``). Raises ``ValueError`` on a wrong length."""
        raw = _check_raw_id(data, "invocation id")
        return cls(int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big"))

    # ---- string form --------------------------------------------------------------------------------------

    def __str__(self) -> str:
        """Return the 38-character ``inv_1...`` string form used by Restate's APIs and CLI."""
        return (
            INVOCATION_ID_PREFIX
            + _INVOCATION_ID_VERSION
            + _b62_encode(_byteswap(self.partition_key, 8), _PK_B62_LEN)
            + _b62_encode(_byteswap(self.uuid, 16), _UUID_B62_LEN)
        )

    @classmethod
    def parse(cls, text: str) -> InvocationId:
        """Parse the ``inv_1...`` string form.

        Raises ``ValueError`` (naming the offending input) if the prefix, version, length or characters are
        wrong, or if an encoded number does not fit its field.
        """
        if not isinstance(text, str):
            raise ValueError(f"invocation id must be a str, got {type(text).__name__}")
        if not text.startswith(INVOCATION_ID_PREFIX):
            raise ValueError(f"invocation id must start with {INVOCATION_ID_PREFIX!r}: {_describe(text)}")
        if len(text) != _INVOCATION_ID_STR_LEN:
            raise ValueError(
                f"invocation id must be {_INVOCATION_ID_STR_LEN} characters long, got {len(text)}: "
                f"{_describe(text)}"
            )
        if text[len(INVOCATION_ID_PREFIX)] != _INVOCATION_ID_VERSION:
            raise ValueError(
                f"unsupported invocation id version {text[len(INVOCATION_ID_PREFIX)]!r} "
                f"(expected {_INVOCATION_ID_VERSION!r}): {_describe(text)}"
            )
        try:
            body = text[_B62_START:].encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"invocation id contains non-base62 characters: {_describe(text)}") from None
        # One C-level pass that deletes every valid digit; anything left over is an invalid character.
        if body.translate(None, _B62_ALPHABET_BYTES):
            raise ValueError(f"invocation id contains non-base62 characters: {_describe(text)}")
        pk_swapped = _b62_decode(body[:_PK_B62_LEN])
        if pk_swapped > _U64_MAX:
            raise ValueError(f"invocation id partition key overflows 64 bits: {_describe(text)}")
        uuid_swapped = _b62_decode(body[_PK_B62_LEN:])
        if uuid_swapped > _U128_MAX:
            raise ValueError(f"invocation id uuid overflows 128 bits: {_describe(text)}")
        return cls(_byteswap(pk_swapped, 8), _byteswap(uuid_swapped, 16))


# ---- SipHash / random seed ---------------------------------------------------------------------------------

_MASK64 = _U64_MAX


def _siphash(data: bytes, key: bytes, c_rounds: int, d_rounds: int) -> int:
    # Parameterised over round counts so SipHash-2-4's published vectors can vouch for the 1-3 variant.
    if len(key) != 16:
        raise ValueError(f"SipHash key must be 16 bytes, got {len(key)}")
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:], "little")
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573
    mask = _MASK64

    def rounds(count: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(count):
            v0 = (v0 + v1) & mask
            v1 = ((v1 << 13) | (v1 >> 51)) & mask
            v1 ^= v0
            v0 = ((v0 << 32) | (v0 >> 32)) & mask
            v2 = (v2 + v3) & mask
            v3 = ((v3 << 16) | (v3 >> 48)) & mask
            v3 ^= v2
            v0 = (v0 + v3) & mask
            v3 = ((v3 << 21) | (v3 >> 43)) & mask
            v3 ^= v0
            v2 = (v2 + v1) & mask
            v1 = ((v1 << 17) | (v1 >> 47)) & mask
            v1 ^= v2
            v2 = ((v2 << 32) | (v2 >> 32)) & mask

    length = len(data)
    tail_start = length - (length & 7)
    for offset in range(0, tail_start, 8):
        m = int.from_bytes(data[offset : offset + 8], "little")
        v3 ^= m
        rounds(c_rounds)
        v0 ^= m
    # Final block: leftover bytes plus the message length (mod 256) in the top byte.
    m = ((length & 0xFF) << 56) | int.from_bytes(data[tail_start:], "little")
    v3 ^= m
    rounds(c_rounds)
    v0 ^= m
    v2 ^= 0xFF
    rounds(d_rounds)
    return v0 ^ v1 ^ v2 ^ v3


def siphash13(data: bytes, key: bytes = bytes(16)) -> int:
    """SipHash-1-3 of ``data`` under a 16-byte ``key`` (default all zeros), as an unsigned 64-bit int.

    With the default key this equals Rust's ``std::collections::hash_map::DefaultHasher`` fed ``data``
    through ``Hasher::write``.
    """
    return _siphash(bytes(data), bytes(key), 1, 3)


def siphash24(data: bytes, key: bytes = bytes(16)) -> int:
    """SipHash-2-4 (the original SipHash) of ``data`` under a 16-byte ``key``, as an unsigned 64-bit int."""
    return _siphash(bytes(data), bytes(key), 2, 4)


def random_seed(invocation_id_bytes: bytes) -> int:
    """The u64 random seed Restate sends in ``StartMessage.random_seed`` for this invocation (protocol V6+).

    Equal to Rust's ``DefaultHasher`` over the 24-byte id array: SipHash-1-3 with zero keys over the slice
    length as an 8-byte little-endian ``usize`` followed by the id bytes, all in one stream. It is stable
    across retries and replays because it depends only on the id.
    """
    raw = _check_raw_id(invocation_id_bytes, "invocation id")
    # Rust hashes a slice as write_length_prefix(len) -> write_usize(len) (8 LE bytes), then the bytes.
    return _siphash(_RAW_ID_LEN.to_bytes(8, "little") + raw, bytes(16), 1, 3)


def sha256_random_seed(invocation_id_bytes: bytes) -> int:
    """The seed the Python SDK derives when ``StartMessage`` carries none (protocol V5).

    First 8 bytes, big-endian, of SHA-256 over the 24-byte invocation id.
    """
    raw = _check_raw_id(invocation_id_bytes, "invocation id")
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big")


# ---- awakeable ids -----------------------------------------------------------------------------------------


def awakeable_id(invocation_id_bytes: bytes, signal_idx: int) -> str:
    """Build the public id of an awakeable: ``"sign_1"`` + unpadded base64url(id bytes ‖ signal idx u32 BE).

    ``invocation_id_bytes`` is the 24-byte raw invocation id and ``signal_idx`` the signal index the
    awakeable completes (awakeables start at 17; 1..16 are reserved).
    """
    raw = _check_raw_id(invocation_id_bytes, "invocation id")
    if type(signal_idx) is not int or not 0 <= signal_idx <= _U32_MAX:
        raise ValueError(f"signal index must be an int in [0, 2**32), got {_describe(signal_idx)}")
    encoded = base64.urlsafe_b64encode(raw + signal_idx.to_bytes(4, "big")).rstrip(b"=")
    return AWAKEABLE_ID_PREFIX + encoded.decode("ascii")


def parse_awakeable_id(text: str) -> tuple[InvocationId, int]:
    """Split an awakeable id into the invocation it belongs to and its index.

    Accepts current ``sign_1...`` ids, whose index is a signal index, and legacy ``prom_1...`` ids (protocol
    V1-V4), whose index is the journal entry index of the awakeable; both are returned the same way, as
    ``(invocation_id, index)``, so callers that need to tell them apart must check the prefix. Raises
    ``ValueError`` naming the input if it is malformed.
    """
    if not isinstance(text, str):
        raise ValueError(f"awakeable id must be a str, got {type(text).__name__}")
    if text.startswith(AWAKEABLE_ID_PREFIX):
        prefix = AWAKEABLE_ID_PREFIX
    elif text.startswith(LEGACY_AWAKEABLE_ID_PREFIX):
        prefix = LEGACY_AWAKEABLE_ID_PREFIX
    else:
        raise ValueError(
            f"awakeable id must start with {AWAKEABLE_ID_PREFIX!r} "
            f"(or legacy {LEGACY_AWAKEABLE_ID_PREFIX!r}): {_describe(text)}"
        )
    body_text = text[len(prefix) :]
    if len(body_text) != _AWAKEABLE_B64_LEN:
        raise ValueError(
            f"awakeable id payload must be {_AWAKEABLE_B64_LEN} base64url characters, got {len(body_text)}: "
            f"{_describe(text)}"
        )
    try:
        body = body_text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"awakeable id contains non-base64url characters: {_describe(text)}") from None
    # The stdlib decoder silently skips foreign characters, so reject them (and padding) up front.
    if body.translate(None, _B64URL_ALPHABET_BYTES):
        raise ValueError(f"awakeable id contains non-base64url characters: {_describe(text)}")
    try:
        raw = base64.urlsafe_b64decode(body + b"==")
    except binascii.Error as exc:
        raise ValueError(f"awakeable id is not valid base64url ({exc}): {_describe(text)}") from None
    # Unused low bits in the last character must be zero, or several strings would name one awakeable.
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != body:
        raise ValueError(f"awakeable id has non-canonical base64url encoding: {_describe(text)}")
    return InvocationId.from_bytes(raw[:_RAW_ID_LEN]), int.from_bytes(raw[_RAW_ID_LEN:], "big")


# ---- deployment ids ----------------------------------------------------------------------------------------


def new_deployment_id() -> str:
    """Mint a deployment id: ``"dp_"`` followed by 26 random base62 characters (about 154 bits of entropy)."""
    return DEPLOYMENT_ID_PREFIX + "".join(
        secrets.choice(_B62_ALPHABET) for _ in range(_DEPLOYMENT_ID_RANDOM_LEN)
    )
