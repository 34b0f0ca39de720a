"""``popvault init``: create a vault."""

from __future__ import annotations

from pathlib import Path

import click

from popvault.cli.context import Context, pass_ctx
from popvault.vault.vault import Vault


@click.command("init")
@pass_ctx
def command(ctx: Context) -> None:
    """Create a new, empty vault at --vault (asks for the passphrase twice)."""
    path = ctx.require_vault_path()
    passphrase = ctx.passphrase(confirm=True)
    v = Vault.init(path, passphrase, cache_file=Path(ctx.cache) if ctx.cache else None)
    vid = v.vault_id
    v.close()
    if not ctx.quiet:
        click.echo(f"created vault {vid} at {path}", err=True)
        click.echo(
            "keep the passphrase safe, and consider 'popvault key export' for a paper backup",
            err=True,
        )
