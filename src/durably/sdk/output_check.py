"""Encoding a handler's result, a run's result or a state value, with an error that says what to change.

`json` reports a set as "Object of type set is not JSON serializable" and an arbitrary object as a
"Circular reference"; retried, either fails the same way forever. A value that cannot be encoded is the
code's mistake, so it fails terminally with a message naming the handler, the value's type and the fix.
"""

from __future__ import annotations

from typing import Any

from durably.sdk.errors import TerminalError
from durably.sdk.serde import Serde, UnencodableValue

# What to return instead of a value JSON cannot hold.
_FIXES = {
    "set": "a list",
    "frozenset": "a list",
    "bytes": "a str (e.g. base64)",
    "bytearray": "a str (e.g. base64)",
    "datetime": "an ISO 8601 str",
    "date": "an ISO 8601 str",
    "Decimal": "a str or a float",
    "UUID": "a str",
}


def _a(name: str) -> str:
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


def unencodable_message(subject: str, value: Any, error: BaseException, serde_hint: str,
                        verb: str = "return") -> str:
    """`subject` is e.g. "Orders/place returned"; `serde_hint` how to set a serde for this kind of value;
    `verb` what the user does with a better value ("return", "pass")."""
    if isinstance(error, UnencodableValue):
        culprit = error.type_name.split(" ", 1)[0]
        fix = f"{verb} " + _FIXES.get(culprit, "a dict, a list, a dataclass or a pydantic model")
        if error.path:
            what = f"{_a(type(value).__name__)} holding {_a(error.type_name)} at {error.path}"
            fix += " there"
        else:
            what = _a(error.type_name)
        return f"{subject} {what}, which JSON cannot encode; {fix}, or {serde_hint}"
    return f"{subject} {_a(type(value).__name__)} that its serde could not encode: {error!r}"


def encode_or_fail(serde: Serde[Any], value: Any, subject: str, serde_hint: str, verb: str = "return") -> bytes:
    """`serde.serialize(value)`, or a TerminalError (500) that says what was wrong and how to fix it."""
    try:
        return serde.serialize(value)
    except Exception as e:
        raise TerminalError(unencodable_message(subject, value, e, serde_hint, verb), 500) from None
