"""``popvault index rebuild``: recreate the local index cache."""

from __future__ import annotations

import click

from popvault.app.indexing import index_new
from popvault.cli.context import Context, pass_ctx
from popvault.cli.group import HelpGroup


@click.group("index", cls=HelpGroup)
def command() -> None:
    """Manage the local index cache (it can always be rebuilt)."""


@command.command("rebuild")
@click.option("--from-packs", is_flag=True, help="Ignore the index segments; read every pack.")
@pass_ctx
def rebuild(ctx: Context, from_packs: bool) -> None:
    """Rebuild the cache from the index segments (or packs, if segments are lost), and
    the search index in it from the messages."""
    with ctx.open_vault_for_rebuild() as vault:
        info = vault.rebuild_cache(from_packs=from_packs)
        n = vault.message_count()
        found = index_new(vault, progress=ctx.progress())  # read back from the vault
    if not ctx.quiet:
        src = f"{info['packs']} packs" if info["packs"] else f"{info['commits']} commits"
        click.echo(f"index rebuilt from {src}: {n} messages", err=True)
        part = f" ({found.partial} read only in part)" if found.partial else ""
        click.echo(f"search index rebuilt: {found.indexed} messages{part}", err=True)
