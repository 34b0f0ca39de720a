"""``popvault repair``: recover everything still in the vault after lost commits."""

from __future__ import annotations

import json

import click

from popvault.app.indexing import index_run
from popvault.cli.context import Context, pass_ctx
from popvault.errors import IntegrityError


@click.command("repair")
@click.option("--json", "as_json", is_flag=True, help="Print what was recovered as JSON.")
@pass_ctx
def command(ctx: Context, as_json: bool) -> None:
    """Rebuild the vault's state from every authentic object in it; deletes nothing.

    Run it when a command says commits are missing or the vault was rolled back or
    replaced. It reads every commit record it can, rebuilds the index cache (from packs
    where segments are lost), commits every pack that no commit names (with the
    messages, arrivals and deletion records inside it), records the damage it recovered
    from so that it is reported once, and resets what this machine remembers of the
    vault. Exit 0 when the vault is whole again; 20 when some messages could not be
    recovered (their data is gone too)."""
    with ctx.open_vault(write=True, command="popvault repair", repairing=True) as vault:
        rep = vault.repair()
        index_run(vault, ctx.progress())  # the cache was rebuilt: so is the search index
        messages = vault.message_count()
    if as_json:
        click.echo(json.dumps({**rep.to_json(), "messages": messages}, sort_keys=True))
    elif not ctx.quiet or rep.unrecoverable:
        for text in rep.accepted:
            click.echo(f"popvault: repaired: {text}", err=True)
        click.echo(
            f"repair: {rep.commits} commit(s) read ({len(rep.unreadable_commits)} unreadable,"
            f" {rep.from_packs} rebuilt from packs); {rep.packs_adopted} pack(s) adopted:"
            f" {rep.messages_recovered} message(s), {rep.arrivals_recovered} arrival(s),"
            f" {rep.deletions_recovered} deletion record(s) recovered; vault holds"
            f" {messages} message(s)"
            + (
                f"; new commit {rep.commit[:10].lstrip('0')}"
                if rep.commit
                else "; no commit needed"
            ),
            err=True,
        )
    if rep.foreign_packs:
        ctx.warn(
            f"{rep.foreign_packs} pack(s) are not this vault's (do not authenticate); left alone"
        )
    if rep.unrecoverable:
        raise IntegrityError(
            f"{rep.unrecoverable} message(s) recorded by lost commits have no data left in the"
            " vault; every other message is recovered",
            hint="those messages were not stored anywhere else in the vault; if they are still"
            " on a server, the next backup fetches them",
        )
