"""Imports only point down (STYLE.md): vault, pop3, imap and mailboxes never import each other,
nor app or cli; app never imports cli. Shared leaves: errors, interrupts, tls."""

from __future__ import annotations

import ast
from pathlib import Path

import popvault

ROOT = Path(popvault.__file__).parent
SHARED = {"errors", "fsync", "interrupts", "tls"}
ALLOWED: dict[str, set[str]] = {
    "vault": {"vault"},
    "pop3": {"pop3"},
    "imap": {"imap"},
    "mailboxes": {"mailboxes"},
    "app": {"app", "vault", "pop3", "imap", "mailboxes"},
    "demo": {"demo", "app", "vault", "pop3", "mailboxes"},
    "web": {"web", "app", "vault", "mailboxes"},
    "cli": {"cli", "app", "demo", "web", "vault", "pop3", "imap", "mailboxes"},
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


#: Attributes of a Vault that only popvault.vault may touch (its parts and its lock).
PRIVATE_VAULT = ("cache", "keys", "backend", "mutex", "_writer", "_reader", "_log", "_lock")


def _vault_leaks(path: Path) -> list[str]:
    """Imports of popvault.vault's modules (not the package) and uses of a Vault's parts
    (``vault.cache``, ``v.keys``...) in one module outside popvault.vault."""
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("popvault.vault."):
            out.append(f"{path.name}:{node.lineno} imports {node.module}")
        if (
            isinstance(node, ast.Attribute)
            and node.attr in PRIVATE_VAULT
            and isinstance(node.value, ast.Name)
            and node.value.id in ("vault", "v", "self.vault")
        ):
            out.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return out


def test_only_the_vault_facade_is_used_outside_the_vault() -> None:
    """app/, demo/ and cli/ see `popvault.vault` (the package: Vault, records, filters),
    never its modules, lock, cache, keys or backend."""
    leaks: list[str] = []
    checked = 0
    for layer in ("app", "demo", "cli"):
        for module in sorted((ROOT / layer).rglob("*.py")):
            checked += 1
            leaks += _vault_leaks(module)
    assert checked > 20
    assert leaks == []


def test_the_facade_check_sees_a_leak(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from popvault.vault.cache import IndexCache\n"
        "def f(vault):\n    with vault.mutex:\n        return vault.cache\n"
    )
    assert len(_vault_leaks(bad)) == 3


def test_sql_lives_in_the_cache_module_only() -> None:
    """SQL (sqlite3, or SQLCipher's sqlcipher3) only in popvault/vault/cache.py."""
    users = [
        str(m.relative_to(ROOT))
        for m in ROOT.rglob("*.py")
        if {"sqlite3", "sqlcipher3"} & _modules(m) and m != ROOT / "vault" / "cache.py"
    ]
    assert users == []


def _modules(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_no_module_is_a_big_room() -> None:
    """Every module one concept: none over 600 lines."""
    big = {
        str(m.relative_to(ROOT)): n
        for m in ROOT.rglob("*.py")
        if (n := len(m.read_text(encoding="utf-8").splitlines())) > 600
    }
    assert big == {}
