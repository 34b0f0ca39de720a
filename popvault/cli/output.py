"""Terminal output: error lines, secret prompts, progress bars (tqdm, stderr, only on a
terminal)."""

from __future__ import annotations

import getpass
import sys
from typing import Any

import click
from tqdm import tqdm

from popvault.errors import UsageError

#: How often a prompt asks (for a non-empty answer, two entries that match, or a
#: passphrase that opens the vault) before the command gives up.
PROMPT_TRIES = 3


def error(message: str, hint: str | None = None) -> None:
    click.echo(f"popvault: error: {message}", err=True)
    if hint:
        click.echo(f"popvault: hint: {hint}", err=True)


def warning(message: str) -> None:
    click.echo(f"popvault: warning: {message}", err=True)


def ask_secret(label: str, *, confirm: bool = False) -> str:
    """Ask for a secret on the terminal without echo (``LABEL: ``); with ``confirm``
    twice, asking again when the two entries differ.

    Gives up after :data:`PROMPT_TRIES` empty answers or mismatches with UsageError
    (exit 2), and also when the input ends (Ctrl-D), so every failure is a
    ``popvault: error:`` line. Ctrl-C raises KeyboardInterrupt as anywhere else.
    """
    for attempt in range(1, PROMPT_TRIES + 1):
        value = _ask(label, label.lower())
        if not confirm:
            return value
        if _ask("Repeat for confirmation", label.lower()) == value:
            return value
        if attempt < PROMPT_TRIES:
            warning("the two entries do not match; try again")
    raise UsageError(
        f"the two entries of the {label.lower()} did not match {PROMPT_TRIES} times",
        hint="run the command again and type the same text twice",
    )


def _ask(label: str, what: str) -> str:
    for _ in range(PROMPT_TRIES):
        try:
            value = getpass.getpass(f"{label}: ")
        except EOFError:
            click.echo(err=True)
            raise UsageError(
                f"no {what} entered: the input ended",
                hint="type it and press Enter (Ctrl-D ends the input)",
            ) from None
        if value:
            return value
    raise UsageError(f"no {what} entered ({PROMPT_TRIES} empty answers)")


class CliProgress:
    """Implements app.progress.Progress: a tqdm bar per phase on a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bars = not quiet and sys.stderr.isatty()
        self._bar: Any = None

    def start(self, label: str, total: int | None = None, total_bytes: int | None = None) -> None:
        self.done()
        if self.bars:
            if total_bytes is not None and total is None:
                self._bar = tqdm(
                    total=total_bytes,
                    desc=label,
                    unit="B",
                    unit_scale=True,
                    file=sys.stderr,
                    leave=False,
                )
                self._bar.bytes_mode = True
            else:
                self._bar = tqdm(total=total, desc=label, unit="msg", file=sys.stderr, leave=False)
                self._bar.bytes_mode = False

    def advance(self, messages: int = 1, nbytes: int = 0) -> None:
        if self._bar is not None:
            self._bar.update(nbytes if self._bar.bytes_mode else messages)

    def done(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def info(self, text: str) -> None:
        if not self.quiet:
            if self._bar is not None:
                tqdm.write(text, file=sys.stderr)
            else:
                click.echo(text, err=True)

    def warn(self, text: str) -> None:
        if not self.quiet:
            if self._bar is not None:
                tqdm.write(f"popvault: warning: {text}", file=sys.stderr)
            else:
                warning(text)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


_KIND_LABELS = {
    "get": "GET",
    "ranged_get": "ranged GET",
    "put": "PUT",
    "list": "LIST",
    "delete": "DELETE",
    "head": "HEAD",
    "other": "other",
}


def traffic_line(t: dict[str, Any]) -> str:
    """``storage: 12 requests (2 GET, 8 PUT, 2 LIST), 16.0 MiB sent, 3.1 KiB received``"""
    kinds = ", ".join(f"{n} {_KIND_LABELS[k]}" for k, n in t["by_kind"].items() if n)
    return (
        f"storage: {t['requests']} requests ({kinds or 'none'}),"
        f" {human_bytes(t['bytes_sent'])} sent, {human_bytes(t['bytes_received'])} received"
    )
