"""Where secrets come from: passphrase and password sources, in documented order.

Passphrase order (docs/cli.md, "Where the passphrase comes from"): ``--passphrase-file``,
``--passphrase-command``, the ``POPVAULT_PASSPHRASE`` environment variable, the config
file's ``passphrase_file`` and ``passphrase_command`` (which the caller passes only for
the config's own vault), then an interactive prompt supplied by the caller. The first
source that is set is used, and named in :attr:`Passphrase.source` so that errors can
say where a wrong passphrase came from. Secrets are never logged; a command's stderr
passes through to the user.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from popvault.errors import UsageError


def read_secret_file(path: str) -> str:
    """The first line of a secret file (``~`` expanded)."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read secret file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"secret file {path} is not UTF-8 text") from None
    line = text.splitlines()[0] if text else ""
    if not line:
        raise UsageError(f"secret file {path} is empty")
    return line


def run_secret_command(command: str, what: str) -> str:
    """Run ``command`` (through the shell, as mpop/msmtp do) and take its first line."""
    try:
        out = subprocess.run(  # noqa: S602 - the user's own configured command
            command, shell=True, stdout=subprocess.PIPE, timeout=120, check=False
        )
    except subprocess.TimeoutExpired:
        raise UsageError(f"{what} command timed out after 120 s") from None
    if out.returncode != 0:
        first = shlex.split(command)[0] if command.strip() else command
        raise UsageError(f"{what} command ({first}) failed with exit code {out.returncode}")
    text = out.stdout.decode("utf-8", "replace").splitlines()
    if not text or not text[0]:
        raise UsageError(f"{what} command printed nothing")
    return text[0]


@dataclass(frozen=True)
class Passphrase:
    """A passphrase and where it came from."""

    value: bytes = field(repr=False)
    #: The source, for messages: ``POPVAULT_PASSPHRASE``, ``--passphrase-file FILE``,
    #: ``passphrase_command in CONFIG``, ``the prompt``, ...
    source: str
    #: The file it was read from (``--passphrase-file`` or the config's), else None.
    file: str | None = None
    #: Typed at the interactive prompt (so asking again makes sense).
    prompted: bool = False


def find_passphrase(
    file: str | None,
    command: str | None,
    prompt: Callable[[bool], str] | None,
    *,
    confirm: bool = False,
    env: str = "POPVAULT_PASSPHRASE",
    config_file: str | None = None,
    config_command: str | None = None,
    config_path: str | None = None,
    option_prefix: str = "--passphrase",
) -> Passphrase:
    """The passphrase from the first source that is set: the options (``file``,
    ``command``), the environment variable ``env``, the config file's ``config_file`` /
    ``config_command`` (from the file ``config_path``), then ``prompt``. UsageError
    (exit 2) when none is set, a source fails, or the passphrase is empty."""
    in_config = f" in {config_path}" if config_path else " in the config"
    if file:
        value = read_secret_file(file)
        found = Passphrase(b"", f"{option_prefix}-file {file}", file=file)
    elif command:
        value = run_secret_command(command, "passphrase")
        found = Passphrase(b"", f"{option_prefix}-command")
    elif os.environ.get(env):
        value = os.environ[env]
        found = Passphrase(b"", env)
    elif config_file:
        value = read_secret_file(config_file)
        found = Passphrase(b"", f"passphrase_file {config_file}{in_config}", file=config_file)
    elif config_command:
        value = run_secret_command(config_command, "passphrase")
        found = Passphrase(b"", f"passphrase_command{in_config}")
    elif prompt is not None:
        value = prompt(confirm)
        found = Passphrase(b"", "the prompt", prompted=True)
    else:
        raise UsageError(
            "no passphrase given",
            hint=f"use {option_prefix}-file, {option_prefix}-command or {env}",
        )
    if not value:
        raise UsageError(f"the passphrase is empty (it came from {found.source})")
    return Passphrase(value.encode("utf-8"), found.source, found.file, found.prompted)


def get_passphrase(
    file: str | None,
    command: str | None,
    prompt: Callable[[bool], str] | None,
    *,
    confirm: bool = False,
    env: str = "POPVAULT_PASSPHRASE",
    config_file: str | None = None,
    config_command: str | None = None,
    option_prefix: str = "--passphrase",
) -> bytes:
    """The passphrase's bytes from the first source that is set (see
    :func:`find_passphrase`)."""
    return find_passphrase(
        file,
        command,
        prompt,
        confirm=confirm,
        env=env,
        config_file=config_file,
        config_command=config_command,
        option_prefix=option_prefix,
    ).value
