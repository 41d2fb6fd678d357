"""`durably endpoint APP`: the app as a Restate deployment, served with settings made for Restate's invoker."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("app_ref", metavar="APP")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind to.")
@click.option("--port", default=9080, show_default=True, type=click.IntRange(0, 65535), help="Port to bind to.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Processes sharing the port (a dead one is replaced).")
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TLS certificate (PEM); serves HTTPS with ALPN h2 and http/1.1.")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="TLS private key (PEM).")
@click.option("--graceful-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0),
              help="On SIGTERM, seconds running attempts get to finish before their streams are cut (Restate "
                   "then retries them from the journal).")
@click.option("--keep-alive", "keep_alive_timeout", default=300.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds an idle connection stays open.")
@click.option("--max-concurrent-streams", default=1000, show_default=True, type=click.IntRange(1, 2**31 - 1),
              help="HTTP/2 streams (running attempts) per connection.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
def endpoint(app_ref: str, host: str, port: int, workers: int, certfile: Path | None, keyfile: Path | None,
             graceful_timeout: float, keep_alive_timeout: float, max_concurrent_streams: int, log_level: str) -> None:
    """Serve APP (module:app or path/to/file.py) as a Restate deployment.

    \b
    durably endpoint app:app --port 9080 --workers 2
    restate deployments register http://127.0.0.1:9080

    HTTP/2 cleartext (or TLS) for Restate's bidirectional streams and HTTP/1.1 on the same port, with no
    request-count GOAWAY, long keep-alive and large flow-control windows built in.
    """
    try:
        import hypercorn  # noqa: F401
    except ImportError:
        raise click.ClickException("durably endpoint serves with hypercorn: install the deploy extra "
                                   "(pip install -e '.[deploy]' in a durably checkout)") from None
    if (certfile is None) != (keyfile is None):
        raise click.UsageError("TLS needs both --certfile and --keyfile")
    from durably.hosting.endpoint_server import EndpointOptions, serve_endpoint
    from durably.hosting.loader import AppLoadError

    opts = EndpointOptions(app_ref=app_ref, host=host, port=port, workers=workers, certfile=certfile,
                           keyfile=keyfile, graceful_timeout=graceful_timeout, keep_alive_timeout=keep_alive_timeout,
                           max_concurrent_streams=max_concurrent_streams, log_level=log_level)
    try:
        code = serve_endpoint(opts)
    except AppLoadError as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    raise SystemExit(code)
