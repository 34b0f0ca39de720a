"""``popvault stats``: sizes and ratios of the vault."""

from __future__ import annotations

import json

import click

from popvault.cli.context import Context, pass_ctx
from popvault.cli.output import human_bytes, traffic_line
from popvault.vault import storage_traffic


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def command(ctx: Context, as_json: bool) -> None:
    """Messages, accounts, raw and stored bytes, dedup and compression ratios (and, for
    an S3 vault, the requests and bytes this command cost)."""
    with ctx.open_vault() as vault:
        s = vault.stats()
    s["storage"] = storage_traffic(vault)
    if as_json:
        click.echo(json.dumps(s))
        return
    click.echo(f"messages:          {s['messages']} distinct ({s['arrivals']} arrivals)")
    click.echo(f"accounts:          {s['accounts']}")
    click.echo(
        f"raw bytes:         {human_bytes(s['raw_bytes'])} distinct,"
        f" {human_bytes(s['arrival_bytes'])} as received"
    )
    click.echo(
        f"stored bytes:      {human_bytes(s['stored_bytes'])}"
        f" in {s['packs']} packs, {s['commits']} commits"
    )
    click.echo(f"dedup ratio:       {s['dedup_ratio']:.2f}x (arrivals / distinct)")
    click.echo(f"compression ratio: {s['compression_ratio']:.2f}x (distinct / stored)")
    if s["storage"] is not None:
        click.echo(traffic_line(s["storage"]))
