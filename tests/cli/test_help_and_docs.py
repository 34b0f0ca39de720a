"""Every command has help text, answers --help, and is documented in docs/cli.md.

Walks the click group recursively, so a new command or option fails here until it is
described: a heading ``### popvault <command path>`` and every option string literally.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest

from popvault.cli.main import cli
from tests.cli.helpers import REPO, run

DOCS = REPO / "docs" / "cli.md"


def _walk(
    cmd: click.Command, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in sorted(cmd.list_commands(ctx)):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, f"listed command {name!r} does not load"
            yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(cli, ()))
SUBCOMMANDS = [(p, c) for p, c in COMMANDS if p]


def _id(path: tuple[str, ...]) -> str:
    return " ".join(path) or "popvault"


def _option_strings(cmd: click.Command) -> list[str]:
    out: list[str] = []
    for param in cmd.params:
        if isinstance(param, click.Option):
            out += [s for s in (*param.opts, *param.secondary_opts) if s.startswith("--")]
    return out


def _docs() -> str:
    assert DOCS.is_file(), f"{DOCS} does not exist: every command must be documented there"
    return DOCS.read_text(encoding="utf-8")


def test_the_walk_finds_nested_commands() -> None:
    paths = {p for p, _ in COMMANDS}
    assert ("key", "passwd") in paths
    assert ("index", "rebuild") in paths
    assert ("import",) in paths
    assert len(paths) >= 17


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[_id(p) for p, _ in COMMANDS])
def test_help_text_and_help_option(path: tuple[str, ...], cmd: click.Command) -> None:
    assert (cmd.help or "").strip(), f"'{_id(path)}' has no help text"
    for param in cmd.params:
        if isinstance(param, click.Option) and param.name not in ("help", "version"):
            assert (param.help or "").strip(), f"'{_id(path)}' option {param.opts} has no help"
    res = run(*path, "--help")
    assert res.code == 0, str(res)
    assert res.text.startswith("Usage: popvault"), str(res)
    first_line = (cmd.help or "").strip().splitlines()[0]
    assert first_line.split()[0] in res.text


@pytest.mark.parametrize(("path", "cmd"), SUBCOMMANDS, ids=[_id(p) for p, _ in SUBCOMMANDS])
def test_documented_in_docs_cli_md(path: tuple[str, ...], cmd: click.Command) -> None:
    docs = _docs()
    heading = f"### popvault {' '.join(path)}"
    headings = {line.rstrip() for line in docs.splitlines() if line.startswith("### ")}
    assert heading in headings, f"docs/cli.md lacks the heading '{heading}'"
    missing = [o for o in _option_strings(cmd) if not re.search(re.escape(o) + r"(?![\w-])", docs)]
    assert not missing, f"docs/cli.md does not mention {missing} of '{_id(path)}'"


def test_global_options_documented() -> None:
    docs = _docs()
    missing = [o for o in _option_strings(cli) if not re.search(re.escape(o) + r"(?![\w-])", docs)]
    assert not missing, f"docs/cli.md does not mention the global options {missing}"


def test_exit_codes_documented() -> None:
    docs = _docs()
    for code in (0, 1, 2, 3, 10, 11, 12, 20, 75, 77):
        assert re.search(rf"(?m)^\|\s*`?{code}`?\s*\|", docs), (
            f"exit code {code} not in a table row"
        )


def test_readme_test_command_exists() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "bash .ci/run" in readme
    script = REPO / ".ci" / "run"
    assert script.is_file()
    text = script.read_text(encoding="utf-8")
    assert re.search(r"(?m)^\s*python3 -m pytest\b", text), ".ci/run does not run python3 -m pytest"


def test_version() -> None:
    res = run("--version")
    assert res.code == 0
    assert re.match(r"popvault, version \d+\.\d+", res.text), str(res)
