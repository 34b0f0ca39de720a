"""The message filter options shared by list, export and restore."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from popvault.app.common import parse_when
from popvault.errors import UsageError
from popvault.vault import Filter

F = TypeVar("F", bound=Callable[..., Any])


#: The options' parameter names, in :func:`build_filter` order.
_FILTER_PARAMS = ("account", "since", "until", "from_", "to", "subject", "ids")


def filter_options(f: F) -> F:
    """The filters of list and export, handed to the command as one ``flt: Filter``."""
    return _filters(f, "--to")


def restore_filter_options(f: F) -> F:
    """The same filters for restore, whose --to names the target: --to-addr instead."""
    return _filters(f, "--to-addr")


def _filters(f: F, to_flag: str) -> F:
    opts = [
        click.option("--account", help="Only messages archived under this account."),
        click.option("--since", metavar="DATE", help="Delivered on or after DATE (YYYY-MM-DD)."),
        click.option("--until", metavar="DATE", help="Delivered before DATE (YYYY-MM-DD)."),
        click.option("--from", "from_", metavar="TEXT", help="From header contains TEXT."),
        click.option(to_flag, "to", metavar="TEXT", help="To or Cc header contains TEXT."),
        click.option("--subject", metavar="TEXT", help="Subject contains TEXT."),
        click.option(
            "--ids",
            metavar="FILE",
            help="Only these message ids: one a line, or 'list --json' output.",
        ),
    ]

    @functools.wraps(f)
    def with_filter(*args: Any, **kwargs: Any) -> Any:
        values = [kwargs.pop(name) for name in _FILTER_PARAMS]
        return f(*args, flt=build_filter(*values), **kwargs)

    command: Any = with_filter
    for opt in reversed(opts):
        command = opt(command)
    return cast(F, command)


def read_ids(path: str) -> frozenset[bytes]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read --ids file {path}: {exc.strerror}") from None
    ids: set[bytes] = set()
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("{"):
            try:
                s = str(json.loads(s)["id"])
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"{path}:{n}: not a 'list --json' line") from None
        if not re.fullmatch(r"[0-9a-fA-F]{64}", s):
            raise UsageError(f"{path}:{n}: not a full message id (64 hex digits)")
        ids.add(bytes.fromhex(s))
    return frozenset(ids)


def build_filter(
    account: str | None,
    since: str | None,
    until: str | None,
    from_: str | None,
    to: str | None,
    subject: str | None,
    ids: str | None,
) -> Filter:
    return Filter(
        account=account,
        since=parse_when(since, option="--since") if since else None,
        until=parse_when(until, option="--until") if until else None,
        from_=from_,
        to=to,
        subject=subject,
        ids=read_ids(ids) if ids else None,
    )
