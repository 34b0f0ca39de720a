"""The CLI's shared state: global options and how commands open the vault."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import click

from popvault.app.secrets import get_passphrase
from popvault.cli.output import CliProgress, warning
from popvault.errors import UsageError
from popvault.vault.vault import Vault


@dataclass
class Context:
    vault_path: str | None
    passphrase_file: str | None
    passphrase_command: str | None
    cache: str | None
    config: str | None
    quiet: bool
    _passphrase: bytes | None = field(default=None, repr=False)

    def progress(self) -> CliProgress:
        return CliProgress(self.quiet)

    def warn(self, text: str) -> None:
        if not self.quiet:
            warning(text)

    def require_vault_path(self) -> str:
        if self.vault_path:
            return self.vault_path
        from popvault.app.config import find_config_vault

        found = find_config_vault(self.config)
        if found:
            return found
        raise UsageError(
            "no vault given", hint="use --vault PATH, POPVAULT_VAULT, or 'vault =' in the config"
        )

    def passphrase(self, *, confirm: bool = False) -> bytes:
        """The vault passphrase (asked once per command, then remembered)."""
        if self._passphrase is None:
            self._passphrase = get_passphrase(
                self.passphrase_file,
                self.passphrase_command,
                _prompt if _interactive() else None,
                confirm=confirm,
                config_file=_config_value(self.config, "passphrase_file"),
                config_command=_config_value(self.config, "passphrase_command"),
            )
        return self._passphrase

    def open_vault_for_rebuild(self) -> Vault:
        return self.open_vault(sync=False)

    def open_vault(
        self, *, write: bool = False, command: str = "popvault", sync: bool = True
    ) -> Vault:
        path = self.require_vault_path()
        from popvault.vault.vault import as_backend, read_config

        read_config(*as_backend(path))  # "not a vault" before asking for a passphrase
        return Vault.open(
            path,
            self.passphrase(),
            write=write,
            command=command,
            cache_file=Path(self.cache) if self.cache else None,
            warn=self.warn,
            sync=sync,
        )


def _config_value(config: str | None, key: str) -> str | None:
    from popvault.app.config import config_top_value

    return config_top_value(config, key)


def _interactive() -> bool:
    return os.isatty(0)


def _prompt(confirm: bool) -> str:
    value: str = click.prompt(
        "Vault passphrase", hide_input=True, confirmation_prompt=confirm, err=True
    )
    return value


pass_ctx = click.make_pass_decorator(Context)
