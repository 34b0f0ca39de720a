"""``popvault copy DEST``: copy the vault to another location, incrementally (format §8.8)."""

from __future__ import annotations

import json

import click

from popvault.cli.context import Context, pass_ctx
from popvault.cli.output import CliProgress, human_bytes


class _ObjectBar(CliProgress):
    """The copy's bar counts objects (commit records, packs, segments), not messages."""

    def start(self, label: str, total: int | None = None, total_bytes: int | None = None) -> None:
        super().start(label, total, total_bytes)
        if self._bar is not None:
            self._bar.unit = "object" if label == "copying" else "commit"


#: Object folders, as the summary names them.
_KINDS = (
    ("commits", "commit record"),
    ("packs", "pack"),
    ("index", "segment"),
    ("keys", "key slot"),
    ("config", "config"),
)


@click.command("copy")
@click.argument("destination", metavar="DEST")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@pass_ctx
def command(ctx: Context, destination: str, as_json: bool) -> None:
    """Copy the vault to DEST (a folder or s3://BUCKET[/PREFIX]), incrementally.

    Only what DEST lacks is copied, each object verified first; packs and segments go
    before the commits that name them, so an interrupted copy is a valid, older vault
    and a rerun goes on. A new DEST gets the same vault id and key slots (the same
    passphrase opens it). Nothing is ever deleted on either side. DEST holding another
    vault, or anything that is not a vault, is refused (exit 2); DEST with commits this
    vault lacks is refused (exit 20), naming them."""
    with ctx.open_vault() as vault:
        report = vault.copy_to(destination, progress=_ObjectBar(ctx.quiet or as_json))
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    if ctx.quiet:
        return
    if report.bucket_created:
        click.echo(f"created the bucket of {destination}", err=True)
    if report.created:
        click.echo(f"created a copy of vault {report.vault_id} at {destination}", err=True)
    if report.upgraded:
        click.echo(f"raised {destination} to this vault's format version", err=True)
    kinds = report.kinds
    parts = [f"{kinds[k]} {what}{'' if kinds[k] == 1 else 's'}" for k, what in _KINDS if k in kinds]
    detail = f" ({', '.join(parts)})" if parts else ""
    click.echo(
        f"copied {report.objects} objects{detail}, {human_bytes(report.bytes)};"
        f" skipped {report.skipped} already at the destination;"
        f" {destination} has {report.commits + report.commits_present} commits",
        err=True,
    )
