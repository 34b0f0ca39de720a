"""``popvault prune``: delete unnamed packs and segments the vault holds elsewhere."""

from __future__ import annotations

import json

import click

from popvault.cli.context import Context, pass_ctx


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print what was deleted as JSON.")
@pass_ctx
def command(ctx: Context, dry_run: bool, as_json: bool) -> None:
    """Delete packs and index segments that no commit names, when every blob and record
    in them is also held by committed data (the only command that deletes vault data).

    Packs of interrupted runs that hold anything new are never deleted: the next writer
    commits them. Refuses (exit 20) while commits are missing: run 'popvault repair'."""
    with ctx.open_vault(write=True, command="popvault prune") as vault:
        rep = vault.prune(dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(rep.to_json(), sort_keys=True))
    elif not ctx.quiet:
        verb = "would delete" if dry_run else "deleted"
        click.echo(
            f"prune: {verb} {len(rep.packs)} pack(s) ({rep.bytes} bytes) and"
            f" {len(rep.segments)} index segment(s) that no commit names",
            err=True,
        )
