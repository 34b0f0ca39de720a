"""``popvault check``: verify the vault's structure, and with --read-data every byte."""

from __future__ import annotations

import click

from popvault.cli.context import Context, pass_ctx
from popvault.errors import IntegrityError, UsageError
from popvault.vault import Vault


@click.command("check")
@click.option(
    "--read-data",
    is_flag=True,
    help="Read every pack, authenticate every blob, rebuild and re-hash every message.",
)
@pass_ctx
def command(ctx: Context, read_data: bool) -> None:
    """Check the vault; exit 20 and list affected messages on any problem."""
    try:
        vault = ctx.open_vault()
    except IntegrityError as exc:
        # a damaged commit or segment stops the cache sync; check still reports it all
        ctx.warn(f"index cache not updated: {exc.message}")
        vault = ctx.open_vault(sync=False)
    with vault:
        progress = ctx.progress()
        if read_data:
            total = vault.pack_bytes()
            progress.start("reading packs", None, total)
        rep = vault.check(read_data=read_data, progress=lambda n: progress.advance(0, n))
        progress.done()
        affected = []
        for mid in sorted(rep.affected):
            subject = _subject(vault, mid)
            affected.append(f"{mid.hex()}  {subject}")
    for note in rep.notes:
        ctx.warn(note)
    if rep.ok:
        if not ctx.quiet:
            what = "all data read and verified" if read_data else "structure ok"
            click.echo(
                f"no problems found: {rep.messages} messages, {rep.packs} packs ({what})", err=True
            )
        return
    for p in rep.problems:
        click.echo(f"popvault: problem: {p}", err=True)
    if affected:
        click.echo(f"affected messages ({len(affected)}):")
        for line in affected:
            click.echo(f"  {line}")
    raise IntegrityError(
        f"{len(rep.problems)} problem(s) found, {len(affected)} message(s) affected",
        hint=None if read_data else "run 'popvault check --read-data' for a full verification",
    )


def _subject(vault: Vault, mid: bytes) -> str:
    try:
        return vault.message(mid).subject
    except UsageError:  # not in the cache (it could not be synced)
        return ""
