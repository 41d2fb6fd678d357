"""Bad input and user errors (issue 10, items 13-15): refused or failed clearly, never retried forever.

- Input is checked against the handler's type hints at the ingress: 400 naming the handler, the expected
  type and what was received, before anything is journaled; the same check for `ctx.*_call` arguments
  fails the caller's call with a TerminalError.
- A result JSON cannot encode fails the invocation terminally with a message that says what to change.
- `TerminalError(object())` is terminal with the str() of the message.
- A syntax error in the app file is one line with the file and line number.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, Literal, TypedDict

import httpx
import pydantic
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import durably
from durably import TerminalError
from durably.cli.main import main as cli
from durably.sdk.input_check import Mismatch, check_json
from durably.server.http.admin import Admin
from durably.testing import TestRuntime


class Size(enum.Enum):
    SMALL = "s"
    LARGE = "l"


@dataclasses.dataclass
class Line:
    sku: str
    qty: int


class Customer(pydantic.BaseModel):
    name: str
    age: int


runs: dict[str, int] = {}

orders = durably.VirtualObject("Orders")


@orders.handler()
async def place(ctx: durably.ObjectContext, amount: int) -> str:
    runs["place"] = runs.get("place", 0) + 1
    return f"placed {amount}"


@orders.handler()
async def lines(ctx: durably.ObjectContext, items: list[Line]) -> int:
    return sum(i.qty for i in items)


@orders.handler()
async def customer(ctx: durably.ObjectContext, c: Customer) -> str:
    return c.name


@orders.handler()
async def sized(ctx: durably.ObjectContext, size: Size | None) -> str:
    return str(size)


@orders.handler()
async def mode(ctx: durably.ObjectContext, m: Literal["fast", "slow"]) -> str:
    return m


@orders.handler()
async def tags(ctx: durably.ObjectContext, t: dict[str, float]) -> int:
    return len(t)


@orders.handler()
async def anything(ctx: durably.ObjectContext, x: Any) -> Any:
    return x


@orders.handler()
async def unhinted(ctx, x):  # type: ignore[no-untyped-def]
    return x


@orders.handler()
async def returns_set(ctx: durably.ObjectContext) -> Any:
    runs["returns_set"] = runs.get("returns_set", 0) + 1
    return {1, 2}


@orders.handler()
async def returns_nested_object(ctx: durably.ObjectContext) -> Any:
    return {"ok": [1, object()]}


@orders.handler()
async def step_returns_set(ctx: durably.ObjectContext) -> str:
    try:
        await ctx.run_typed("collect", lambda: {"a", "b"})
    except TerminalError as e:
        return f"caught: {e.message}"
    return "no error"


@orders.handler()
async def stores_set(ctx: durably.ObjectContext) -> str:
    ctx.set("tags", {"a"})
    return "stored"


@orders.handler()
async def raises_odd_terminal(ctx: durably.ObjectContext) -> str:
    runs["raises_odd_terminal"] = runs.get("raises_odd_terminal", 0) + 1
    raise TerminalError(["not", "a", "string"], 422)  # type: ignore[arg-type]


caller = durably.Service("Caller")


@caller.handler()
async def bad_call(ctx: durably.Context, arg: Any) -> str:
    try:
        await ctx.object_call(place, "k", arg)
    except TerminalError as e:
        return f"{e.status_code} {e.message}"
    return "called"


@caller.handler()
async def bad_generic_call(ctx: durably.Context) -> str:
    try:
        await ctx.generic_call("Orders", "place", b'"abc"', key="k")
    except TerminalError as e:
        return f"{e.status_code} {e.message}"
    return "called"


@caller.handler()
async def bad_send(ctx: durably.Context) -> str:
    try:
        ctx.object_send(place, "k", {"amount": 1})
    except TerminalError as e:
        return f"{e.status_code} {e.message}"
    return "sent"


app = durably.app(services=[orders, caller])


@pytest.fixture
async def rt(runtime):
    runs.clear()
    async with runtime(app) as rt:
        yield rt


async def _invocations(rt) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine)), base_url="http://a") as admin:
        return (await admin.get("/invocations")).json()["invocations"]


@pytest.mark.parametrize(("path", "body", "expected", "got"), [
    ("place", '"abc"', "int", 'a string "abc"'),
    ("place", "1.5", "int", "a number 1.5"),
    ("place", "true", "int", "a boolean true"),
    ("lines", '[{"sku": "a", "qty": 1}, {"sku": "b", "qty": "two"}]', "int", 'a string "two"'),
    ("lines", '[{"sku": "a"}]', "int", "nothing (the field is missing)"),
    ("lines", '{"sku": "a", "qty": 1}', "list[", "an object"),
    ("sized", '"medium"', "Size", 'a string "medium"'),
    ("mode", '"turbo"', '"fast" or "slow"', 'a string "turbo"'),
    ("tags", '{"a": "x"}', "float", 'a string "x"'),
])
async def test_ingress_refuses_input_that_does_not_fit_the_hint(rt, path, body, expected, got) -> None:
    async with rt.http() as http:
        resp = await http.post(f"/Orders/k/{path}", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    message = resp.json()["message"]
    assert f"Orders/{path}" in message
    assert expected in message
    assert got in message
    assert resp.json()["code"] == 400
    assert await _invocations(rt) == []  # refused before anything was journaled


async def test_pydantic_model_input_is_validated_at_the_ingress(rt) -> None:
    async with rt.http() as http:
        bad = await http.post("/Orders/k/customer", json={"name": "Ada", "age": "old"})
        good = await http.post("/Orders/k/customer", json={"name": "Ada", "age": 36})
    assert bad.status_code == 400
    assert "Orders/customer" in bad.json()["message"] and "age" in bad.json()["message"]
    assert good.status_code == 200 and good.json() == "Ada"


async def test_a_refused_input_does_not_block_the_key(rt) -> None:
    async with rt.http() as http:
        assert (await http.post("/Orders/k/place", json="abc")).status_code == 400
        resp = await http.post("/Orders/k/place", json=3)
    assert resp.status_code == 200 and resp.json() == "placed 3"


@pytest.mark.parametrize(("path", "body", "out"), [
    ("place", 7, "placed 7"),
    ("sized", None, "None"),
    ("sized", "l", "l"),
    ("lines", [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 3}], 5),
    ("anything", {"any": ["thing", 1]}, {"any": ["thing", 1]}),
    ("unhinted", "whatever", "whatever"),
    ("tags", {"a": 1, "b": 2.5}, 2),
])
async def test_input_that_fits_is_accepted(rt, path, body, out) -> None:
    async with rt.http() as http:
        resp = await http.post(f"/Orders/k/{path}", json=body)
    assert resp.status_code == 200, resp.text
    if path == "sized" and body == "l":
        assert resp.json() == "Size.LARGE" or resp.json() == "l"
    else:
        assert resp.json() == out


async def test_call_argument_is_checked_in_the_caller(rt) -> None:
    out = await rt.call("Caller/bad_call", "abc")
    assert out.startswith("400 ")
    assert "Orders/place" in out and "int" in out and 'a string "abc"' in out
    assert runs.get("place", 0) == 0
    assert await rt.call("Caller/bad_call", 5) == "called"


async def test_send_argument_is_checked_in_the_caller(rt) -> None:
    out = await rt.call("Caller/bad_send")
    assert out.startswith("400 ") and "Orders/place" in out and "an object" in out


async def test_generic_call_with_bad_bytes_fails_terminally_in_the_callee(rt) -> None:
    out = await rt.call("Caller/bad_generic_call")
    assert out.startswith("400 ") and "Orders/place" in out and 'a string "abc"' in out
    assert runs.get("place", 0) == 0


async def test_result_json_cannot_encode_fails_once_and_clearly(rt) -> None:
    async with rt.http() as http:
        resp = await http.post("/Orders/k/returns_set")
    assert resp.status_code == 500
    assert resp.json()["message"] == ("Orders/returns_set returned a set, which JSON cannot encode; "
                                      "return a list, or set an output serde")
    if not rt.options.always_replay:
        assert runs["returns_set"] == 1  # terminal: not retried


async def test_nested_unencodable_value_is_located(rt) -> None:
    with pytest.raises(TerminalError) as e:
        await rt.call("Orders/k/returns_nested_object")
    assert "Orders/returns_nested_object returned a dict holding an object at ['ok'][1]" in e.value.message


async def test_step_result_json_cannot_encode_is_a_terminal_step_failure(rt) -> None:
    out = await rt.call("Orders/k/step_returns_set")
    assert out == ("caught: run 'collect' returned a set, which JSON cannot encode; return a list, or pass a "
                   "serde in RunOptions")


async def test_state_value_json_cannot_encode_fails_terminally(rt) -> None:
    with pytest.raises(TerminalError) as e:
        await rt.call("Orders/k/stores_set")
    assert e.value.message == ("ctx.set('tags') got a set, which JSON cannot encode; store a list, or pass a serde "
                               "to ctx.set")


async def test_terminal_error_with_a_non_string_message_is_terminal(rt) -> None:
    async with rt.http() as http:
        resp = await http.post("/Orders/k/raises_odd_terminal")
    assert resp.status_code == 422
    assert resp.json()["message"] == str(["not", "a", "string"])
    if not rt.options.always_replay:
        assert runs["raises_odd_terminal"] == 1
    assert TerminalError(object()).message.startswith("<object object at")


def test_syntax_error_in_the_app_file_is_one_line(tmp_path) -> None:
    app_file = tmp_path / "broken_app.py"
    app_file.write_text("import durably\n\ndef f(:\n    pass\n")
    result = CliRunner().invoke(cli, ["serve", str(app_file), "--in-memory"])
    assert result.exit_code != 0
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert f"{app_file}:3" in lines[0] and "SyntaxError" in lines[0]
    assert "Traceback" not in result.output


# ---- the JSON type check agrees with pydantic's strict JSON validation on plain hints ----

PLAIN_HINTS: list[Any] = [int, float, str, bool, int | None, list[int], dict[str, float], tuple[int, str],
                          Literal["a", "b"], list[dict[str, list[int]]], Literal[1, True], list[str] | str]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(hint=st.sampled_from(PLAIN_HINTS), value=json_values)
def test_json_type_check_matches_pydantic_strict(hint: Any, value: Any) -> None:
    try:
        pydantic.TypeAdapter(hint).validate_json(json.dumps(value), strict=True)
        expected = True
    except pydantic.ValidationError:
        expected = False
    try:
        check_json(hint, value)
        ours = True
    except Mismatch:
        ours = False
    assert ours == expected, (hint, value)


class _Req(TypedDict):
    name: str
    delayMillis: int | None
    type: Literal["go"]


_typed = durably.Service("TypedDictInput")


@_typed.handler()
async def typed(ctx: durably.Context, req: _Req) -> str:
    return req["name"]


async def test_typeddict_keys_may_be_absent_but_present_ones_must_fit(runtime) -> None:
    # As restate-sdk: a TypedDict is a plain dict at runtime, and Restate's own suite omits null fields.
    async with runtime(durably.app(services=[_typed])) as rt, rt.http() as http:
        ok = await http.post("/TypedDictInput/typed", json={"name": "Ada"})
        bad = await http.post("/TypedDictInput/typed", json={"name": "Ada", "delayMillis": "soon"})
    assert (ok.status_code, ok.json()) == (200, "Ada")
    assert bad.status_code == 400 and "delayMillis" in bad.json()["message"]


misuse = durably.Service("Misuse")


@misuse.handler()
async def args_in_place_of_options(ctx: durably.Context, who: str) -> str:
    return await ctx.run_typed("greet", lambda w: f"hi {w}", who)  # type: ignore[arg-type]


async def test_closure_argument_in_place_of_run_options_is_named() -> None:
    policy = durably.InvocationRetryPolicy(max_attempts=1, on_max_attempts="kill")
    async with TestRuntime(durably.app(services=[misuse]), retry_policy=policy) as rt:
        async with rt.http() as http:
            resp = await http.post("/Misuse/args_in_place_of_options", json="ada")
    assert resp.status_code >= 500
    message = resp.json()["message"]
    assert "the third argument is RunOptions or None, got str" in message
    assert "ctx.run_typed('greet', fn, RunOptions(), arg)" in message
