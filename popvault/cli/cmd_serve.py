"""``popvault serve``: a local, read-only web viewer of the vault (popvault.web)."""

from __future__ import annotations

import sys

import click

from popvault import interrupts
from popvault.cli.context import Context, pass_ctx


@click.command("serve")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default="a free port",
    help="Listen on this port of 127.0.0.1 (0: a free one).",
)
@pass_ctx
def command(ctx: Context, port: int) -> None:
    """Browse and search the vault in a web browser, read-only, on 127.0.0.1 only.

    The first line of output is the URL to open, with a random access token; requests
    without it get 403. Nothing is opened for you. Ctrl-C stops the server."""
    from popvault.web import Server

    with ctx.open_vault() as vault:
        server = Server(vault, port)
        try:
            click.echo(server.url)  # the first line of output, always (even with -q)
            sys.stdout.flush()
            if not ctx.quiet:
                click.echo("popvault: serving the vault read-only; Ctrl-C stops", err=True)
            server.run()
        except interrupts.Interrupted as exc:
            if not ctx.quiet:
                click.echo(f"popvault: serve stopped ({exc.signal_name})", err=True)
        finally:
            server.close()
