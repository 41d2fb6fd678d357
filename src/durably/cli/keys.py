"""`durably keys`: request identity keys, what signs requests to deployments and what deployments verify.

    durably keys generate FILE.pem      a new ed25519 request identity key; prints its publickeyv1_ string
    durably keys public FILE.pem        the publickeyv1_ string of an existing key
"""

from __future__ import annotations

import os
from pathlib import Path

import click

_FILE = click.Path(path_type=Path, dir_okay=False)


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
