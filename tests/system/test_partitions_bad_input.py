"""Bad input gets the same answer from `durably serve --partitions 2` as from one process.

The router reads every request (path, key, idempotency key, invocation and awakeable ids) before the engine
does, and forwards it to the owner; a malformed request must not change its answer on the way, crash a
partition, or be forwarded as something else.
"""

from __future__ import annotations

import httpx
import pytest

from .conftest import ServerFactory

pytestmark = pytest.mark.system

J = {"content-type": "application/json"}
# (method, path, body, headers): each is refused (4xx) by one process; --partitions 2 must answer the same.
BAD: list[tuple[str, str, bytes | None, dict[str, str]]] = [
    ("POST", "/Counter/k/add", b"{not json", J),
    ("POST", "/Counter/k/add", b'"a string, not an int"', J),
    ("POST", "/Counter/add", b"1", J),  # an object without its key
    ("POST", "/Nope/k/add", b"1", J),
    ("POST", "/Counter/k/nope", b"1", J),
    ("POST", "/Plain/pid/extra/segments", b"", {}),
    ("GET", "/restate/invocation/inv_notanid/attach", None, {}),
    ("GET", "/restate/invocation/inv_1/output", None, {}),
    ("GET", "/restate/invocation/not-even-inv/attach", None, {}),
    ("GET", "/restate/invocation/inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz/attach", None, {}),  # well formed, unknown
    ("GET", "/restate/workflow/Signup/nobody/attach", None, {}),
    ("GET", "/restate/workflow/Nope/k/output", None, {}),
    ("POST", "/restate/awakeables/not-an-id/resolve", b'"x"', J),
    ("POST", "/restate/awakeables/sign_1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/resolve", b'"x"', J),
    ("POST", "/restate/awakeables/prom_1gdJBtdVEcM942bjcDmb1c1khoaJe11HbzAAAAAQ/reject", b"oops", {}),
    ("POST", "/Counter/k/add/send?delay=soon", b"1", J),
    ("POST", "/Counter/k/add", b"1", {**J, "idempotency-key": ""}),
    ("GET", "/restate/invocation/Plain/pid/no-such-key/attach", None, {}),
    ("POST", "/Signup/w1/confirm", b"{", J),
    ("PATCH", "/Counter/k/add", b"1", J),
]


def answers(url: str) -> list[tuple[int, object]]:
    out: list[tuple[int, object]] = []
    with httpx.Client(base_url=url, timeout=15) as c:
        for method, path, body, headers in BAD:
            r = c.request(method, path, content=body, headers=headers)
            try:
                shown: object = r.json()
            except ValueError:
                shown = r.text
            if isinstance(shown, dict):  # ids minted per request would differ between the two servers
                shown = {k: v for k, v in shown.items() if k not in ("invocationId", "id")}
            out.append((r.status_code, shown))
    return out


def test_bad_requests_get_the_same_answers_with_two_partitions(durably_serve: ServerFactory, tmp_path) -> None:
    one = durably_serve.start("partitioned", data_dir=tmp_path / "one")
    two = durably_serve.new("partitioned", data_dir=tmp_path / "two")
    two.extra_args = ["--partitions", "2"]
    two.start()
    expected, got = answers(one.url), answers(two.url)
    for (method, path, _, _), want, have in zip(BAD, expected, got, strict=True):
        assert 400 <= want[0] < 500, (method, path, want)
        assert have == want, (method, path)
    # Both partitions still serve: keys owned by each answer.
    with httpx.Client(base_url=two.url, timeout=15) as c:
        for key in ("a", "b", "c", "d", "e", "f"):
            r = c.post(f"/Counter/{key}/add", json=1)
            assert r.status_code == 200 and r.json()["value"] == 1, r.text
