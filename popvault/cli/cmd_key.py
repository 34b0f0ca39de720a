"""``popvault key``: change the passphrase, export and import the master keys."""

from __future__ import annotations

import os
from pathlib import Path

import click

from popvault.app.secrets import get_passphrase
from popvault.cli.context import Context, _interactive, pass_ctx
from popvault.cli.group import HelpGroup
from popvault.cli.output import ask_secret
from popvault.errors import UsageError
from popvault.vault import import_key_export


@click.group("key", cls=HelpGroup)
def command() -> None:
    """Manage the vault's keys."""


def _new_passphrase(file: str | None, command: str | None) -> bytes:
    def prompt(confirm: bool) -> str:
        return ask_secret("New passphrase", confirm=True)

    return get_passphrase(
        file,
        command,
        prompt if _interactive() else None,
        confirm=True,
        env="POPVAULT_NEW_PASSPHRASE",
        option_prefix="--new-passphrase",
    )


@command.command("passwd")
@click.option("--new-passphrase-file", metavar="FILE", help="Read the new passphrase from FILE.")
@click.option("--new-passphrase-command", metavar="CMD", help="Run CMD for the new passphrase.")
@pass_ctx
def passwd(
    ctx: Context, new_passphrase_file: str | None, new_passphrase_command: str | None
) -> None:
    """Change the passphrase: the new key slot is written and verified before the old
    one is removed. The new passphrase also comes from POPVAULT_NEW_PASSPHRASE."""
    ctx.open_vault(sync=False).close()  # a wrong current passphrase: before asking the new
    old = ctx.passphrase_source()
    new = _new_passphrase(new_passphrase_file, new_passphrase_command)
    with ctx.open_vault(write=True, command="popvault key passwd") as vault:
        vault.change_passphrase(old.value, new)
    if not ctx.quiet:
        click.echo("passphrase changed", err=True)
    if old.file is not None:
        ctx.warn(
            f"{old.file} still holds the old passphrase: write the new one into it, or"
            " commands reading it will fail with 'wrong passphrase'"
        )
    elif not old.prompted:
        ctx.warn(
            f"{old.source} still gives the old passphrase: change it too, or commands"
            " using it will fail with 'wrong passphrase'"
        )


@command.command("export")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE (mode 0600) instead of stdout.")
@pass_ctx
def export(ctx: Context, output: str | None) -> None:
    """Print the master keys for a paper backup. SECRET: with the vault files, this
    text reads all mail without any passphrase."""
    with ctx.open_vault() as vault:
        text = vault.export_keys()
    ctx.warn("this key export opens the vault without a passphrase; store it offline")
    if output:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    else:
        click.echo(text, nl=False)


@command.command("import")
@click.argument("export_file", metavar="FILE")
@click.option("--new-passphrase-file", metavar="FILE", help="Read the new passphrase from FILE.")
@click.option("--new-passphrase-command", metavar="CMD", help="Run CMD for the new passphrase.")
@pass_ctx
def import_(
    ctx: Context,
    export_file: str,
    new_passphrase_file: str | None,
    new_passphrase_command: str | None,
) -> None:
    """Add a key slot from a key export (when the passphrase is lost)."""
    try:
        text = Path(export_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read key export {export_file}: {exc}") from None
    new = _new_passphrase(new_passphrase_file, new_passphrase_command)
    import_key_export(ctx.require_vault_path(), text, new)
    if not ctx.quiet:
        click.echo("key slot added; the vault opens with the new passphrase", err=True)
