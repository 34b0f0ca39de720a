"""``popvault demo``: back up built-in sample mail from a local POP3S server."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from popvault.cli.context import Context, pass_ctx
from popvault.demo.run import run_demo
from popvault.errors import PopvaultError


@click.command("demo")
@click.option(
    "--keep",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Keep the demo vault, mbox and certificate in DIR (must not exist yet).",
)
@pass_ctx
def command(ctx: Context, keep: str | None) -> None:
    """Run popvault end to end on built-in sample data, on 127.0.0.1 only.

    A local POP3S server serves sample messages; popvault backs them up into a
    throw-away vault, runs again (nothing new), lists, exports to mbox, and checks;
    then says how to browse the vault (popvault serve)."""
    if keep and Path(keep).exists():
        raise PopvaultError(f"{keep} already exists", hint="name a new directory for --keep")
    say = (lambda _s: None) if ctx.quiet else click.echo
    rep = run_demo(Path(keep) if keep else None, progress=ctx.progress(), say=say)
    if rep.second_run_fetched != 0 or rep.first_run_fetched != rep.messages_served:
        raise PopvaultError("demo did not behave as expected")
    if not ctx.quiet:
        click.echo("demo complete: every sample message archived once, exported and verified")
        click.echo(browse_hint(Path(keep) if keep else None))


def browse_hint(keep: Path | None) -> str:
    """How to browse the demo vault in a web browser (``popvault serve``)."""
    if keep is None:
        return (
            "to browse a demo vault in your web browser, run 'popvault demo --keep DIR',"
            " then the 'popvault serve' command it prints"
        )
    vault = shlex.quote(str(keep.resolve() / "vault"))
    return (
        "browse the demo vault in your web browser (open the URL it prints; Ctrl-C stops):\n"
        f"  POPVAULT_PASSPHRASE='demo passphrase' popvault --vault {vault} serve"
    )
