"""``popvault export``: messages to an mbox, a Maildir or .eml files."""

from __future__ import annotations

import click

from popvault.app.export import ExportFormat, export_messages
from popvault.app.search import only_hits, parse_query
from popvault.cli.context import Context, pass_ctx
from popvault.cli.filters import filter_options
from popvault.cli.output import human_bytes
from popvault.errors import IntegrityError
from popvault.vault import Filter


@click.command("export")
@click.argument("dest", metavar="DEST")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mbox", "maildir", "eml"]),
    required=True,
    help="mbox (mboxrd), maildir, or eml (one file a message).",
)
@click.option("--crlf", is_flag=True, help="mbox: keep CRLF line endings (default: LF).")
@click.option(
    "--query",
    metavar="QUERY",
    help="Only the messages 'popvault search QUERY' finds (docs/search.md).",
)
@filter_options
@pass_ctx
def command(
    ctx: Context,
    dest: str,
    fmt: ExportFormat,
    crlf: bool,
    query: str | None,
    flt: Filter,
) -> None:
    """Export matching messages to DEST, each verified before it is written."""
    parsed = parse_query(query) if query is not None else None  # before the passphrase
    with ctx.open_vault() as vault:
        if parsed is not None:
            flt = only_hits(vault, parsed, flt, ctx.progress())
        rep = export_messages(vault, dest, fmt, flt, crlf=crlf, progress=ctx.progress())
    if not ctx.quiet:
        click.echo(
            f"exported {rep.messages} messages ({human_bytes(rep.bytes)}) to {dest}", err=True
        )
    if rep.failed:
        raise IntegrityError(
            f"{len(rep.failed)} damaged message(s) were not exported",
            hint="run 'popvault check --read-data' to list affected messages",
        )
