"""Imports only point down (STYLE.md): vault, pop3 and mailboxes never import each other,
nor app or cli; app never imports cli. Shared leaves: errors, interrupts, tlspin."""

from __future__ import annotations

import ast
from pathlib import Path

import popvault

ROOT = Path(popvault.__file__).parent
SHARED = {"errors", "fsync", "interrupts", "tlspin"}
ALLOWED: dict[str, set[str]] = {
    "vault": {"vault"},
    "pop3": {"pop3"},
    "mailboxes": {"mailboxes"},
    "app": {"app", "vault", "pop3", "mailboxes"},
    "demo": {"demo", "app", "vault", "pop3", "mailboxes"},
    "cli": {"cli", "app", "demo", "vault", "pop3", "mailboxes"},
}


def _imports(path: Path) -> set[str]:
    """The popvault sub-packages a module imports (first component after popvault)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "popvault" and len(parts) > 1:
                out.add(parts[1])
    return out


def test_imports_point_down() -> None:
    wrong: list[str] = []
    checked = 0
    for layer, allowed in ALLOWED.items():
        for module in sorted((ROOT / layer).rglob("*.py")):
            checked += 1
            for target in _imports(module) - allowed - SHARED:
                wrong.append(f"{module.relative_to(ROOT)} imports popvault.{target}")
    assert checked > 40
    assert wrong == []


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from popvault.cli.main import cli\nimport popvault.pop3.client\n")
    assert _imports(bad) == {"cli", "pop3"}
