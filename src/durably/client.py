"""Clients of a running server: restate-sdk's typed async client, and the CLI's synchronous ones.

The code lives in `durably.clients`; this module keeps the names where restate-sdk (`restate.client`) and the
README have them.
"""

from durably.client_types import HttpError, RestateClient, RestateClientSendHandle, RestateScopedClient
from durably.clients.http import (
    ACTIONS,
    DEFAULT_ADMIN_URL,
    DEFAULT_INGRESS_URL,
    AdminClient,
    BadURL,
    CallResult,
    ClientError,
    IngressClient,
    RequestFailed,
    ServerUnreachable,
    TimedOut,
    target_path,
)
from durably.clients.typed import Client, ScopedClient, create_client

__all__ = [
    "ACTIONS", "DEFAULT_ADMIN_URL", "DEFAULT_INGRESS_URL", "AdminClient", "BadURL", "CallResult", "Client",
    "ClientError", "HttpError", "IngressClient", "RequestFailed", "RestateClient", "RestateClientSendHandle",
    "RestateScopedClient", "ScopedClient", "ServerUnreachable", "TimedOut", "create_client", "target_path",
]
