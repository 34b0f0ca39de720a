"""The ``[s3]`` table of the config file and the variables it stands for."""

from __future__ import annotations

from pathlib import Path

import pytest

from popvault.app.config import load_config, s3_environment
from popvault.errors import UsageError
from popvault.vault.s3settings import DEFAULT_CONCURRENCY, S3Settings

URL = "s3://mail-backup/alice"


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'vault = "{URL}"\n\n[s3]\n{body}')
    path.chmod(0o600)
    return path


def test_the_table_sets_the_variables_of_its_own_vault_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("POPVAULT_S3_STORAGE_CLASS", "POPVAULT_S3_UPLOAD_CONCURRENCY"):
        monkeypatch.delenv(var, raising=False)
    cfg = load_config(_write(tmp_path, 'storage_class = "STANDARD_IA"\nupload_concurrency = 8\n'))
    assert cfg.s3 == {"storage_class": "STANDARD_IA", "upload_concurrency": 8}
    assert s3_environment(cfg, URL) == {
        "POPVAULT_S3_STORAGE_CLASS": "STANDARD_IA",
        "POPVAULT_S3_UPLOAD_CONCURRENCY": "8",
    }
    assert s3_environment(cfg, "s3://mail-backup/bob") == {}  # another vault: none
    monkeypatch.setenv("POPVAULT_S3_UPLOAD_CONCURRENCY", "2")  # the environment wins
    assert s3_environment(cfg, URL) == {"POPVAULT_S3_STORAGE_CLASS": "STANDARD_IA"}


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ('storage_class = "GLACIER"\n', "cannot be read back without a restore"),
        ('storage_class = "standard ia"\n', "must be a storage class name"),
        ("upload_concurrency = 0\n", "between 1 and 32"),
        ('upload_concurrency = "4"\n', "must be an integer"),
        ('addressing = "sideways"\n', "path, virtual or auto"),
        ('region = "eu"\n', "unknown key 'region' in [s3]"),
    ],
)
def test_bad_values_name_the_file_and_line(tmp_path: Path, body: str, said: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(UsageError) as err:
        load_config(path)
    assert f"{path}:4" in err.value.message
    assert said in err.value.message


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("STORAGE_CLASS", "UPLOAD_CONCURRENCY", "ADDRESSING"):
        monkeypatch.delenv(f"POPVAULT_S3_{var}", raising=False)
    assert S3Settings.from_env() == S3Settings(None, DEFAULT_CONCURRENCY, None)
    monkeypatch.setenv("POPVAULT_S3_STORAGE_CLASS", "ONEZONE_IA")
    monkeypatch.setenv("POPVAULT_S3_UPLOAD_CONCURRENCY", "12")
    monkeypatch.setenv("POPVAULT_S3_ADDRESSING", "Virtual")
    assert S3Settings.from_env() == S3Settings("ONEZONE_IA", 12, "virtual")
    monkeypatch.setenv("POPVAULT_S3_UPLOAD_CONCURRENCY", "many")
    with pytest.raises(UsageError, match="POPVAULT_S3_UPLOAD_CONCURRENCY must be an integer"):
        S3Settings.from_env()
    monkeypatch.setenv("POPVAULT_S3_UPLOAD_CONCURRENCY", "99")
    with pytest.raises(UsageError, match="between 1 and 32"):
        S3Settings.from_env()
    monkeypatch.setenv("POPVAULT_S3_UPLOAD_CONCURRENCY", "3")
    monkeypatch.setenv("POPVAULT_S3_STORAGE_CLASS", "DEEP_ARCHIVE")
    with pytest.raises(UsageError, match="POPVAULT_S3_STORAGE_CLASS: storage_class DEEP"):
        S3Settings.from_env()
