"""The security side of the `durably` command: `serve`'s listener, token, TLS and signing flags, and `keys`.

    durably keys generate FILE.pem      a new ed25519 request identity key; prints its publickeyv1_ string
    durably keys public FILE.pem        the publickeyv1_ string of an existing key
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

ADMIN_TOKEN_ENV = "DURABLY_ADMIN_TOKEN"
INGRESS_TOKEN_ENV = "DURABLY_INGRESS_TOKEN"

_FILE = click.Path(path_type=Path, dir_okay=False)


def security_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """`durably serve`'s security flags; they arrive as keyword arguments named like ServerConfig's fields."""
    options = [
        click.option("--admin-host", default="127.0.0.1", show_default=True, envvar="DURABLY_ADMIN_HOST",
                     help="Interface for the admin API, independent of --host (keep it private)."),
        click.option("--admin-token", envvar=ADMIN_TOKEN_ENV, show_envvar=True, default=None, metavar="TOKEN",
                     help="Require 'Authorization: Bearer TOKEN' on the admin API (health excepted). Prefer the "
                          "env var: flags show in `ps`."),
        click.option("--ingress-token", envvar=INGRESS_TOKEN_ENV, show_envvar=True, default=None, metavar="TOKEN",
                     help="Require 'Authorization: Bearer TOKEN' on the ingress (health excepted)."),
        click.option("--tls-cert", type=_FILE, envvar="DURABLY_TLS_CERT", default=None,
                     help="Serve ingress and admin API over HTTPS with this PEM certificate (chain)."),
        click.option("--tls-key", type=_FILE, envvar="DURABLY_TLS_KEY", default=None,
                     help="The PEM private key of --tls-cert."),
        click.option("--request-identity-key", type=_FILE, envvar="DURABLY_REQUEST_IDENTITY_KEY", default=None,
                     help="Sign requests to remote deployments with this ed25519 PEM key, as the Restate server "
                          "does (see `durably keys generate`)."),
        click.option("--secret-header", "secret_headers", multiple=True, metavar="NAME",
                     envvar="DURABLY_SECRET_HEADERS",
                     help="A request header handlers see but the journal never stores (repeatable; added to "
                          "authorization, proxy-authorization, cookie, x-restate-jwt-v1)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.group()
def keys() -> None:
    """Request identity keys: what signs requests to deployments, and what deployments verify."""


@keys.command("generate")
@click.argument("file", type=_FILE)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def generate(file: Path, force: bool) -> None:
    """Write a new ed25519 private key to FILE (PEM, readable by you only) and print its public key.

    \b
    durably keys generate identity.pem
    durably serve app.py --request-identity-key identity.pem
    # deployments: durably.app(services, identity_keys=["publickeyv1_..."]) or restate.app(..., identity_keys=...)
    # a Restate server: worker.invoker.request-identity-private-key-pem-file = "identity.pem"
    """
    from durably.protocol.request_identity import generate_private_key

    pem, public = generate_private_key()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(file, flags, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{file} exists; pass --force to replace it") from None
    except OSError as e:
        raise click.ClickException(f"cannot write {file}: {e.strerror}") from None
    os.fchmod(fd, 0o600)  # also when --force replaced a file that others could read
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    click.echo(public)


@keys.command("public")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def public(file: Path) -> None:
    """Print the publickeyv1_ string of the private key in FILE (for a deployment's identity_keys)."""
    from durably.protocol.request_identity import KeyFormatError, RequestSigner

    try:
        click.echo(RequestSigner.from_pem_file(file).public_key)
    except KeyFormatError as e:
        raise click.ClickException(str(e)) from None
