"""Where secrets come from: passphrase and password sources, in documented order.

Passphrase order (docs/cli.md): ``--passphrase-file``, ``--passphrase-command``, the
``POPVAULT_PASSPHRASE`` environment variable, the config file's ``passphrase_file`` and
``passphrase_command``, then an interactive prompt supplied by the caller. Secrets are
never logged; a command's stderr passes through to the user.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
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


def get_passphrase(
    file: str | None,
    command: str | None,
    prompt: Callable[[bool], str] | None,
    *,
    confirm: bool = False,
    env: str = "POPVAULT_PASSPHRASE",
    config_file: str | None = None,
    config_command: str | None = None,
) -> bytes:
    """The vault passphrase from the first source that is set: the options, the
    environment variable, the config file's ``passphrase_file`` / ``passphrase_command``,
    then the prompt (see module doc)."""
    if file:
        value = read_secret_file(file)
    elif command:
        value = run_secret_command(command, "passphrase")
    elif os.environ.get(env):
        value = os.environ[env]
    elif config_file:
        value = read_secret_file(config_file)
    elif config_command:
        value = run_secret_command(config_command, "passphrase")
    elif prompt is not None:
        value = prompt(confirm)
    else:
        raise UsageError(
            "no passphrase given",
            hint=f"use --passphrase-file, --passphrase-command or {env}",
        )
    if not value:
        raise UsageError("the passphrase is empty")
    return value.encode("utf-8")
