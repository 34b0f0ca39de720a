"""``popvault import``: add mbox, Maildir and .eml sources to the vault."""

from __future__ import annotations

import click

from popvault.app.importer import detect, import_sources
from popvault.cli.context import Context, pass_ctx
from popvault.cli.output import human_bytes
from popvault.errors import PartialFailure


@click.command("import")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option(
    "--account", default="import", show_default=True, help="Account name to file them under."
)
@click.option(
    "--mbox-format",
    type=click.Choice(["auto", "mboxrd", "mboxo"]),
    default="auto",
    show_default=True,
    help="How '>From ' lines in mbox files are read.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Import a file that does not look like a message all the same (as one message).",
)
@pass_ctx
def command(
    ctx: Context, sources: tuple[str, ...], account: str, mbox_format: str, force: bool
) -> None:
    """Import messages from mbox files, Maildirs and .eml files or folders."""
    ctx.check_vault()
    for source in sources:  # refuse what is not mail before asking for a passphrase
        detect(source, force=force)
    with ctx.open_vault(write=True, command="popvault import") as vault:
        progress = ctx.progress()
        rep = import_sources(
            vault,
            list(sources),
            account=account,
            mbox_format=mbox_format,
            force=force,
            progress=progress,
        )
    if not ctx.quiet:
        click.echo(
            f"imported {rep.messages} messages ({human_bytes(rep.bytes)}): {rep.new} new,"
            f" {rep.duplicates} already in the vault",
            err=True,
        )
    for e in rep.errors:
        click.echo(f"popvault: error: {e}", err=True)
    if rep.errors:
        raise PartialFailure(f"{len(rep.errors)} file(s) could not be read; the rest was imported")
