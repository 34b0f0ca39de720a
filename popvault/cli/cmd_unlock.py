"""``popvault unlock``: remove a writer lock that no writer holds any more."""

from __future__ import annotations

import click

from popvault.cli.context import Context, pass_ctx
from popvault.vault import as_backend, break_lock


@click.command("unlock")
@click.option(
    "--force",
    is_flag=True,
    help="Also remove a lock of another host, or one that cannot be read.",
)
@pass_ctx
def command(ctx: Context, force: bool) -> None:
    """Remove the vault's writer lock when its writer is gone (no passphrase needed).

    A lock of a process that no longer runs on this computer is removed (writers also
    do that themselves). A lock of a running process is never removed (exit 11). A lock
    of another computer is removed only with --force: this computer cannot tell whether
    that writer still runs, so make sure no popvault runs there on this vault first."""
    backend, _label = as_backend(ctx.check_vault())
    removed = break_lock(backend, force=force)
    if ctx.quiet:
        return
    if not removed:
        click.echo("the vault is not locked", err=True)
    for who in removed:
        click.echo(f"removed the lock of {who}", err=True)
