"""The CLI's shared state: global options, where the passphrase comes from, and how
commands open the vault (asking again for a wrong passphrase typed at the prompt)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import click

from popvault.app.secrets import Passphrase, find_passphrase
from popvault.cli.output import PROMPT_TRIES, CliProgress, ask_secret, warning
from popvault.errors import UsageError, WrongPassphrase
from popvault.vault import Vault


@dataclass
class Context:
    vault_path: str | None
    passphrase_file: str | None
    passphrase_command: str | None
    cache: str | None
    config: str | None
    quiet: bool
    _passphrase: Passphrase | None = field(default=None, repr=False)
    _s3_applied: bool = field(default=False, repr=False)

    def progress(self) -> CliProgress:
        return CliProgress(self.quiet)

    def warn(self, text: str) -> None:
        if not self.quiet:
            warning(text)

    def require_vault_path(self) -> str:
        if self.vault_path:
            return self._with_s3_settings(self.vault_path)
        from popvault.app.config import find_config_vault

        found = find_config_vault(self.config)
        if found:
            return self._with_s3_settings(found)
        raise UsageError(
            "no vault given", hint="use --vault PATH, POPVAULT_VAULT, or 'vault =' in the config"
        )

    def _with_s3_settings(self, vault: str) -> str:
        """The config's ``[s3]`` settings, for its own S3 vault, as the environment
        variables the backend reads (a variable set already wins); once a command."""
        from popvault.vault import is_vault_url

        if not self._s3_applied and is_vault_url(vault):
            self._s3_applied = True
            from popvault.app.config import cli_config, s3_environment

            os.environ.update(s3_environment(cli_config(self.config), vault))
        return vault

    def passphrase_source(self, *, confirm: bool = False) -> Passphrase:
        """The vault passphrase and its source (asked once per command, then remembered).

        The config file's ``passphrase_file`` / ``passphrase_command`` count only for the
        config's own vault (its ``vault =``), never for another ``--vault``."""
        if self._passphrase is None:
            from popvault.app.config import cli_config, config_passphrase_applies

            cfg = cli_config(self.config)
            ours = config_passphrase_applies(cfg, self.require_vault_path())
            try:
                self._passphrase = find_passphrase(
                    self.passphrase_file,
                    self.passphrase_command,
                    _prompt if _interactive() else None,
                    confirm=confirm,
                    config_file=cfg.passphrase_file if ours else None,
                    config_command=cfg.passphrase_command if ours else None,
                    config_path=str(cfg.path) if cfg.path else None,
                )
            except UsageError as exc:
                skipped = cfg.passphrase_file or cfg.passphrase_command
                if exc.message == "no passphrase given" and skipped and not ours:
                    key = "passphrase_file" if cfg.passphrase_file else "passphrase_command"
                    raise UsageError(
                        exc.message,
                        hint=f"{key} in {cfg.path} is only for the vault its 'vault =' names"
                        f" ({cfg.vault or 'none'}); for this vault use --passphrase-file,"
                        " --passphrase-command or POPVAULT_PASSPHRASE",
                    ) from None
                raise
        return self._passphrase

    def passphrase(self, *, confirm: bool = False) -> bytes:
        """The vault passphrase (asked once per command, then remembered)."""
        return self.passphrase_source(confirm=confirm).value

    def check_vault(self) -> str:
        """The vault path, checked to hold a vault (VaultNotFound, exit 10, if not)
        without asking for the passphrase."""
        path = self.require_vault_path()
        from popvault.vault import as_backend, read_config

        read_config(*as_backend(path))
        return path

    def open_vault_for_rebuild(self) -> Vault:
        return self.open_vault(sync=False)

    def open_vault(
        self,
        *,
        write: bool = False,
        command: str = "popvault",
        sync: bool = True,
        repairing: bool = False,
    ) -> Vault:
        """Open the vault. A wrong passphrase typed at the prompt is asked again
        (:data:`PROMPT_TRIES` tries in all); WrongPassphrase (12) then, or at once for
        any other source, with a hint naming the source."""
        path = self.check_vault()
        for attempt in range(1, PROMPT_TRIES + 1):
            source = self.passphrase_source()
            try:
                vault = Vault.open(
                    path,
                    source.value,
                    write=write,
                    command=command,
                    cache_file=Path(self.cache) if self.cache else None,
                    warn=self.warn,
                    sync=sync,
                    repairing=repairing,
                )
                if not repairing:
                    # lost commits or a rollback: said even under -q (format §8.6)
                    for text in vault.damage:
                        warning(f"{text}; run 'popvault check', then 'popvault repair'")
                return vault
            except WrongPassphrase as exc:
                if not source.prompted or attempt == PROMPT_TRIES:
                    raise WrongPassphrase(exc.message, hint=wrong_passphrase_hint(source)) from None
                warning("wrong passphrase; try again")
                self._passphrase = None
        raise AssertionError("unreachable")


def wrong_passphrase_hint(source: Passphrase) -> str:
    if source.prompted:
        return f"{PROMPT_TRIES} passphrases typed at the prompt were wrong"
    return f"the passphrase came from {source.source}: check it"


def _interactive() -> bool:
    return os.isatty(0)


def _prompt(confirm: bool) -> str:
    return ask_secret("Vault passphrase", confirm=confirm)


pass_ctx = click.make_pass_decorator(Context)
