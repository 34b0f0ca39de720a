"""Pieces of the CLI tests of S3 vaults under faults, kills and two hosts: mail large
enough to fill several packs, ``popvault backup`` of a Dovecot user as a subprocess, and
what the bucket holds (commit sequence numbers, packs)."""

from __future__ import annotations

import base64
import json
import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from popvault.vault.config import as_backend
from popvault.vault.crypto import TEST_KDF
from popvault.vault.s3 import S3Backend
from popvault.vault.segments import COMMIT_NAME
from popvault.vault.vault import Vault
from tests.support.backup_helpers import PASSPHRASE, cli_env, run_cli
from tests.support.dovecot import Dovecot, UserInfo


def big_messages(n: int, size: int, seed: int) -> list[bytes]:
    """``n`` distinct CRLF messages, each with ``size`` random bytes attached (base64:
    hardly compressible, so ``n * size`` bytes of packs)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        data = base64.encodebytes(rng.randbytes(size)).replace(b"\n", b"\r\n")
        head = (
            f"From: sender{i}@example.org\r\nTo: owner@example.net\r\n"
            f"Subject: attachment {seed}-{i}\r\nMessage-ID: <a{seed}.{i}@example.org>\r\n"
            'MIME-Version: 1.0\r\nContent-Type: application/octet-stream; name="a.bin"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        out.append(head + data)
    return out


def init_vault(url: str, cache_dir: Path) -> None:
    Vault.init(url, PASSPHRASE.encode(), kdf=TEST_KDF, cache_dir=cache_dir).close()


def backend(url: str) -> S3Backend:
    b, _ = as_backend(url)
    assert isinstance(b, S3Backend)
    return b


def commit_seqs(url: str) -> list[int]:
    """The sequence number of every commit record in the bucket, in key order."""
    seqs = []
    for name in backend(url).list("commits"):
        m = COMMIT_NAME.match(name)
        assert m, name
        seqs.append(int(m.group(1)))
    return seqs


def pop3_url(dovecot: Dovecot, user: UserInfo) -> str:
    return f"pop3s://{user.name}@{dovecot.host}:{dovecot.pop3s_port}"


def backup_command(dovecot: Dovecot, user: UserInfo, vault: str | Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "popvault",
        "--vault",
        str(vault),
        "backup",
        "--url",
        pop3_url(dovecot, user),
        "--tls-ca-file",
        str(dovecot.ca_file),
        "--json",
        *extra,
    ]


def backup_env(cache_dir: Path, user: UserInfo, **extra: str) -> dict[str, str]:
    return cli_env(cache_dir, user.password, **extra)


def run_backup(
    dovecot: Dovecot,
    user: UserInfo,
    vault: str | Path,
    env: Mapping[str, str],
    *extra: str,
    timeout: float = 300,
) -> tuple[int, dict[str, Any] | None, str]:
    """``popvault backup --json`` of ``user`` into ``vault``: exit code, the JSON report
    (None if none was printed) and stderr."""
    args = backup_command(dovecot, user, vault, *extra)[5:]
    # cli_command only str()s the vault: an s3:// URL passes unchanged
    proc = run_cli(vault, args, env, timeout=timeout)  # type: ignore[arg-type]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    report = json.loads(lines[-1]) if lines else None
    return proc.returncode, report, proc.stderr


def vault_contents(vault: str | Path, cache_dir: Path) -> list[bytes]:
    """Every message in the vault, read back and verified, sorted."""
    v = Vault.open(vault, PASSPHRASE.encode(), cache_dir=cache_dir)
    try:
        return sorted(v.read_message(m.id) for m in v.messages())
    finally:
        v.close()


def check_read_data(vault: str | Path, cache_dir: Path) -> None:
    """``check --read-data`` is clean and no message is there twice."""
    v = Vault.open(vault, PASSPHRASE.encode(), cache_dir=cache_dir)
    try:
        report = v.check(read_data=True)
        assert report.ok, report.problems
        ids = [m.id for m in v.messages()]
        assert len(ids) == len(set(ids)) == report.messages
    finally:
        v.close()
