"""Remote deployments: services written with any Restate SDK, discovered over HTTP and driven by the engine.

`POST /deployments {"uri": ...}` on the admin API runs discovery (`GET {uri}/discover`), and every service of
the manifest becomes invocable through Durably's ingress like an embedded one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import httpx

from durably.sdk.options import InvocationRetryPolicy
from durably.sdk.serde import BytesSerde
from durably.sdk.service import Handler, ServiceDefinition
from durably.server.remote.manifest import ManifestError, check_manifest, read_capped

log = logging.getLogger("durably.deployments")

MANIFEST_ACCEPT = ", ".join(f"application/vnd.restate.endpointmanifest.v{v}+json" for v in (1, 2, 3, 4, 5))
SUPPORTED_PROTOCOL = (5, 6, 7)  # v7: scopes, limit keys, future-tree suspensions, run-completion acks
# Discovery as a whole (connect, headers, the whole manifest): a deployment that trickles its answer is cut off.
DISCOVERY_DEADLINE_S = 60.0
# Of an error answer's body, this much is read (for the log); the rest is left unread.
LOGGED_BODY_BYTES = 64 * 1024


async def _head(resp: httpx.Response) -> str:
    head = b""
    async for chunk in resp.aiter_bytes():
        head += chunk
        if len(head) >= LOGGED_BODY_BYTES:
            break
    return head[:LOGGED_BODY_BYTES].decode("utf-8", "replace")


def _reason(status: int, signed: bool) -> str:
    """A short reason for a failed discovery, in place of the target's body."""
    if status in (401, 403):
        if signed:
            return "(refused: is this server's public key in the deployment's identity_keys?)"
        return ("(refused: the deployment may require signed requests; start durably serve with "
                "--request-identity-key)")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "unexpected status"
    return f"({phrase}; the server log has the response)"


class DiscoveryError(Exception):
    """Discovery failed; the message says why, for the operator."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Deployment:
    """A registered remote deployment."""

    id: str
    uri: str
    use_http_11: bool
    additional_headers: dict[str, str]
    protocol_mode: str  # BIDI_STREAM or REQUEST_RESPONSE
    protocol_version: int
    manifest: dict[str, Any]
    created_at: int
    services: list[str] = field(default_factory=list)

    @property
    def bidi(self) -> bool:
        """Whether invocations stream both ways (HTTP/2) rather than request/response."""
        return self.protocol_mode == "BIDI_STREAM" and not self.use_http_11

    def to_json(self) -> dict[str, Any]:
        """As the admin API shows it."""
        return {"id": self.id, "uri": self.uri, "protocol_type": "RequestResponse" if not self.bidi else "BidiStream",
                "use_http_11": self.use_http_11, "additional_headers": self.additional_headers,
                "min_protocol_version": self.manifest.get("minProtocolVersion"),
                "max_protocol_version": self.manifest.get("maxProtocolVersion"),
                "services": [{"name": s} for s in self.services], "created_at": self.created_at}


class RemoteService(ServiceDefinition):
    """A service that lives in a remote deployment."""

    def __init__(self, name: str, kind: str, deployment: Deployment, **options: Any) -> None:
        super().__init__(name, **options)
        self.kind = kind  # type: ignore[assignment]
        self.deployment = deployment


def _td(ms: Any) -> timedelta | None:
    return None if ms is None else timedelta(milliseconds=int(ms))


def _retry_policy(spec: dict[str, Any]) -> InvocationRetryPolicy | None:
    if not any(k.startswith("retryPolicy") for k in spec):
        return None
    on_max = spec.get("retryPolicyOnMaxAttempts")
    return InvocationRetryPolicy(
        initial_interval=_td(spec.get("retryPolicyInitialInterval")),
        exponentiation_factor=spec.get("retryPolicyExponentiationFactor"),
        max_interval=_td(spec.get("retryPolicyMaxInterval")),
        max_attempts=spec.get("retryPolicyMaxAttempts"),
        on_max_attempts=on_max.lower() if isinstance(on_max, str) else None,
    )


def _state_options(spec: dict[str, Any]) -> dict[str, Any]:
    """A manifest's `enableLazyState` and (v5) `eagerStateKeysWhitelist` as state_preload options."""
    whitelist = spec.get("eagerStateKeysWhitelist")
    if whitelist is None:
        return {"enable_lazy_state": spec.get("enableLazyState")}
    if not isinstance(whitelist, list) or not all(isinstance(k, str) for k in whitelist):
        raise DiscoveryError(f"the deployment's manifest is malformed: eagerStateKeysWhitelist of "
                             f"{spec.get('name')!r} must be a list of state names")
    return {"state_preload": whitelist}


def services_from_manifest(manifest: dict[str, Any], deployment: Deployment) -> list[RemoteService]:
    """Build service definitions from a discovery manifest (raises DiscoveryError if it is malformed)."""
    out = []
    try:
        for spec in manifest["services"]:
            kind = {"SERVICE": "service", "VIRTUAL_OBJECT": "object", "WORKFLOW": "workflow"}[spec["ty"]]
            svc = RemoteService(
                spec["name"], kind, deployment, description=spec.get("documentation"), metadata=spec.get("metadata"),
                inactivity_timeout=_td(spec.get("inactivityTimeout")), abort_timeout=_td(spec.get("abortTimeout")),
                journal_retention=_td(spec.get("journalRetention")),
                idempotency_retention=_td(spec.get("idempotencyRetention")),
                ingress_private=spec.get("ingressPrivate"), invocation_retry_policy=_retry_policy(spec),
                **_state_options(spec),
            )
            for h in spec["handlers"]:
                ty = h.get("ty")
                hkind = {"EXCLUSIVE": "exclusive", "SHARED": "shared", "WORKFLOW": "workflow", None: None}[ty]
                if hkind is None and kind == "object":
                    hkind = "exclusive"
                if hkind is None and kind == "workflow":
                    hkind = "workflow"
                inp = h.get("input", {"contentType": "*/*", "required": False})
                outp = h.get("output", {"contentType": "application/json"})
                svc.handlers[h["name"]] = Handler(
                    service=svc, name=h["name"], fn=None, kind=hkind,  # type: ignore[arg-type]
                    accept=inp.get("contentType", "*/*"), content_type=outp.get("contentType", "application/json"),
                    input_serde=BytesSerde(), output_serde=BytesSerde(),
                    takes_input=bool(inp), returns_output="contentType" in outp,
                    documentation=h.get("documentation"), metadata=h.get("metadata"),
                    inactivity_timeout=_td(h.get("inactivityTimeout")), abort_timeout=_td(h.get("abortTimeout")),
                    journal_retention=_td(h.get("journalRetention")),
                    idempotency_retention=_td(h.get("idempotencyRetention")),
                    workflow_retention=_td(h.get("workflowCompletionRetention")),
                    ingress_private=h.get("ingressPrivate"), **_state_options(h),
                    invocation_retry_policy=_retry_policy(h),
                )
            out.append(svc)
    except (KeyError, TypeError) as e:
        raise DiscoveryError(f"the deployment's manifest is malformed: missing or bad {e}") from None
    return out


async def discover(uri: str, use_http_11: bool, headers: dict[str, str],
                   signer: Any = None) -> tuple[dict[str, Any], str, int]:
    """Fetch and check a deployment's manifest; returns (manifest, protocol mode, negotiated version).

    With a `signer` (a RequestSigner) the request carries Restate's identity headers.
    """
    url = uri.rstrip("/") + "/discover"
    sent = {"accept": MANIFEST_ACCEPT}
    if signer is not None:
        sent.update(signer.headers(urlsplit(url).path))
    sent.update(headers)
    try:
        async with asyncio.timeout(DISCOVERY_DEADLINE_S), \
                httpx.AsyncClient(http1=use_http_11, http2=not use_http_11, timeout=30) as client, \
                client.stream("GET", url, headers=sent) as resp:
            if resp.status_code != 200:
                # The body stays out of the answer: the caller of the admin API need not see what the target
                # serves (an internal page, a stack trace). The operator finds its head in the server's log.
                head = await _head(resp)
                log.warning("discovery at %s answered %d: %r", url, resp.status_code, head[:500])
                raise DiscoveryError(f"discovery at {url} answered {resp.status_code} "
                                     f"{_reason(resp.status_code, signer is not None)}", 502)
            content = await read_capped(resp.aiter_bytes(), resp.headers.get("content-length"))
    except ManifestError as e:
        raise DiscoveryError(str(e), 400) from None
    except TimeoutError:
        raise DiscoveryError(f"discovery at {url} did not answer within {DISCOVERY_DEADLINE_S:.0f} s", 502) from None
    except httpx.HTTPError as e:
        raise DiscoveryError(f"cannot reach the deployment at {uri}: {e!r}", 502) from None
    try:
        manifest = json.loads(content)
    except (ValueError, RecursionError):
        raise DiscoveryError(f"discovery at {url} did not return JSON", 502) from None
    try:
        check_manifest(manifest)
    except ManifestError as e:
        raise DiscoveryError(str(e), 400) from None
    lo, hi = manifest.get("minProtocolVersion", 1), manifest.get("maxProtocolVersion", 1)
    version = min(hi, max(SUPPORTED_PROTOCOL))
    if version < lo or version < min(SUPPORTED_PROTOCOL):
        raise DiscoveryError(f"the deployment speaks protocol v{lo}..v{hi}; Durably speaks v5..v7")
    mode = manifest.get("protocolMode", "BIDI_STREAM" if not use_http_11 else "REQUEST_RESPONSE")
    return manifest, mode, version
