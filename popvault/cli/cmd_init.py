"""``popvault init``: create a vault."""

from __future__ import annotations

from pathlib import Path

import click

from popvault.cli.context import Context, pass_ctx
from popvault.errors import UsageError
from popvault.vault import Vault, is_vault_url


@click.command("init")
@click.option(
    "--parents",
    is_flag=True,
    help="Create missing parent folders of the vault too (default: refuse).",
)
@pass_ctx
def command(ctx: Context, parents: bool) -> None:
    """Create a new, empty vault at --vault (asks for the passphrase twice)."""
    path = ctx.require_vault_path()
    parent = Path(path).expanduser().absolute().parent
    if is_vault_url(path):  # s3://: the bucket is created if missing (docs/storage.md)
        parent = Path("/")
    if not parent.is_dir() and not (parents and not parent.exists()):
        if parent.exists():
            raise UsageError(f"cannot create the vault {path}: {parent} is not a folder")
        raise UsageError(
            f"cannot create the vault {path}: its parent folder {parent} does not exist",
            hint="is a disk not mounted? check the path, or add --parents to create"
            " missing folders",
        )
    passphrase = ctx.passphrase(confirm=True)
    if parents:
        parent.mkdir(parents=True, exist_ok=True)
    v = Vault.init(path, passphrase, cache_file=Path(ctx.cache) if ctx.cache else None)
    vid = v.vault_id
    bucket_created = v.bucket_created
    v.close()
    if not ctx.quiet:
        if bucket_created:
            click.echo(f"created the bucket of {path}", err=True)
        click.echo(f"created vault {vid} at {path}", err=True)
        click.echo(
            "keep the passphrase safe, and consider 'popvault key export' for a paper backup",
            err=True,
        )
