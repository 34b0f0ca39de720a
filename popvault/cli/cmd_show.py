"""``popvault show``: one message's exact bytes on stdout."""

from __future__ import annotations

import sys

import click

from popvault.cli.context import Context, pass_ctx


@click.command("show")
@click.argument("message_id", metavar="ID")
@pass_ctx
def command(ctx: Context, message_id: str) -> None:
    """Write message ID (an unambiguous prefix is enough) byte for byte to stdout.

    Messages up to 64 MiB are verified whole before the first byte is written."""
    with ctx.open_vault() as vault:
        mid = vault.resolve(message_id)
        row = vault.message(mid)
        out = sys.stdout.buffer
        if row.size <= 64 << 20:
            out.write(vault.read_message(mid))
        else:
            for chunk in vault.iter_message(mid):
                out.write(chunk)
        out.flush()
