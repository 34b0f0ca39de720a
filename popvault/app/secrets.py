"""Where secrets come from: one resolver for the vault passphrase and every password.

:func:`resolve_secret` takes a secret from the first of an ordered list of
:class:`Source` that is set (a file's first line, a command's first output line, an
environment variable, a configured value, an interactive prompt) and names that source in
:attr:`Secret.source`, so that errors can say where a wrong secret came from. Each kind of
secret has its list here, in its documented order: the vault passphrase
(:func:`find_passphrase`; docs/cli.md, "Where the passphrase comes from":
``--passphrase-file``, ``--passphrase-command``, ``POPVAULT_PASSPHRASE``, the config
file's ``passphrase_file`` and ``passphrase_command`` (which the caller passes only for
the config's own vault), then the prompt), a configured account's password
(:func:`account_password`; docs/config.md: ``password_command``, ``password_env``,
``password_file``, ``password``) and the password of a one-off POP3 or IMAP account
(:func:`one_off_password`: ``--password-command``, ``POPVAULT_POP3_PASSWORD`` or
``POPVAULT_IMAP_PASSWORD``, the prompt). The prompt is the caller's (the CLI asks on the
terminal); nothing here asks. Secrets are never logged; a command's stderr passes through
to the user.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from popvault.app.config import AccountConfig
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
        # the command's text is not shown: a token may be part of it (TOKEN=... cmd)
        raise UsageError(
            f"{what} command failed with exit code {out.returncode}",
            hint="its own error output, if any, is above; run it by hand to see why",
        )
    text = out.stdout.decode("utf-8", "replace").splitlines()
    if not text or not text[0]:
        raise UsageError(f"{what} command printed nothing")
    return text[0]


@dataclass(frozen=True)
class Secret:
    """A secret and the source it came from."""

    value: str = field(repr=False)
    #: The source, for messages (the :attr:`Source.label` of the one used).
    source: str
    #: The file it was read from, for a file source; else None.
    file: str | None = None
    #: Typed at the interactive prompt (so asking again makes sense).
    prompted: bool = False


@dataclass(frozen=True)
class Source:
    """One place a secret may come from. ``read`` gives the secret, or None when this
    source is not set (the next one is tried); it raises UsageError when the source is
    set but fails (a file that cannot be read, a command that fails)."""

    label: str
    read: Callable[[], str | None] = field(repr=False)
    file: str | None = None
    prompted: bool = False


def from_file(path: str | None, label: str) -> Source:
    """The first line of the file ``path`` (``~`` expanded), when ``path`` is set."""
    return Source(label, lambda: read_secret_file(path) if path else None, file=path)


def from_command(command: str | None, what: str, label: str) -> Source:
    """The first line ``command`` prints, when ``command`` is set; ``what`` names the
    secret in the command's errors (``{what} command ... failed``)."""
    return Source(label, lambda: run_secret_command(command, what) if command else None)


def from_env(name: str | None, label: str, *, unset: str | None = None) -> Source:
    """The environment variable ``name``, when ``name`` is set. An unset or empty variable
    is skipped, or with ``unset`` is a UsageError with that message."""

    def read() -> str | None:
        if not name:
            return None
        value = os.environ.get(name)
        if not value and unset is not None:
            raise UsageError(unset)
        return value or None

    return Source(label, read)


def from_value(value: str | None, label: str) -> Source:
    """A value given as it is (a configured plaintext password), when not None."""
    return Source(label, lambda: value)


def from_prompt(prompt: Callable[[], str] | None, label: str = "the prompt") -> Source:
    """What ``prompt`` returns (the caller asks), when there is a prompt (a terminal)."""
    return Source(label, prompt if prompt is not None else lambda: None, prompted=True)


def resolve_secret(
    sources: Iterable[Source], missing: UsageError, *, empty: str | None = None
) -> Secret:
    """The secret from the first of ``sources`` that is set, tried in order; later sources
    are not read. Raises ``missing`` when none is set, UsageError (exit 2) when the
    source used fails, and, when ``empty`` names the secret, when its value is empty."""
    for source in sources:
        value = source.read()
        if value is None:
            continue
        if empty is not None and not value:
            raise UsageError(f"the {empty} is empty (it came from {source.label})")
        return Secret(value, source.label, source.file, source.prompted)
    raise missing


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
    found = resolve_secret(
        [
            from_file(file, f"{option_prefix}-file {file}"),
            from_command(command, "passphrase", f"{option_prefix}-command"),
            from_env(env, env),
            from_file(config_file, f"passphrase_file {config_file}{in_config}"),
            from_command(config_command, "passphrase", f"passphrase_command{in_config}"),
            from_prompt(None if prompt is None else lambda: prompt(confirm)),
        ],
        UsageError(
            "no passphrase given",
            hint=f"use {option_prefix}-file, {option_prefix}-command or {env}",
        ),
        empty="passphrase",
    )
    return Passphrase(found.value.encode("utf-8"), found.source, found.file, found.prompted)


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


def account_password(acct: AccountConfig) -> str:
    """The account's password (never logged) from the first of its config's
    ``password_command``, ``password_env``, ``password_file`` and ``password`` that is
    set. UsageError (exit 2) when none is set, the command fails, the variable is not set
    or the file cannot be read."""
    name = acct.name
    password_file = os.path.expanduser(acct.password_file) if acct.password_file else None
    return resolve_secret(
        [
            from_command(
                acct.password_command, f"account {name}: password", f"password_command of {name}"
            ),
            from_env(
                acct.password_env,
                f"password_env of {name}",
                unset=f"account {name}: environment variable {acct.password_env} is not set",
            ),
            from_file(password_file, f"password_file of {name}"),
            from_value(acct.password, f"password of {name}"),
        ],
        UsageError(
            f"account {name} has no password source",
            hint="set password_command, password_env or password_file in its config section",
        ),
    ).value


def one_off_password(command: str | None, what: str, prompt: Callable[[str], str] | None) -> str:
    """The password of a one-off account given by URL; ``what`` is ``POP3`` or ``IMAP``:
    from ``command`` (``--password-command``), else ``POPVAULT_POP3_PASSWORD`` /
    ``POPVAULT_IMAP_PASSWORD``, else ``prompt`` (asked with the label ``POP3 password``,
    ``IMAP password``; None when there is no terminal). UsageError (exit 2) when none
    is set or the command fails."""
    env = "POPVAULT_POP3_PASSWORD" if what == "POP3" else "POPVAULT_IMAP_PASSWORD"
    return resolve_secret(
        [
            from_command(command, f"{what} password", "--password-command"),
            from_env(env, env),
            from_prompt(None if prompt is None else lambda: prompt(f"{what} password")),
        ],
        UsageError(f"no {what} password", hint=f"set {env} or use --password-command"),
    ).value
