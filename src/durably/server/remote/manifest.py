"""Checking a deployment's discovery manifest before anything of it is used.

The deployment is another program, possibly wrong or hostile: its answer is read up to `MAX_MANIFEST_BYTES`
(the reading stops there, whatever the declared length) and every field Durably reads is checked for its
type and form. A fault is a `ManifestError` whose message names the field (`services[0].name`) and what is
wrong with it; the admin API answers it 400, as Restate does for a deployment it cannot register.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from durably.server.process.limits import MAX_MANIFEST_BYTES

# Service and handler names travel in URL paths (`/Service/key/handler`) and in invocation targets: letters,
# digits, '_', '-' and '.', starting with a letter or '_'.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,254}")
NAME_RULE = "letters, digits, '_', '-' and '.', starting with a letter or '_', at most 255 characters"

SERVICE_TYPES = ("SERVICE", "VIRTUAL_OBJECT", "WORKFLOW")
HANDLER_TYPES = ("EXCLUSIVE", "SHARED", "WORKFLOW")
PROTOCOL_MODES = ("BIDI_STREAM", "REQUEST_RESPONSE")
DURATIONS = ("inactivityTimeout", "abortTimeout", "journalRetention", "idempotencyRetention",
             "retryPolicyInitialInterval", "retryPolicyMaxInterval")
HANDLER_DURATIONS = (*DURATIONS, "workflowCompletionRetention")
FLAGS = ("ingressPrivate", "enableLazyState")


class ManifestError(ValueError):
    """The manifest cannot be used; the message says which field and why."""


def too_large_message() -> str:
    """The refusal of a manifest over the cap."""
    return (f"the deployment's manifest is larger than {MAX_MANIFEST_BYTES} bytes, the limit of a discovery "
            "answer; reading stopped there")


async def read_capped(chunks: AsyncIterator[bytes], declared: str | None) -> bytes:
    """The body of a discovery answer, or ManifestError as soon as it is known to pass the cap."""
    if declared is not None and declared.strip().isdigit() and int(declared) > MAX_MANIFEST_BYTES:
        raise ManifestError(too_large_message())
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(too_large_message())
        parts.append(chunk)
    return b"".join(parts)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _fault(where: str, what: str) -> ManifestError:
    return ManifestError(f"the deployment's manifest is malformed: {where}: {what}")


def _integer(obj: dict[str, Any], key: str, where: str, minimum: int = 0) -> None:
    value = obj.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fault(f"{where}{key}", f"must be an integer >= {minimum}, not {_kind(value)} {value!r}"[:300])


def _duration(obj: dict[str, Any], key: str, where: str) -> None:
    value = obj.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fault(f"{where}{key}", f"must be a whole number of milliseconds, not {_kind(value)} {value!r}"[:300])


def _optional(obj: dict[str, Any], key: str, where: str, types: type | tuple[type, ...], what: str) -> None:
    value = obj.get(key)
    if value is None:
        return
    allowed = types if isinstance(types, tuple) else (types,)
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        raise _fault(f"{where}{key}", f"must be {what}, not {_kind(value)}")


def _metadata(obj: dict[str, Any], where: str) -> None:
    value = obj.get("metadata")
    if value is None:
        return
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _fault(f"{where}metadata", "must be an object of strings")


def _name(obj: dict[str, Any], where: str, what: str) -> str:
    if "name" not in obj:
        raise _fault(f"{where}name", "is missing")
    name = obj["name"]
    if not isinstance(name, str):
        raise _fault(f"{where}name", f"must be a string, not {_kind(name)}")
    if not NAME.fullmatch(name):
        raise _fault(f"{where}name", f"{what} name {name[:100]!r} is not valid ({NAME_RULE})")
    return name


def _common(obj: dict[str, Any], where: str, durations: tuple[str, ...]) -> None:
    for key in durations:
        _duration(obj, key, where)
    for key in FLAGS:
        _optional(obj, key, where, bool, "true or false")
    _optional(obj, "documentation", where, str, "a string")
    _metadata(obj, where)
    _integer(obj, "retryPolicyMaxAttempts", where)
    _optional(obj, "retryPolicyExponentiationFactor", where, (int, float), "a number")
    _optional(obj, "retryPolicyOnMaxAttempts", where, str, "a string")


def _handler(h: Any, where: str, service: str) -> str:
    if not isinstance(h, dict):
        raise _fault(where.rstrip("."), f"must be an object, not {_kind(h)}")
    name = _name(h, where, f"service '{service}': handler")
    ty = h.get("ty")
    if ty is not None and ty not in HANDLER_TYPES:
        raise _fault(f"{where}ty", f"must be one of {', '.join(HANDLER_TYPES)}, not {str(ty)[:50]!r}")
    for key in ("input", "output"):
        part = h.get(key)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise _fault(f"{where}{key}", f"must be an object, not {_kind(part)}")
        _optional(part, "contentType", f"{where}{key}.", str, "a string")
    _common(h, where, HANDLER_DURATIONS)
    return name


def _service(spec: Any, where: str) -> str:
    if not isinstance(spec, dict):
        raise _fault(where.rstrip("."), f"must be an object, not {_kind(spec)}")
    name = _name(spec, where, "service")
    ty = spec.get("ty")
    if ty not in SERVICE_TYPES:
        raise _fault(f"{where}ty", f"must be one of {', '.join(SERVICE_TYPES)}, not {str(ty)[:50]!r}")
    handlers = spec.get("handlers")
    if not isinstance(handlers, list):
        raise _fault(f"{where}handlers", f"must be a list, not {_kind(handlers)}"
                     if "handlers" in spec else "is missing")
    seen: set[str] = set()
    for i, h in enumerate(handlers):
        hname = _handler(h, f"{where}handlers[{i}].", name)
        if hname in seen:
            raise _fault(f"{where}handlers[{i}].name", f"handler '{hname}' of service '{name}' is listed twice")
        seen.add(hname)
    _common(spec, where, DURATIONS)
    return name


def check_manifest(manifest: Any) -> dict[str, Any]:
    """The manifest, if every field Durably uses has the right type and form; else ManifestError."""
    if not isinstance(manifest, dict):
        raise ManifestError(f"the deployment's manifest must be a JSON object, not {_kind(manifest)}")
    for key in ("minProtocolVersion", "maxProtocolVersion"):
        _integer(manifest, key, "", minimum=1)
    mode = manifest.get("protocolMode")
    if mode is not None and mode not in PROTOCOL_MODES:
        raise _fault("protocolMode", f"must be one of {', '.join(PROTOCOL_MODES)}, not {str(mode)[:50]!r}")
    if "services" not in manifest:
        raise _fault("services", "is missing")
    services = manifest["services"]
    if not isinstance(services, list):
        raise _fault("services", f"must be a list, not {_kind(services)}")
    seen: set[str] = set()
    for i, spec in enumerate(services):
        name = _service(spec, f"services[{i}].")
        if name in seen:
            raise _fault(f"services[{i}].name", f"service '{name}' is listed twice")
        seen.add(name)
    return manifest
