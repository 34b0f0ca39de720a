"""``popvault backup``: fetch new mail from POP3 accounts into the vault."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from popvault.app.backup import BackupReport, run_backup
from popvault.app.config import AccountConfig, default_config_path, load_config
from popvault.app.secrets import account_password, one_off_password
from popvault.cli.context import Context, _interactive, pass_ctx
from popvault.cli.output import ask_secret, error, human_bytes, traffic_line
from popvault.errors import IntegrityError, PartialFailure, PopvaultError, UsageError
from popvault.pop3.settings import AUTH_METHODS, parse_pop3_url
from popvault.vault import storage_traffic


def url_account(
    url: str,
    name: str | None,
    ca_file: str | None,
    fingerprint: str | None,
    auth: str | None,
    delete: bool,
    delete_after_days: int | None,
) -> AccountConfig:
    u = parse_pop3_url(url)
    return AccountConfig(
        name=name or f"{u.user}@{u.host}",
        host=u.host,
        user=u.user,
        port=u.port,
        tls=u.tls,
        tls_ca_file=ca_file,
        tls_fingerprint=fingerprint,
        auth=auth or u.auth,
        keep=not delete and delete_after_days is None,
        delete=delete,
        delete_after_days=delete_after_days,
    )


def url_password(command: str | None, what: str = "POP3") -> str:
    """The POP3 or IMAP password of a one-off account (``--url``, ``restore --to``,
    ``migrate``), asked on the terminal as the last source."""
    return one_off_password(command, what, ask_secret if _interactive() else None)


def print_report(
    ctx: Context, report: BackupReport, as_json: bool, storage: dict[str, Any] | None = None
) -> None:
    """The run report; ``storage``: what the run cost an S3 vault (requests, bytes)."""
    if as_json:
        accounts = [a.to_json() for a in report.accounts]
        click.echo(
            json.dumps({"exit_code": report.exit_code, "accounts": accounts, "storage": storage})
        )
    for a in report.accounts:
        if a.error is not None:
            error(f"account {a.account}: {a.error}", a.hint)
        elif not ctx.quiet and not as_json:
            if a.would_fetch or a.would_delete:
                click.echo(
                    f"{a.account}: would fetch {a.would_fetch}, would delete {a.would_delete}"
                    f" (dry run; {a.listed} on the server)",
                    err=True,
                )
            else:
                click.echo(
                    f"{a.account}: {a.listed} on the server, fetched {a.fetched}"
                    f" ({human_bytes(a.bytes)}), {a.new} new, deleted {a.deleted}"
                    f" in {a.seconds:.1f} s",
                    err=True,
                )
    if storage is not None and not ctx.quiet and not as_json:
        click.echo(traffic_line(storage), err=True)


@click.command("backup")
@click.argument("accounts", nargs=-1, metavar="[ACCOUNT...]")
@click.option(
    "--url", metavar="URL", help="One-off account: pop3s://USER@HOST[:PORT] or pop3://..."
)
@click.option("--account", "account_name", metavar="NAME", help="Account name for --url.")
@click.option("--password-command", metavar="CMD", help="--url: command printing the password.")
@click.option("--tls-ca-file", metavar="FILE", help="--url: trust this CA (PEM).")
@click.option("--tls-fingerprint", metavar="SHA256", help="--url: pin this certificate.")
@click.option("--auth", metavar="MECH", help=f"--url: {', '.join(AUTH_METHODS)}.")
@click.option("--delete", is_flag=True, help="--url: delete each message once safely archived.")
@click.option(
    "--delete-after-days", type=int, metavar="N", help="--url: delete N days after archiving."
)
@click.option(
    "--dry-run", is_flag=True, help="Show what would be fetched and deleted; change nothing."
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Accounts to back up at the same time.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable run report.")
@pass_ctx
def command(
    ctx: Context,
    accounts: tuple[str, ...],
    url: str | None,
    account_name: str | None,
    password_command: str | None,
    tls_ca_file: str | None,
    tls_fingerprint: str | None,
    auth: str | None,
    delete: bool,
    delete_after_days: int | None,
    dry_run: bool,
    jobs: int,
    as_json: bool,
) -> None:
    """Back up POP3 accounts (all configured ones by default) into the vault.

    Exit 0 also when there was no new mail; 3 when some accounts failed; 75 when all
    failed temporarily (retry later); 77 when the server refused the login."""
    failures: list[str] = []
    if url:
        if accounts:
            raise UsageError("give either --url or account names, not both")
        acct = url_account(
            url, account_name, tls_ca_file, tls_fingerprint, auth, delete, delete_after_days
        )
        items = [(acct, url_password(password_command))]
    else:
        items = _configured(ctx, accounts, failures)
    try:
        opened = ctx.open_vault(write=not dry_run, command="popvault backup")
    except IntegrityError as exc:
        if as_json:  # lost commits or a rollback (format §8.6): in the report too
            click.echo(
                json.dumps({"exit_code": exc.exit_code, "error": exc.message, "accounts": []})
            )
        raise
    with opened as vault:
        report = run_backup(
            vault,
            items,
            jobs=jobs,
            dry_run=dry_run,
            progress=ctx.progress(),
            make_progress=ctx.progress,
        )
    print_report(ctx, report, as_json, storage_traffic(opened))
    code = report.exit_code
    if failures:
        code = 3
    if code == 3:
        raise PartialFailure("some accounts failed; the others were backed up")
    if code:
        raise click.exceptions.Exit(code)


def _configured(
    ctx: Context, accounts: tuple[str, ...], failures: list[str]
) -> list[tuple[AccountConfig, str]]:
    """The configured accounts to back up (all by default) with their passwords; an
    account whose password cannot be had is reported in ``failures`` (unless it is the
    only one: then its error is raised)."""
    cfg_path = Path(ctx.config) if ctx.config else default_config_path()
    cfg = load_config(cfg_path)
    if not cfg.accounts:
        raise UsageError(f"{cfg_path} defines no [accounts.NAME] section")
    names = list(accounts) or list(cfg.accounts)
    for n in names:
        if n not in cfg.accounts:
            raise UsageError(
                f"no account {n!r} in {cfg_path}", hint=f"known: {', '.join(cfg.accounts)}"
            )
    items: list[tuple[AccountConfig, str]] = []
    for n in names:
        try:
            items.append((cfg.accounts[n], account_password(cfg.accounts[n])))
        except PopvaultError as exc:
            if len(names) == 1:
                raise
            msg = exc.message
            failures.append(msg if msg.startswith(f"account {n}") else f"account {n}: {msg}")
    for f in failures:
        click.echo(f"popvault: error: {f}", err=True)
    if failures and not items:
        raise UsageError("no account has a usable password")
    return items
