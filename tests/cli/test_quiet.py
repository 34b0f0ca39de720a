"""``-q/--quiet`` works before the command (global) and after it, for every command."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import run


def test_quiet_after_the_command_silences_success(vault: Path) -> None:
    loud = run("--vault", vault, "check")
    assert loud.code == 0 and "no problems found" in loud.err
    for args in (("--quiet", "check"), ("check", "--quiet"), ("check", "-q")):
        res = run("--vault", vault, *args)
        assert res.code == 0, res
        assert res.err == "" and res.out == b"", res


def test_quiet_never_hides_errors(tmp_path: Path) -> None:
    res = run("--vault", tmp_path / "missing", "check", "--quiet")
    assert res.code == 10
    assert res.err.startswith("popvault: error:")
