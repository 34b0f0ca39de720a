"""The ``[s3]`` settings reach the server (a private SeaweedFS): packs go up in the
configured storage class, everything else in the bucket's default; a bad setting is
one line and exit 2, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from popvault.vault.crypto import TEST_KDF
from popvault.vault.vault import Vault
from tests.cli.helpers import PASSPHRASE, one_line_error, run, simple_message, write_mbox
from tests.support.seaweedfs import Seaweed


@pytest.fixture
def url(s3_vault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("POPVAULT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("POPVAULT_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for var in ("STORAGE_CLASS", "UPLOAD_CONCURRENCY", "ADDRESSING"):
        monkeypatch.delenv(f"POPVAULT_S3_{var}", raising=False)
    where = f"{s3_vault}/mail"
    Vault.init(where, PASSPHRASE.encode(), kdf=TEST_KDF, cache_dir=tmp_path / "cache").close()
    return where


def _classes(seaweed: Seaweed, url: str) -> dict[str, str]:
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    out: dict[str, str] = {}
    for page in seaweed.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            head = seaweed.client().head_object(Bucket=bucket, Key=obj["Key"])
            out[obj["Key"].split("/", 2)[1]] = head.get("StorageClass", "STANDARD")
    return out


def test_the_config_s_storage_class_is_for_packs_only(
    seaweed: Seaweed, url: str, tmp_path: Path
) -> None:
    config = tmp_path / "popvault.toml"
    config.write_text(f'vault = "{url}"\n\n[s3]\nstorage_class = "STANDARD_IA"\n')
    mbox = tmp_path / "in.mbox"
    write_mbox(mbox, [simple_message(i) for i in range(5)])
    res = run("--config", config, "import", mbox)
    assert res.code == 0, res
    by_folder: dict[str, set[str]] = {}
    for folder, cls in _classes(seaweed, url).items():
        by_folder.setdefault(folder, set()).add(cls)
    assert by_folder["packs"] == {"STANDARD_IA"}, by_folder
    for folder in ("commits", "index", "keys", "config"):
        assert "STANDARD_IA" not in by_folder.get(folder, {"STANDARD"}), by_folder
    assert run("--config", config, "check", "--read-data").code == 0


def test_another_vault_does_not_take_the_config_s_settings(
    seaweed: Seaweed, url: str, tmp_path: Path
) -> None:
    config = tmp_path / "popvault.toml"
    config.write_text(f'vault = "{url}-elsewhere"\n\n[s3]\nstorage_class = "STANDARD_IA"\n')
    mbox = tmp_path / "in.mbox"
    write_mbox(mbox, [simple_message(i) for i in range(2)])
    assert run("--config", config, "--vault", url, "import", mbox).code == 0
    classes = set(_classes(seaweed, url).values())
    assert "STANDARD_IA" not in classes, classes


def test_a_bad_setting_is_one_line_and_nothing_is_written(
    seaweed: Seaweed, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _classes(seaweed, url)
    monkeypatch.setenv("POPVAULT_S3_STORAGE_CLASS", "GLACIER")
    mbox = tmp_path / "in.mbox"
    write_mbox(mbox, [simple_message(i) for i in range(2)])
    res = run("--vault", url, "import", mbox)
    assert "POPVAULT_S3_STORAGE_CLASS" in one_line_error(res, 2)
    assert _classes(seaweed, url) == before
