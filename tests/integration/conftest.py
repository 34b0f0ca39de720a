"""Fixtures of the backup tests against Dovecot: a private cache folder, a new vault
(test KDF) and that vault opened for writing. Modules with other needs define their own
``cache_dir``, which takes precedence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from popvault.vault.vault import Vault
from tests.support.backup_helpers import create_vault, open_vault


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("POPVAULT_CACHE_DIR", str(path))
    return path


@pytest.fixture
def vault_path(tmp_path: Path, cache_dir: Path) -> Path:
    path = tmp_path / "vault"
    create_vault(path, cache_dir)
    return path


@pytest.fixture
def vault(vault_path: Path, cache_dir: Path) -> Iterator[Vault]:
    with open_vault(vault_path, cache_dir, write=True) as v:
        yield v
