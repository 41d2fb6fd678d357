"""Tests for durably.protocol.ids (Restate-compatible identifiers)."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durably.protocol.ids import (
    InvocationId,
    awakeable_id,
    new_deployment_id,
    parse_awakeable_id,
    random_seed,
    sha256_random_seed,
    siphash13,
    siphash24,
)

EXAMPLE_ID = "inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz"
EXAMPLE_PK = 5277166449519817148
U64_MAX = 2**64 - 1
U128_MAX = 2**128 - 1
B62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

pks = st.integers(min_value=0, max_value=U64_MAX)
uuids = st.integers(min_value=0, max_value=U128_MAX)
raw_ids = st.binary(min_size=24, max_size=24)
u32s = st.integers(min_value=0, max_value=2**32 - 1)


def _sha_u64(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def _sha_u128(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest()[:16], "big")


# ---- invocation id: known vector ---------------------------------------------------------------------------


def test_example_invocation_id_parses_to_known_values() -> None:
    inv = InvocationId.parse(EXAMPLE_ID)
    assert inv.partition_key == EXAMPLE_PK
    assert f"{inv.uuid:032x}".startswith("018e5257b998")
    assert str(inv) == EXAMPLE_ID


def test_example_invocation_id_raw_round_trip() -> None:
    inv = InvocationId.parse(EXAMPLE_ID)
    raw = inv.to_bytes()
    assert len(raw) == 24
    assert raw[:8] == EXAMPLE_PK.to_bytes(8, "big")
    assert raw[8:].hex().startswith("018e5257b998")
    assert InvocationId.from_bytes(raw) == inv
    assert str(InvocationId.from_bytes(raw)) == EXAMPLE_ID


def test_extreme_values_round_trip() -> None:
    for pk in (0, 1, U64_MAX):
        for uuid in (0, 1, U128_MAX):
            inv = InvocationId(pk, uuid)
            text = str(inv)
            assert len(text) == 38
            assert text.startswith("inv_1")
            assert InvocationId.parse(text) == inv
            assert InvocationId.from_bytes(inv.to_bytes()) == inv
    assert str(InvocationId(0, 0)) == "inv_1" + "0" * 33


# ---- invocation id: round trips ----------------------------------------------------------------------------


@given(pks, uuids)
def test_string_round_trip(pk: int, uuid: int) -> None:
    inv = InvocationId(pk, uuid)
    text = str(inv)
    assert len(text) == 38
    assert text.startswith("inv_1")
    assert all(c in B62 for c in text[5:])
    assert InvocationId.parse(text) == inv


@given(pks, uuids)
def test_bytes_round_trip(pk: int, uuid: int) -> None:
    inv = InvocationId(pk, uuid)
    raw = inv.to_bytes()
    assert len(raw) == 24
    assert InvocationId.from_bytes(raw) == inv


@given(raw_ids)
def test_from_any_24_bytes(raw: bytes) -> None:
    inv = InvocationId.from_bytes(raw)
    assert inv.to_bytes() == raw
    assert InvocationId.parse(str(inv)).to_bytes() == raw
    assert InvocationId.from_bytes(bytearray(raw)) == inv
    assert InvocationId.from_bytes(memoryview(raw)) == inv


def test_invocation_id_is_hashable_and_immutable() -> None:
    a = InvocationId.parse(EXAMPLE_ID)
    b = InvocationId.parse(EXAMPLE_ID)
    assert {a: 1}[b] == 1
    with pytest.raises(AttributeError):
        a.partition_key = 1  # type: ignore[misc]


# ---- invocation id: malformed input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "must start with 'inv_'"),
        ("INV_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz", "must start with 'inv_'"),
        ("sign_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hb", "must start with 'inv_'"),
        ("inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hb", "38 characters"),
        ("inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbzz", "38 characters"),
        ("inv_", "38 characters"),
        ("inv_2gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz", "unsupported invocation id version '2'"),
        ("inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hb!", "non-base62"),
        ("inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hb-", "non-base62"),
        ("inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hb ", "non-base62"),
        ("inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbé", "non-base62"),
        ("inv_1" + "Z" * 11 + "0" * 22, "partition key overflows"),
        ("inv_1" + "0" * 11 + "Z" * 22, "uuid overflows"),
    ],
)
def test_parse_rejects_malformed(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="invocation id") as info:
        InvocationId.parse(text)
    assert fragment in str(info.value)


def test_parse_overflow_boundaries() -> None:
    # The largest 11-digit value that fits u64 parses; one more overflows.
    max_pk_digits = _b62(U64_MAX, 11)
    assert InvocationId.parse("inv_1" + max_pk_digits + "0" * 22).partition_key == U64_MAX
    with pytest.raises(ValueError, match="overflows 64 bits"):
        InvocationId.parse("inv_1" + _b62(U64_MAX + 1, 11) + "0" * 22)
    max_uuid_digits = _b62(U128_MAX, 22)
    assert InvocationId.parse("inv_1" + "0" * 11 + max_uuid_digits).uuid == U128_MAX
    with pytest.raises(ValueError, match="overflows 128 bits"):
        InvocationId.parse("inv_1" + "0" * 11 + _b62(U128_MAX + 1, 22))


def _b62(value: int, width: int) -> str:
    out = ""
    for _ in range(width):
        value, digit = divmod(value, 62)
        out = B62[digit] + out
    assert value == 0
    return out


def test_parse_rejects_non_str() -> None:
    with pytest.raises(ValueError, match="must be a str"):
        InvocationId.parse(EXAMPLE_ID.encode())  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [0, 23, 25, 48])
def test_from_bytes_rejects_wrong_length(length: int) -> None:
    with pytest.raises(ValueError, match="must be 24 bytes"):
        InvocationId.from_bytes(bytes(length))


@pytest.mark.parametrize(
    ("pk", "uuid"),
    [(-1, 0), (2**64, 0), (0, -1), (0, 2**128), (True, 0), (0, 1.0), ("1", 0)],
)
def test_constructor_rejects_out_of_range(pk: object, uuid: object) -> None:
    with pytest.raises(ValueError):
        InvocationId(pk, uuid)  # type: ignore[arg-type]


# ---- invocation id: constructors ---------------------------------------------------------------------------


def test_random_is_a_current_ulid() -> None:
    now_ms = time.time() * 1000
    inv = InvocationId.random()
    timestamp_ms = inv.uuid >> 80
    assert abs(timestamp_ms - now_ms) < 1000
    assert 0 <= inv.partition_key <= U64_MAX
    assert InvocationId.parse(str(inv)) == inv


def test_random_ids_are_distinct() -> None:
    ids = {InvocationId.random() for _ in range(1000)}
    assert len(ids) == 1000
    assert len({i.partition_key for i in ids}) == 1000
    # Within one burst the 80 random bits must differ even when the millisecond is shared.
    assert len({i.uuid & (2**80 - 1) for i in ids}) == 1000


def test_for_keyed_shares_partition_per_key() -> None:
    now_ms = time.time() * 1000
    a = InvocationId.for_keyed("Counter", "alice")
    b = InvocationId.for_keyed("Counter", "alice")
    c = InvocationId.for_keyed("Counter", "bob")
    assert a.partition_key == b.partition_key == _sha_u64(b"alice")
    assert c.partition_key != a.partition_key
    assert a.uuid != b.uuid
    assert abs((a.uuid >> 80) - now_ms) < 1000


def test_for_idempotent_request_matches_specified_hash() -> None:
    inv = InvocationId.for_idempotent_request("Greeter", "greet", "req-1")
    assert inv.uuid == _sha_u128(b"ik,Greeter,greet,req-1")
    assert inv.partition_key == _sha_u64(b"Greeter,req-1")

    keyed = InvocationId.for_idempotent_request("Counter", "add", "req-1", key="alice", scope="tenant")
    assert keyed.uuid == _sha_u128(b"ik,tenant,Counter,alice,add,req-1")
    # A keyed request stays in the key's partition, alongside every other invocation on that key.
    assert keyed.partition_key == InvocationId.for_keyed("Counter", "alice").partition_key


def test_for_idempotent_request_is_deterministic() -> None:
    args = ("Counter", "add", "req-1")
    assert InvocationId.for_idempotent_request(*args) == InvocationId.for_idempotent_request(*args)
    assert InvocationId.for_idempotent_request(*args, key="a") == InvocationId.for_idempotent_request(
        *args, key="a"
    )
    base = InvocationId.for_idempotent_request(*args, key="a")
    variants = [
        InvocationId.for_idempotent_request("Counter", "add", "req-2", key="a"),
        InvocationId.for_idempotent_request(*args, key="b"),
        InvocationId.for_idempotent_request(*args),
        InvocationId.for_idempotent_request(*args, key="a", scope="s"),
        InvocationId.for_idempotent_request("Counter", "sub", "req-1", key="a"),
        InvocationId.for_idempotent_request("Other", "add", "req-1", key="a"),
    ]
    assert len({base.uuid, *(v.uuid for v in variants)}) == len(variants) + 1


def test_for_workflow_matches_specified_hash_and_is_deterministic() -> None:
    inv = InvocationId.for_workflow("Signup", "user-7")
    assert inv.uuid == _sha_u128(b"wf,Signup,user-7")
    assert inv.partition_key == _sha_u64(b"user-7")
    assert inv == InvocationId.for_workflow("Signup", "user-7")
    assert InvocationId.parse(str(inv)) == inv

    scoped = InvocationId.for_workflow("Signup", "user-7", scope="eu")
    assert scoped.uuid == _sha_u128(b"wf,eu,Signup,user-7")
    assert scoped != inv
    assert InvocationId.for_workflow("Signup", "user-8") != inv
    assert InvocationId.for_workflow("Other", "user-7").uuid != inv.uuid


def test_idempotent_and_workflow_ids_do_not_collide() -> None:
    # The "ik"/"wf" tags keep the two namespaces apart even for look-alike inputs.
    assert InvocationId.for_workflow("S", "k").uuid != InvocationId.for_idempotent_request("S", "k", "x").uuid


def test_unicode_inputs_are_utf8_encoded() -> None:
    inv = InvocationId.for_workflow("Anmeldung", "jürgen")
    assert inv.uuid == _sha_u128("wf,Anmeldung,jürgen".encode())


# ---- SipHash and random seeds ------------------------------------------------------------------------------


def test_siphash24_reference_vector() -> None:
    # The worked example from the SipHash paper (Aumasson & Bernstein), appendix A.
    assert siphash24(bytes(range(15)), bytes(range(16))) == 0xA129CA6149BE45E5


@pytest.mark.parametrize(
    ("length", "expected"),
    # Obtained from Rust's std::hash::SipHasher (SipHash-2-4), key 00..0f, message 00..(length-1).
    [
        (0, 0x726FDB47DD0E0E31),
        (1, 0x74F839C593DC67FD),
        (7, 0xAB0200F58B01D137),
        (8, 0x93F5F5799A932462),
        (16, 0x3F2ACC7F57C29BDB),
        (63, 0x958A324CEB064572),
    ],
)
def test_siphash24_more_vectors(length: int, expected: int) -> None:
    assert siphash24(bytes(range(length)), bytes(range(16))) == expected


def test_siphash13_matches_rust_default_hasher() -> None:
    # Values printed by Rust's DefaultHasher::new() (SipHash-1-3, zero keys) after Hasher::write(msg).
    assert siphash13(b"") == 15130871412783076140
    assert siphash13(bytes(range(15))) == 17514137373579004394


def test_siphash_rejects_bad_key() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        siphash13(b"x", bytes(15))


@pytest.mark.parametrize(
    ("raw", "expected"),
    # Values printed by Rust: `let mut h = DefaultHasher::new(); id_array.hash(&mut h); h.finish()`.
    [
        (bytes(24), 4877446713163382248),
        (bytes(range(24)), 8435221926840062131),
        (bytes(8) + b"\x01" * 16, 15963344654456399748),
        (InvocationId.parse(EXAMPLE_ID).to_bytes(), 14005707192120193409),
    ],
)
def test_random_seed_matches_rust(raw: bytes, expected: int) -> None:
    assert random_seed(raw) == expected


def test_random_seed_is_length_prefixed_siphash13() -> None:
    raw = InvocationId.random().to_bytes()
    assert random_seed(raw) == siphash13((24).to_bytes(8, "little") + raw)


@given(raw_ids, raw_ids)
def test_random_seed_properties(a: bytes, b: bytes) -> None:
    seed = random_seed(a)
    assert seed == random_seed(a)
    assert 0 <= seed <= U64_MAX
    if a != b:
        assert seed != random_seed(b)


def test_sha256_random_seed() -> None:
    raw = InvocationId.parse(EXAMPLE_ID).to_bytes()
    seed = sha256_random_seed(raw)
    assert seed == int.from_bytes(hashlib.sha256(raw).digest()[:8], "big")
    assert seed == sha256_random_seed(raw)
    assert 0 <= seed <= U64_MAX
    assert seed != sha256_random_seed(bytes(24))


@pytest.mark.parametrize("fn", [random_seed, sha256_random_seed])
def test_seeds_reject_wrong_length(fn: Callable[[bytes], int]) -> None:
    with pytest.raises(ValueError, match="24 bytes"):
        fn(bytes(23))


# ---- awakeable ids -----------------------------------------------------------------------------------------

AWAKEABLE_RAW = bytes(8) + b"\x01" * 16
AWAKEABLE_EXAMPLE = "sign_1AAAAAAAAAAABAQEBAQEBAQEBAQEBAQEBAAAAEQ"


def test_awakeable_id_vector() -> None:
    assert awakeable_id(AWAKEABLE_RAW, 17) == AWAKEABLE_EXAMPLE
    inv, idx = parse_awakeable_id(AWAKEABLE_EXAMPLE)
    assert inv.to_bytes() == AWAKEABLE_RAW
    assert inv == InvocationId(0, int.from_bytes(b"\x01" * 16, "big"))
    assert idx == 17


@given(raw_ids, u32s)
def test_awakeable_round_trip(raw: bytes, idx: int) -> None:
    text = awakeable_id(raw, idx)
    assert text.startswith("sign_1")
    assert "=" not in text
    assert len(text) == 6 + 38
    inv, parsed_idx = parse_awakeable_id(text)
    assert inv.to_bytes() == raw
    assert parsed_idx == idx


def test_legacy_prom_prefix_is_accepted() -> None:
    legacy = "prom_1" + AWAKEABLE_EXAMPLE[len("sign_1") :]
    inv, entry_index = parse_awakeable_id(legacy)
    assert inv.to_bytes() == AWAKEABLE_RAW
    assert entry_index == 17


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "must start with 'sign_1'"),
        ("sign_2AAAAAAAAAAABAQEBAQEBAQEBAQEBAQEBAAAAEQ", "must start with 'sign_1'"),
        ("inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz", "must start with 'sign_1'"),
        ("sign_1AAAAAAAAAAABAQEBAQEBAQEBAQEBAQEBAAAAE", "38 base64url characters"),
        ("sign_1AAAAAAAAAAABAQEBAQEBAQEBAQEBAQEBAAAAEQ==", "38 base64url characters"),
        ("sign_1", "38 base64url characters"),
        ("sign_1AAAAAAAAAAABAQEBAQEBAQEBAQEBAQEBAAAA+Q", "non-base64url"),
        ("sign_1AAAAAAAAAAABAQEBAQEBAQEBAQEBAQEBAAAA/Q", "non-base64url"),
        ("sign_1AAAAAAAAAAABAQEBAQEBAQEBAQEBAQEBAAAA=Q", "non-base64url"),
        ("sign_1AAAAAAAAAAABAQEBAQEBAQEBAQEBAQEBAAAA Q", "non-base64url"),
        ("sign_1AAAAAAAAAAABAQEBAQEBAQEBAQEBAQEBAAAAéQ", "non-base64url"),
        # 'R' differs from 'Q' only in bits that fall off the end of the 28 bytes.
        ("sign_1AAAAAAAAAAABAQEBAQEBAQEBAQEBAQEBAAAAER", "non-canonical"),
    ],
)
def test_parse_awakeable_id_rejects_malformed(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="awakeable id") as info:
        parse_awakeable_id(text)
    assert fragment in str(info.value)


def test_parse_awakeable_id_rejects_non_str() -> None:
    with pytest.raises(ValueError, match="must be a str"):
        parse_awakeable_id(AWAKEABLE_EXAMPLE.encode())  # type: ignore[arg-type]


def test_awakeable_id_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="24 bytes"):
        awakeable_id(bytes(23), 17)
    for idx in (-1, 2**32):
        with pytest.raises(ValueError, match="signal index"):
            awakeable_id(AWAKEABLE_RAW, idx)


def test_awakeable_payload_layout() -> None:
    raw = InvocationId.parse(EXAMPLE_ID).to_bytes()
    text = awakeable_id(raw, 0x01020304)
    decoded = base64.urlsafe_b64decode(text[len("sign_1") :] + "==")
    assert decoded == raw + b"\x01\x02\x03\x04"


# ---- deployment ids ----------------------------------------------------------------------------------------


def test_new_deployment_id_shape_and_uniqueness() -> None:
    ids = {new_deployment_id() for _ in range(500)}
    assert len(ids) == 500
    for dp in ids:
        assert dp.startswith("dp_")
        assert len(dp) == 3 + 26
        assert all(c in B62 for c in dp[3:])
