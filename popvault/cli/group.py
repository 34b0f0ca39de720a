"""Command groups that behave: help for a bare group, quiet exit on a closed stdout."""

from __future__ import annotations

from typing import Any

import click


class StdoutClosed(Exception):
    """The reader of our stdout went away (``popvault list | head -1``): not an error.

    Raised instead of BrokenPipeError so that click's own handling of it (exit 1) is
    bypassed; :func:`popvault.cli.main.main` ends quietly with exit 0."""


class HelpGroup(click.Group):
    """A group that prints its help (exit 0) when called without a subcommand, the same
    with every click version, and turns a closed stdout into :class:`StdoutClosed`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit()
        return super().parse_args(ctx, args)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError as exc:  # --help into a pipe closed early
            raise StdoutClosed() from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise StdoutClosed() from exc
