"""Every vault test gets a private POPVAULT_CACHE_DIR, never ``~/.cache``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.vaults import isolate_cache


@pytest.fixture(autouse=True)
def cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return isolate_cache(monkeypatch, tmp_path)
