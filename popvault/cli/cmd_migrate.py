"""``popvault migrate``: POP3 account to IMAP folder, through the vault, exactly once."""

from __future__ import annotations

import json

import click

from popvault.app.migrate import migrate
from popvault.app.restore import DateFrom
from popvault.cli.cmd_backup import url_account, url_password
from popvault.cli.cmd_restore import DATE_FROM, print_restore
from popvault.cli.context import Context, pass_ctx
from popvault.errors import PartialFailure, UsageError, shown_url


@click.command("migrate")
@click.option(
    "--from",
    "source",
    required=True,
    metavar="URL",
    help="pop3s://USER@HOST[:PORT] or pop3://... (password: POPVAULT_POP3_PASSWORD)",
)
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="imaps://USER@HOST[:PORT]/FOLDER or imap://... (POPVAULT_IMAP_PASSWORD)",
)
@click.option("--account", "account_name", metavar="NAME", help="Account name in the vault.")
@click.option("--pop3-password-command", metavar="CMD", help="Command printing the POP3 password.")
@click.option("--imap-password-command", metavar="CMD", help="Command printing the IMAP password.")
@click.option("--pop3-tls-ca-file", metavar="FILE", help="Trust this CA for the POP3 server.")
@click.option("--pop3-tls-fingerprint", metavar="SHA256", help="Pin the POP3 server's certificate.")
@click.option("--imap-tls-ca-file", metavar="FILE", help="Trust this CA for the IMAP server.")
@click.option("--imap-tls-fingerprint", metavar="SHA256", help="Pin the IMAP server's certificate.")
@click.option(
    "--date-from",
    type=DATE_FROM,
    default="auto",
    show_default=True,
    help="INTERNALDATE source for the restored messages.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON.")
@pass_ctx
def command(
    ctx: Context,
    source: str,
    target: str,
    account_name: str | None,
    pop3_password_command: str | None,
    imap_password_command: str | None,
    pop3_tls_ca_file: str | None,
    pop3_tls_fingerprint: str | None,
    imap_tls_ca_file: str | None,
    imap_tls_fingerprint: str | None,
    date_from: DateFrom,
    as_json: bool,
) -> None:
    """Copy every message of a POP3 account into an IMAP folder, via the vault.

    Resumable: run it again after an interruption. Ends with a report that every
    message on the source is in the vault and on the target. Never deletes."""
    if not target.startswith(("imap://", "imaps://")):
        raise UsageError(
            f"migrate needs an IMAP target, not {shown_url(target)!r}",
            hint="use 'popvault backup' then 'popvault restore --to ...' for other targets",
        )
    acct = url_account(
        source, account_name, pop3_tls_ca_file, pop3_tls_fingerprint, None, False, None
    )
    pop3_password = url_password(pop3_password_command, "POP3")
    imap_password = url_password(imap_password_command, "IMAP")  # asked before the long part
    with ctx.open_vault(write=True, command="popvault migrate") as vault:
        rep = migrate(
            vault,
            acct,
            pop3_password,
            target,
            lambda: imap_password,
            tls_ca_file=imap_tls_ca_file,
            tls_fingerprint=imap_tls_fingerprint,
            date_from=date_from,
            progress=ctx.progress(),
        )
    if as_json:
        click.echo(json.dumps(rep.to_json()))
    print_restore(ctx, rep.restore, False)
    if not ctx.quiet:
        state = "complete" if rep.complete else "INCOMPLETE"
        click.echo(
            f"migration {state}: {rep.on_source} messages on the source, {rep.in_vault} in the"
            f" vault, {rep.on_target} on the target",
            err=True,
        )
    for u in rep.missing_in_vault:
        click.echo(f"popvault: error: source message {u} is not in the vault", err=True)
    for u in rep.missing_on_target:
        click.echo(f"popvault: error: source message {u} is not on the target", err=True)
    if not rep.complete:
        raise PartialFailure("migration incomplete; run the same command again to resume")
