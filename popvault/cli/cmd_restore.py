"""``popvault restore``: archived mail back into IMAP, a Maildir, an mbox or .eml files."""

from __future__ import annotations

import json

import click

from popvault.app.restore import DateFrom, RestoreReport, restore
from popvault.cli.cmd_backup import url_password
from popvault.cli.context import Context, pass_ctx
from popvault.cli.filters import restore_filter_options
from popvault.cli.output import human_bytes
from popvault.errors import PartialFailure
from popvault.vault import Filter

DATE_FROM = click.Choice(["auto", "received", "header", "archived"])


def print_restore(ctx: Context, rep: RestoreReport, dry_run: bool) -> None:
    if ctx.quiet:
        pass
    elif dry_run:
        click.echo(
            f"{rep.target}: would restore {rep.would_restore} of {rep.selected} messages"
            f" ({rep.already} already there; dry run)",
            err=True,
        )
    else:
        click.echo(
            f"{rep.target}: restored {rep.restored} messages ({human_bytes(rep.bytes)}),"
            f" {rep.already} already there, {len(rep.failed)} failed",
            err=True,
        )
    for f in rep.failed:
        click.echo(f"popvault: error: {f}", err=True)


@click.command("restore")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="TARGET",
    help="imaps://USER@HOST[:PORT]/FOLDER, imap://..., maildir:PATH, mbox:PATH, eml:DIR",
)
@restore_filter_options
@click.option("--password-command", metavar="CMD", help="Command printing the IMAP password.")
@click.option("--tls-ca-file", metavar="FILE", help="Trust this CA (PEM) for the IMAP server.")
@click.option("--tls-fingerprint", metavar="SHA256", help="Pin the IMAP server's certificate.")
@click.option(
    "--date-from",
    type=DATE_FROM,
    default="auto",
    show_default=True,
    help="INTERNALDATE source: auto = Received, file time, Date, archived.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be restored; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@pass_ctx
def command(
    ctx: Context,
    target: str,
    flt: Filter,
    password_command: str | None,
    tls_ca_file: str | None,
    tls_fingerprint: str | None,
    date_from: DateFrom,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Restore matching messages to TARGET, each exactly once (safe to re-run)."""
    with ctx.open_vault(write=not dry_run, command="popvault restore") as vault:
        rep = restore(
            vault,
            target,
            flt,
            password=lambda: url_password(password_command, "IMAP"),
            tls_ca_file=tls_ca_file,
            tls_fingerprint=tls_fingerprint,
            date_from=date_from,
            dry_run=dry_run,
            progress=ctx.progress(),
        )
    if as_json:
        click.echo(json.dumps(rep.to_json()))
    print_restore(ctx, rep, dry_run)
    if rep.failed:
        raise PartialFailure(f"{len(rep.failed)} message(s) were not restored; the rest were")
