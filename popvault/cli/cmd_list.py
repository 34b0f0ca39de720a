"""``popvault list``: the messages in the vault, one a line or as JSON lines."""

from __future__ import annotations

import datetime as dt
import json

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
    return {
        "id": row.id.hex(),
        "size": row.size,
        "delivered": _iso(row.delivered),
        "date": _iso(row.date),
        "received": _iso(row.received),
        "archived": _iso(row.first_archived),
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
        for row in vault.messages(flt):
            if as_json:
                click.echo(json.dumps(row_json(row), ensure_ascii=False))
            else:
                when = dt.datetime.fromtimestamp(row.delivered, dt.UTC).strftime("%Y-%m-%d %H:%M")
                click.echo(
                    f"{row.id.hex()[:12]}  {when}  {row.size:>9}  {_clip(row.from_, 28):<28}"
                    f"  {_clip(row.subject, 60)}"
                )
