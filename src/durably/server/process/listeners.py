"""What `durably serve` puts in front of its two listeners: bind addresses, TLS, bearer tokens, signing.

The ingress (`--host`, default 127.0.0.1) and the admin API (`--admin-host`, default 127.0.0.1) bind
independently, so publishing the ingress does not publish the admin API. See SECURITY.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import ssl
import struct
from typing import Any

import uvicorn

from durably.server.engine.secret_headers import secret_header_set
from durably.server.http.auth import BearerAuth
from durably.server.http.host_check import HostCheck

INGRESS_OPEN_PATHS = frozenset({"/restate/health"})
ADMIN_OPEN_PATHS = frozenset({"/health", "/v2/health", "/v3/health", "/v4/health"})


def security_options(cfg: Any) -> dict[str, Any]:
    """EngineOptions fields: the request signer (if a key file is given) and the secret headers.

    Raises ValueError (KeyFormatError) when the key cannot be used.
    """
    for name, token in (("admin", cfg.admin_token), ("ingress", cfg.ingress_token)):
        if token == "":  # from the flag, DURABLY_<NAME>_TOKEN set but empty, or the config file
            raise ValueError(f"an empty --{name}-token (DURABLY_{name.upper()}_TOKEN, {name}_token in the config "
                             "file) would let everyone in; give a long random one, or unset it for no token")
    signer = None
    if cfg.request_identity_key is not None:
        from durably.protocol.request_identity import RequestSigner  # the crypto libraries only when asked for

        signer = RequestSigner.from_pem_file(cfg.request_identity_key)
    return {"request_signer": signer, "secret_headers": secret_header_set(cfg.secret_headers)}


def tls_options(cfg: Any) -> dict[str, Any]:
    """uvicorn's ssl options for both listeners; ValueError if only one file is given or they do not load."""
    if cfg.tls_cert is None and cfg.tls_key is None:
        return {}
    if cfg.tls_cert is None or cfg.tls_key is None:
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    try:  # uvicorn would only find out in its own task; check here for a clear error at start
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot use the TLS certificate {cfg.tls_cert} with key {cfg.tls_key}: {e}") from None
    return {"ssl_certfile": str(cfg.tls_cert), "ssl_keyfile": str(cfg.tls_key)}


def guarded(ingress: Any, admin: Any, cfg: Any) -> tuple[Any, Any]:
    """The ingress and admin apps, each behind its bearer token when one is configured."""
    if cfg.ingress_token:
        ingress = BearerAuth(ingress, cfg.ingress_token, "ingress", INGRESS_OPEN_PATHS)
    if cfg.admin_token:
        admin = BearerAuth(admin, cfg.admin_token, "admin", ADMIN_OPEN_PATHS, login_path="/ui/login")
    return ingress, admin


def host_checked(ingress: Any, admin: Any, cfg: Any) -> tuple[Any, Any]:
    """The ingress and admin apps behind the Host check (DNS rebinding) where their bind address needs one.

    Outermost, so a rebound name gets 421 before anything else answers (a sign-in form, a 401)."""
    allowed = tuple(cfg.allowed_hosts)
    if HostCheck.needed(cfg.host, allowed):
        ingress = HostCheck(ingress, cfg.host, allowed, "ingress", INGRESS_OPEN_PATHS)
    if HostCheck.needed(cfg.admin_host, allowed):
        admin = HostCheck(admin, cfg.admin_host, allowed, "admin", ADMIN_OPEN_PATHS)
    return ingress, admin


def url(host: str, port: int, cfg: Any) -> str:
    """The base URL of a listener, for the startup line."""
    scheme = "https" if cfg.tls_cert is not None else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def protections(cfg: Any) -> str:
    """What the startup line says about tokens and signing (never the tokens themselves)."""
    parts = []
    if cfg.ingress_token:
        parts.append("ingress token required")
    if cfg.admin_token:
        parts.append("admin token required")
    if cfg.request_identity_key is not None:
        parts.append(f"requests to deployments signed with {cfg.request_identity_key}")
    return "; " + ", ".join(parts) if parts else ""


def listen_tcp(host: str, port: int, shared: bool = False, spread: int = 0) -> socket.socket:
    """A listening TCP socket (`shared`: SO_REUSEPORT, for the partitions' common ingress port; `spread`: the
    number of partition processes listening there, see `spread_by_source_port`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:  # every partition process listens on the ingress port; the kernel spreads the connections
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    if shared and spread > 1:  # once listening: attached before, the socket would not join the others' group
        spread_by_source_port(sock, spread)
    return sock


# Linux's SO_ATTACH_REUSEPORT_CBPF, and the classic BPF instructions the program below uses.
_SO_ATTACH_REUSEPORT_CBPF = 51
_NET = -0x100000  # SKF_NET_OFF: offsets from the IP header
_LD_B_ABS, _LD_H_IND, _LDX_B_MSH, _LDX_IMM = 0x30, 0x48, 0xB1, 0x01
_RSH_K, _MOD_K, _JEQ_K, _JA, _RET_A = 0x74, 0x94, 0x15, 0x05, 0x16


def spread_by_source_port(sock: socket.socket, n: int) -> bool:
    """Spread the connections of a SO_REUSEPORT group over its `n` sockets by the client's source port.

    Without a program the kernel picks a partition by a hash of the connection's addresses, which is random: 32
    connections from one client were measured split 16/16, 12/20, 8/24 and even 32/0 between two partitions, and
    the partition with the most connections is the bottleneck of the whole server. Clients take ephemeral ports in
    sequence (Linux steps them by 2), so (source port / 2) mod n deals a client's connections out in turn; ports
    that come at random are spread at random, as without the program. Newer kernels (6.18 here) step by small
    random even amounts, which this program spreads only as evenly as chance does (32 connections were seen split
    16/16 and 22/10): stateful round-robin would need an eBPF map, which unprivileged processes cannot create.
    When a socket is missing from the group (a partition restarting), the connections it would get fall back to
    the kernel's hash over the others: none is refused. Returns False where the kernel has no such option (not
    Linux): the kernel's hash applies.
    """
    program = [
        (_LD_B_ABS, 0, 0, _NET),        # A = first byte of the IP header
        (_RSH_K, 0, 0, 4),              # A = IP version
        (_JEQ_K, 0, 2, 4),              # IPv4: on; else skip to the IPv6 header length
        (_LDX_B_MSH, 0, 0, _NET),       # X = IPv4 header length
        (_JA, 0, 0, 1),
        (_LDX_IMM, 0, 0, 40),           # X = IPv6 header length
        (_LD_H_IND, 0, 0, _NET),        # A = TCP source port (the first field after the IP header)
        (_RSH_K, 0, 0, 1),
        (_MOD_K, 0, 0, n),
        (_RET_A, 0, 0, 0),              # the index of the socket in the group
    ]
    code = b"".join(struct.pack("HBBI", op, jt, jf, k & 0xFFFFFFFF) for op, jt, jf, k in program)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError:
        return False
    return True


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us (we run two of them and the engine)."""

    def install_signal_handlers(self) -> None:  # older uvicorn
        pass

    def capture_signals(self):  # type: ignore[no-untyped-def]  # newer uvicorn
        return contextlib.nullcontext()
