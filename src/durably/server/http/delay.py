"""Parsing of the `delay` query parameter on sends, in the formats Restate's ingress accepts."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {
    "ns": 1e-9, "nsec": 1e-9, "us": 1e-6, "usec": 1e-6, "µs": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
}
_HUMAN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zµ]+)\s*", re.IGNORECASE)
_ISO = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


def parse_delay(text: str) -> timedelta:
    """Parse `10s`, `500ms`, `1h 4m`, ISO-8601 `PT10S`, or a bare integer meaning milliseconds.

    Raises ValueError with a message fit for the caller on anything else (years and months included:
    their length is ambiguous).
    """
    t = text.strip()
    if not t:
        raise ValueError("empty delay")
    if t.isdigit():
        return timedelta(milliseconds=int(t))
    if t[0] in "pP":
        match = _ISO.match(t)
        if not match or t.upper() in ("P", "PT"):
            raise ValueError(f"invalid ISO-8601 duration {text!r} (years and months are not accepted)")
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
        return timedelta(weeks=parts.get("w", 0), days=parts.get("d", 0), hours=parts.get("h", 0),
                         minutes=parts.get("m", 0), seconds=parts.get("s", 0))
    total = 0.0
    pos = 0
    while pos < len(t):
        match = _HUMAN.match(t, pos)
        if not match:
            raise ValueError(f"invalid delay {text!r}: use e.g. 10s, 500ms, '1h 4m' or PT10S")
        unit = match.group(2).lower()
        if unit not in _UNITS:
            raise ValueError(f"invalid delay {text!r}: unknown unit {match.group(2)!r}")
        total += float(match.group(1)) * _UNITS[unit]
        pos = match.end()
    return timedelta(seconds=total)
