"""``popvault search QUERY``: full-text search over every message (docs/search.md)."""

from __future__ import annotations

import click

from popvault.app.search import Sort, index_run, parse_query, pending_count, search
from popvault.cli.cmd_list import echo_lines, json_line, text_line
from popvault.cli.context import Context, pass_ctx


@click.command("search")
@click.argument("query", nargs=-1, required=True)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object a line: list --json's keys, rank and snippet (see docs/cli.md).",
)
@click.option(
    "--sort",
    type=click.Choice(["rank", "date"]),
    default="rank",
    show_default=True,
    help="rank: most relevant first; date: newest delivery first.",
)
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N messages.")
@pass_ctx
def command(
    ctx: Context, query: tuple[str, ...], as_json: bool, sort: Sort, limit: int | None
) -> None:
    """Find messages by their words: QUERY as in docs/search.md.

    Words must all match; "exact phrases", prefix*, OR, -excluded, from: to: subject:
    body: filename: has:attachment account: before:YYYY-MM-DD after:YYYY-MM-DD.
    Quote a QUERY that holds -words (or put -- before it). Output like 'list'.
    Messages not indexed yet (after 'index rebuild' or a run with
    POPVAULT_SEARCH_INDEX=0) are indexed first."""
    parsed = parse_query(" ".join(query))  # a bad query fails before the passphrase
    with ctx.open_vault() as vault:
        missing = pending_count(vault)
        if missing:
            if not ctx.quiet:
                click.echo(f"indexing {missing} message(s) not yet indexed ...", err=True)
            done = index_run(vault, ctx.progress(), always=True)
            if done.partial:
                ctx.warn(f"{done.partial} message(s) could be indexed only in part")
        hits = search(vault, parsed, sort=sort, limit=limit, snippets=as_json)
        if as_json:
            echo_lines(json_line(h.row, rank=h.rank, snippet=h.snippet) for h in hits)
        else:
            echo_lines(text_line(h.row) for h in hits)
