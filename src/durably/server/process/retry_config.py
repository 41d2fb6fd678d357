"""The server-wide default invocation retry policy, configured as Restate configures it.

Restate reads `[default-retry-policy]` from its config or from `RESTATE_DEFAULT_RETRY_POLICY__<FIELD>`
environment variables (`MAX_ATTEMPTS`, `ON_MAX_ATTEMPTS`, `INITIAL_INTERVAL`, `MAX_INTERVAL`,
`EXPONENTIATION_FACTOR`). `durably serve` accepts the same variables, the same names with a `DURABLY_`
prefix (which win over `RESTATE_`), and `--default-retry-*` flags (which win over both). Per-service and
per-handler policies still take precedence over whatever is configured here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from durably.sdk.options import DEFAULT_INVOCATION_RETRY_POLICY, InvocationRetryPolicy
from durably.server.http.delay import parse_delay

FIELDS = ("max_attempts", "on_max_attempts", "initial_interval", "max_interval", "exponentiation_factor")
_PREFIXES = ("RESTATE_DEFAULT_RETRY_POLICY__", "DURABLY_DEFAULT_RETRY_POLICY__")  # later wins


class RetryConfigError(ValueError):
    """A retry setting that cannot be understood (the message names the setting and what is accepted)."""


def _parse(name: str, text: str, where: str) -> Any:
    t = text.strip()
    try:
        if name == "max_attempts":
            if t.lower() == "unlimited":
                return "unlimited"
            n = int(t)
            if n < 1:
                raise ValueError("must be at least 1")
            return n
        if name == "on_max_attempts":
            if t.lower() not in ("pause", "kill"):
                raise ValueError("must be 'pause' or 'kill'")
            return t.lower()
        if name == "exponentiation_factor":
            f = float(t)
            if f < 1.0:
                raise ValueError("must be at least 1.0")
            return f
        return parse_delay(t)
    except ValueError as e:
        raise RetryConfigError(f"{where}={text!r}: {e}") from None


def settings_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The retry settings found in environment variables, parsed (field name -> value)."""
    found: dict[str, Any] = {}
    for prefix in _PREFIXES:
        for name in FIELDS:
            var = prefix + name.upper()
            if var in env and env[var].strip():
                found[name] = _parse(name, env[var], var)
    return found


def parse_flag(name: str, text: str) -> Any:
    """Parse the value of a `--default-retry-*` flag."""
    return _parse(name, text, "--default-retry-" + name.replace("_", "-"))


def default_retry_policy(settings: Mapping[str, Any],
                         base: InvocationRetryPolicy = DEFAULT_INVOCATION_RETRY_POLICY) -> InvocationRetryPolicy:
    """Restate's defaults with the given settings applied; `max_attempts="unlimited"` retries forever."""
    changes: dict[str, Any] = {}
    for name, value in settings.items():
        if name not in FIELDS:
            raise RetryConfigError(f"unknown retry setting {name!r}; known: {', '.join(FIELDS)}")
        if name == "max_attempts" and value == "unlimited":
            value = None  # the engine reads a missing limit as "retry forever"
        elif isinstance(value, str) and name != "on_max_attempts":
            value = _parse(name, value, name)
        if name in ("initial_interval", "max_interval") and not isinstance(value, timedelta):
            raise RetryConfigError(f"{name} must be a duration")
        changes[name] = value
    return dataclasses.replace(base, **changes)
