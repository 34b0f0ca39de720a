"""Every CLI test runs with a known passphrase and a private cache and config home."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import PASSPHRASE, make_vault

_CLEARED = (
    "POPVAULT_VAULT",
    "POPVAULT_CONFIG",
    "POPVAULT_CACHE",
    "POPVAULT_NEW_PASSPHRASE",
    "POPVAULT_DEBUG",
    "POPVAULT_POP3_PASSWORD",
    "POPVAULT_IMAP_PASSWORD",
    "POPVAULT_CACHE_PLAINTEXT",
)


@pytest.fixture(autouse=True)
def pv_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """POPVAULT_PASSPHRASE and a private POPVAULT_CACHE_DIR; no inherited popvault env."""
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POPVAULT_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("POPVAULT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    """An empty vault (test KDF) at tmp_path/vault."""
    return make_vault(tmp_path / "vault")
