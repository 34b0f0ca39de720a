"""``popvault upgrade``: raise a vault's format version (docs/format.md §4.1)."""

from __future__ import annotations

import click

from popvault.cli.context import Context, pass_ctx
from popvault.vault import upgrade_config


@click.command("upgrade")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@pass_ctx
def command(ctx: Context, dry_run: bool) -> None:
    """Raise the vault to the newest format version (older popvault then refuses it).

    Only the vault's config is rewritten, under the writer lock; packs already written
    stay as they are and are still read. No passphrase is needed. Running it again is
    harmless."""
    path = ctx.check_vault()
    res = upgrade_config(path, dry_run=dry_run, command="popvault upgrade", warn=ctx.warn)
    if ctx.quiet:
        return
    if res.before >= res.after:
        click.echo(
            f"vault {res.vault_id} is at format version {res.before}: nothing to do", err=True
        )
    elif dry_run:
        click.echo(
            f"would upgrade vault {res.vault_id} from format version {res.before} to"
            f" {res.after} (nothing changed)",
            err=True,
        )
    else:
        click.echo(
            f"upgraded vault {res.vault_id} from format version {res.before} to {res.after};"
            " popvault older than this one no longer opens it",
            err=True,
        )
