"""``popvault list``: the messages in the vault, one a line or as JSON lines."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import click

from popvault.cli.context import Context, pass_ctx
from popvault.cli.filters import filter_options
from popvault.vault import Filter, MessageRow


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def row_json(row: MessageRow) -> dict[str, object]:
    """The documented ``list --json`` object (docs/cli.md)."""
    received, archived = _iso(row.received), _iso(row.first_archived)
    delivered = row.delivered  # one of the three times: its text is made once
    if delivered == row.received:
        shown = received
    elif delivered == row.first_archived:
        shown = archived
    else:
        shown = _iso(delivered)
    return {
        "id": row.id.hex(),
        "size": row.size,
        "delivered": shown,
        "date": _iso(row.date),
        "received": received,
        "archived": archived,
        "from": row.from_,
        "to": row.to,
        "cc": row.cc,
        "subject": row.subject,
        "message_id": row.message_id,
        "accounts": row.accounts,
        "uidls": row.uidls,
        "sources": row.sources,
        "flags": row.flags,
    }


def _clip(s: str, n: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


@click.command("list")
@filter_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line (see docs/cli.md).")
@pass_ctx
def command(
    ctx: Context,
    flt: Filter,
    as_json: bool,
) -> None:
    """List archived messages, oldest delivery first."""
    with ctx.open_vault() as vault:
        echo_lines(json_line(row) if as_json else text_line(row) for row in vault.messages(flt))


def echo_lines(lines: Iterable[str]) -> None:
    """Print ``lines`` (list's and search's rows) :data:`_LINES` at a time."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == _LINES:
            click.echo("\n".join(batch))
            batch.clear()
    if batch:
        click.echo("\n".join(batch))


#: Lines written at once: the rows stream out a window at a time, not one write (and
#: flush) a row.
_LINES = 500
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def json_line(row: MessageRow, **extra: object) -> str:
    """A row as ``list --json`` prints it, with ``extra`` keys after its own."""
    return _ENCODE({**row_json(row), **extra} if extra else row_json(row))


def text_line(row: MessageRow) -> str:
    """A row as ``list`` prints it: id, delivery, size, sender, subject."""
    when = dt.datetime.fromtimestamp(row.delivered, dt.UTC).strftime("%Y-%m-%d %H:%M")
    return (
        f"{row.id.hex()[:12]}  {when}  {row.size:>9}  {_clip(row.from_, 28):<28}"
        f"  {_clip(row.subject, 60)}"
    )
