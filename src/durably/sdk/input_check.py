"""Checks a handler's input against its type hint before anything is journaled.

A handler hinted `amount: int` that receives `"abc"` would otherwise start, fail with a TypeError deep in
user code, and be retried by its retry policy while every later call to the same object key queues behind
it. The input is the caller's mistake, so it is refused up front: at the ingress with 400, and for a
`ctx.*_call` with a TerminalError in the caller.

Plain hints are checked as JSON types (`int` wants a JSON integer, `list[str]` an array of strings,
`Optional[X]` also accepts null, ...). Models are validated by their own library (pydantic, msgspec) or,
for dataclasses, field by field. `Any`, `object`, no hint and types this module does not know accept
anything, as before.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from typing import Any

from durably.sdk.serde import DefaultSerde, from_jsonable, is_msgspec_struct, is_pydantic

_NOT_CHECKED = (Any, object)
_MAX_DEPTH = 32


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _describe(value: Any) -> str:
    """What was received, in JSON terms, with a short excerpt."""
    kind = ("null" if value is None else "a boolean" if isinstance(value, bool) else
            "an integer" if isinstance(value, int) else "a number" if isinstance(value, float) else
            "a string" if isinstance(value, str) else "an array" if isinstance(value, list) else
            "an object" if isinstance(value, dict) else f"a {type(value).__name__}")
    if value is None:
        return kind
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


class Mismatch(Exception):
    """Where a value differs from its hint: `path` (e.g. "[2]['name']"), expected type, what was there."""

    def __init__(self, path: str, expected: str, got: str) -> None:
        super().__init__(f"{path}: expected {expected}, got {got}")
        self.path = path
        self.expected = expected
        self.got = got


def check_json(hint: Any, value: Any, path: str = "", depth: int = 0) -> None:
    """Raise Mismatch if a decoded JSON value does not fit the type hint."""
    if hint in _NOT_CHECKED or hint is None or depth > _MAX_DEPTH or isinstance(hint, typing.TypeVar):
        return
    supertype = getattr(hint, "__supertype__", None)
    if supertype is not None:  # typing.NewType("UserId", str) is checked as str
        check_json(supertype, value, path, depth + 1)
        return
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        check_json(args[0], value, path, depth + 1)
        return
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            try:
                check_json(arm, value, path, depth + 1)
                return
            except Mismatch:
                continue
        raise Mismatch(path, _type_name(hint), _describe(value))
    if origin is typing.Literal:
        # Compared with the type too: JSON `1` is not `Literal[True]`, nor `true` `Literal[1]`.
        if not any(type(a) is type(value) and a == value for a in args):
            raise Mismatch(path, " or ".join(json.dumps(a) for a in args), _describe(value))
        return
    if hint is type(None):
        if value is not None:
            raise Mismatch(path, "null", _describe(value))
        return
    if hint is bool:
        if not isinstance(value, bool):
            raise Mismatch(path, "bool", _describe(value))
        return
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise Mismatch(path, "int", _describe(value))
        return
    if hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise Mismatch(path, "float", _describe(value))
        return
    if hint is str:
        if not isinstance(value, str):
            raise Mismatch(path, "str", _describe(value))
        return
    container = origin or hint
    if container in (list, set, frozenset, tuple) or container in (
            typing.Sequence, typing.MutableSequence, typing.AbstractSet) or _is_abc(container, "Sequence", "Set"):
        if not isinstance(value, list):
            raise Mismatch(path, _type_name(hint), _describe(value))
        if container is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise Mismatch(path, _type_name(hint), f"an array of {len(value)} items")
            for i, (arm, item) in enumerate(zip(args, value, strict=True)):
                check_json(arm, item, f"{path}[{i}]", depth + 1)
            return
        item_hint = args[0] if args else Any
        for i, item in enumerate(value):
            check_json(item_hint, item, f"{path}[{i}]", depth + 1)
        return
    if container is dict or _is_abc(container, "Mapping"):
        if not isinstance(value, dict):
            raise Mismatch(path, _type_name(hint), _describe(value))
        value_hint = args[1] if len(args) == 2 else Any
        for k, v in value.items():
            check_json(value_hint, v, f"{path}[{k!r}]", depth + 1)
        return
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = [m.value for m in hint]
        if value not in allowed:
            raise Mismatch(path, f"{hint.__name__} (one of {', '.join(json.dumps(a, default=str) for a in allowed)})",
                           _describe(value))
        return
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        _check_fields(hint, value, path, depth, {f.name: f for f in dataclasses.fields(hint)},
                      lambda f: f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        return
    if typing.is_typeddict(hint):
        # Keys present are checked, absent ones are not: restate-sdk hands a TypedDict input over as the plain
        # dict it is, and the clients of Restate's own test suite omit null and discriminator fields (its
        # Proxy and command-interpreter services declare them), so requiring them refuses what Restate takes.
        _check_fields(hint, value, path, depth, {k: k for k in typing.get_type_hints(hint)}, lambda k: False)
        return
    # A class this module does not know (datetime, a user's own type...): its serde decides.


def _is_abc(container: Any, *names: str) -> bool:
    import collections.abc as abc

    return any(container is getattr(abc, n) or container is getattr(abc, "Mutable" + n, None) for n in names)


def _check_fields(hint: Any, value: Any, path: str, depth: int, fields: dict[str, Any],
                  is_required: typing.Callable[[Any], bool]) -> None:
    if not isinstance(value, dict):
        raise Mismatch(path, f"{hint.__name__} (a JSON object)", _describe(value))
    try:
        hints = typing.get_type_hints(hint)
    except Exception:  # unresolvable forward references: check presence only
        hints = {}
    for name, f in fields.items():
        if name not in value:
            if is_required(f):
                raise Mismatch(f"{path}[{name!r}]", _type_name(hints.get(name, Any)), "nothing (the field is missing)")
            continue
        check_json(hints.get(name, Any), value[name], f"{path}[{name!r}]", depth + 1)


def is_checked(hint: Any) -> bool:
    """Whether inputs for this hint are checked at all (cheap test for the hot path)."""
    return hint is not None and hint not in _NOT_CHECKED


class BadInput(ValueError):
    """The input does not fit the handler: the message names the handler, the expected type and the value."""


def decode_input(target: str, hint: Any, serde: Any, body: bytes) -> Any:
    """Decode `body` for the handler `target` ("Service/handler"), checked against its type hint.

    Raises BadInput saying why it does not fit. Models validate themselves (pydantic, msgspec); a custom
    serde's format is its own business, so only its decoding can fail.
    """
    if not body:
        return None  # no input is None, as in restate-sdk
    plain = isinstance(serde, DefaultSerde) and is_checked(hint) and not (
        is_pydantic(serde.type_hint) or is_msgspec_struct(serde.type_hint))
    try:
        if not plain:
            return serde.deserialize(body)
        data = json.loads(body)
        check_json(hint, data)
        return from_jsonable(hint, data)  # dataclasses are built: their own checks (__post_init__) run too
    except Mismatch as m:
        if not m.path:
            raise BadInput(f"{target} expects {m.expected} as input; got {m.got}") from None
        raise BadInput(f"{target} expects {_type_name(hint)} as input; got {m.got} at {m.path} where {m.expected} "
                       "is expected") from None
    except Exception as e:
        detail = _pydantic_detail(e)
        if detail is not None:
            raise BadInput(f"{target} expects {_type_name(serde.type_hint)} as input: {detail}") from None
        raise BadInput(f"{target} cannot decode its input{_as(hint)}: {_one_line(e)}") from None


def _pydantic_detail(e: Exception) -> str | None:
    """A pydantic ValidationError in one line: what is wrong, where, and what was there."""
    errors = getattr(e, "errors", None)
    if type(e).__name__ != "ValidationError" or not callable(errors):
        return None
    try:
        parts = []
        for err in errors()[:3]:
            loc = "".join(f"[{p!r}]" for p in err.get("loc", ()))
            where = f" at {loc}" if loc else ""
            parts.append(f"{err.get('msg', 'invalid')}{where} (got {_describe(err.get('input'))})")
        more = len(errors()) - 3
        return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
    except Exception:  # an unexpected errors() shape: fall back to str(e)
        return None


def input_problem(target: str, hint: Any, serde: Any, body: bytes) -> str | None:
    """Why `body` is not a valid input for the handler `target`, or None if it is (see `decode_input`)."""
    try:
        decode_input(target, hint, serde, body)
    except BadInput as e:
        return str(e)
    return None


def _as(hint: Any) -> str:
    return f" as {_type_name(hint)}" if is_checked(hint) else ""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 500 else text[:497] + "..."
