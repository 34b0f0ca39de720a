"""A vault on S3 (a private SeaweedFS, no mocks): every command through the CLI.

Each test gets a fresh bucket (``s3_vault``) and reads every message back byte-exact.
Bad input (an unknown bucket, wrong credentials, an unreachable endpoint, a prefix that
holds something else) gives one line, the documented exit code, and writes nothing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from popvault.vault.crypto import TEST_KDF
from popvault.vault.s3 import S3Backend
from popvault.vault.vault import Vault
from tests.cli.helpers import PASSPHRASE, Result, messages, one_line_error, run, write_mbox
from tests.support.backup_helpers import cli_env
from tests.support.dovecot import Dovecot, UserInfo, served_bytes
from tests.support.seaweedfs import Seaweed


def mbox_safe(n: int, seed: int) -> list[bytes]:
    """``n`` realistic messages that an mbox holds unchanged (no quoted From_ lines)."""
    ok = [m for m in messages(4 * n, seed=seed) if b"\nFrom " not in m and b"\n>" not in m]
    assert len(ok) >= n
    return ok[:n]


MSGS = mbox_safe(6, seed=11)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("POPVAULT_CACHE_DIR", str(path))
    monkeypatch.setenv("POPVAULT_PASSPHRASE", PASSPHRASE)
    return path


@pytest.fixture
def url(s3_vault: str, cache_dir: Path) -> str:
    """A new, empty vault under a prefix of a fresh bucket (fast test KDF)."""
    where = f"{s3_vault}/mail/home"
    Vault.init(where, PASSPHRASE.encode(), kdf=TEST_KDF, cache_dir=cache_dir).close()
    return where


def ok(*args: str | os.PathLike[str]) -> Result:
    res = run(*args)
    assert res.code == 0, res
    return res


def keys_of(url: str) -> list[str]:
    """Every key under the bucket (dot-names too): what a failed command must not add."""
    b, _ = _backend(url.removeprefix("s3://").split("/", 1)[0])
    return sorted(b._list_keys("", ""))


def _backend(bucket: str) -> tuple[S3Backend, str]:
    from popvault.vault.config import as_backend

    b, label = as_backend(f"s3://{bucket}")
    assert isinstance(b, S3Backend)
    return b, label


def archived(url: str, cache_dir: Path) -> list[bytes]:
    """Every message of the vault, read back (and verified) through the library."""
    v = Vault.open(url, PASSPHRASE.encode(), cache_dir=cache_dir)
    try:
        return sorted(v.read_message(m.id) for m in v.messages())
    finally:
        v.close()


def test_import_list_show_export_check(url: str, cache_dir: Path, tmp_path: Path) -> None:
    mbox = tmp_path / "in.mbox"
    write_mbox(mbox, MSGS)
    ok("--vault", url, "import", mbox)
    assert archived(url, cache_dir) == sorted(MSGS)

    rows = [json.loads(line) for line in ok("--vault", url, "list", "--json").text.splitlines()]
    assert len(rows) == len(MSGS)
    shown = sorted(ok("--vault", url, "show", str(r["id"])).out for r in rows)
    assert shown == sorted(MSGS)

    ok("--vault", url, "export", tmp_path / "eml", "--format", "eml")
    exported = sorted(p.read_bytes() for p in (tmp_path / "eml").iterdir())
    assert exported == sorted(MSGS)

    res = ok("--vault", url, "check", "--read-data")
    assert "problem" not in res.err.lower() or "no problem" in res.err.lower()

    # the cache was dropped: a fresh machine rebuilds from the bucket alone
    ok("--vault", url, "index", "rebuild", "--from-packs")
    assert archived(url, cache_dir) == sorted(MSGS)


def test_key_passwd(url: str, cache_dir: Path, tmp_path: Path) -> None:
    new = tmp_path / "new-pass"
    new.write_text("another passphrase\n")
    ok("--vault", url, "key", "passwd", "--new-passphrase-file", new)
    res = run("--vault", url, "list")
    assert res.code == 12, res  # the old passphrase opens nothing any more
    res = run("--vault", url, "--passphrase-file", new, "list")
    assert res.code == 0, res


def test_noop_list_costs_a_constant_number_of_requests(
    url: str, cache_dir: Path, tmp_path: Path
) -> None:
    """With the cache on disk, a no-op open + find reads the commits list, config and
    key slots: not one request per pack, segment or commit."""

    def noop_requests() -> int:
        v = Vault.open(url, PASSPHRASE.encode(), cache_dir=cache_dir)
        try:
            assert isinstance(v.backend, S3Backend)
            list(v.messages())
            return v.backend.requests
        finally:
            v.close()

    counts = []
    for i in range(3):
        mbox = tmp_path / f"in{i}.mbox"
        write_mbox(mbox, mbox_safe(4, seed=100 + i))
        ok("--vault", url, "import", mbox)
        noop_requests()  # brings the cache up to date
        counts.append(noop_requests())
    assert counts[0] == counts[1] == counts[2], counts
    # config, list keys, one key slot, list commits (twice today: the cache sync and the
    # chain check each list them; once would do)
    assert counts[0] <= 5, counts


def test_backup_from_dovecot(
    dovecot: Dovecot, dovecot_user: UserInfo, url: str, cache_dir: Path
) -> None:
    delivered = [*MSGS[:3], b"From: x@example.org\nSubject: lf\n\n.dot\nend\n"]
    dovecot.deliver(dovecot_user, delivered)
    env = cli_env(cache_dir, dovecot_user.password, POPVAULT_PASSPHRASE=PASSPHRASE)
    pop = f"pop3s://{dovecot_user.name}@{dovecot.host}:{dovecot.pop3s_port}"
    args = ["backup", "--url", pop, "--tls-ca-file", str(dovecot.ca_file), "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "popvault", "--vault", url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert archived(url, cache_dir) == sorted(served_bytes(m) for m in delivered)
    ok("--vault", url, "check", "--read-data")


# ----------------------------------------------------------------------- bad input


def test_unknown_bucket(cache_dir: Path, s3_vault: str) -> None:
    line = one_line_error(run("--vault", "s3://pv-nobody-has-this/x", "list"), 10)
    assert "pv-nobody-has-this does not exist" in line
    assert keys_of(s3_vault) == []


def test_prefix_that_is_not_a_vault(cache_dir: Path, s3_vault: str) -> None:
    b, _ = _backend(s3_vault.removeprefix("s3://"))
    b.put("photos/cat.jpg", b"meow")
    for args in (["list"], ["import", os.devnull], ["check"]):
        line = one_line_error(run("--vault", f"{s3_vault}/photos", *args), 10)
        assert f"no vault at {s3_vault}/photos" in line
    assert keys_of(s3_vault) == ["photos/cat.jpg"]


def test_wrong_credentials(
    cache_dir: Path, seaweed_signed: Seaweed, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweed_signed.env().items():
        monkeypatch.setenv(name, value)
    seaweed_signed.create_bucket("pv-signed")
    where = "s3://pv-signed/v"
    Vault.init(where, PASSPHRASE.encode(), kdf=TEST_KDF, cache_dir=cache_dir).close()
    before = keys_of(where)
    secret = "wrong-secret-do-not-print"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    for args in (["list"], ["import", os.devnull]):
        res = run("--vault", where, *args)
        line = one_line_error(res, 77)
        assert "refused the credentials" in line
        assert secret not in res.err
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "NOSUCHKEY")
    one_line_error(run("--vault", where, "list"), 77)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed_signed.env()["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed_signed.env()["AWS_ACCESS_KEY_ID"])
    assert keys_of(where) == before


def test_unreachable_endpoint(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sk")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    line = one_line_error(run("--vault", "s3://pv-bucket/v", "list"), 75)
    assert f"cannot reach http://127.0.0.1:{port}" in line
    assert "download of config" in line


def test_local_runs_do_not_import_boto3(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from popvault.cli.main import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore'))\n"
        "print(bad)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env["POPVAULT_PASSPHRASE"] = PASSPHRASE
    env["POPVAULT_CACHE_DIR"] = str(tmp_path / "cache")
    vault = tmp_path / "v"
    Vault.init(vault, PASSPHRASE.encode(), kdf=TEST_KDF, cache_dir=tmp_path / "cache").close()
    for args in (["--help"], ["--vault", str(vault), "list"]):
        proc = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.stdout.strip().splitlines()[-1] == "[]", (args, proc.stdout, proc.stderr)


# ------------------------------------------------------- init and `vault =` (CLI)


def test_cli_init_creates_the_bucket_and_says_so(
    cache_dir: Path, seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch, s3_vault: str
) -> None:
    bucket = f"pv-init-{os.getpid()}"
    where = f"s3://{bucket}/family"
    try:
        res = ok("--vault", where, "init")
        assert "created the bucket" in res.err
        assert f"at {where}" in res.err
        ok("--vault", where, "list")
        # a second init finds a vault there: refused, nothing written
        before = keys_of(where)
        line = one_line_error(run("--vault", where, "init"), 2)
        assert "already holds a vault" in line
        assert keys_of(where) == before
    finally:
        seaweed.delete_bucket(bucket)


def test_cli_init_refuses_a_prefix_holding_other_objects(cache_dir: Path, s3_vault: str) -> None:
    b, _ = _backend(s3_vault.removeprefix("s3://"))
    b.put("photos/cat.jpg", b"meow")
    for where in (s3_vault, f"{s3_vault}/photos"):
        line = one_line_error(run("--vault", where, "init"), 2)
        assert "holds objects that are not a vault" in line
    assert keys_of(s3_vault) == ["photos/cat.jpg"]
    ok("--vault", f"{s3_vault}/other", "init")  # a new prefix beside it is fine
    assert "other/config" in keys_of(s3_vault)


def test_config_vault_url(cache_dir: Path, url: str, tmp_path: Path) -> None:
    """``vault = "s3://..."`` in the config is a URL, not a path relative to the file;
    its passphrase_file serves it."""
    pw = tmp_path / "pw"
    pw.write_text(PASSPHRASE + "\n")
    config = tmp_path / "config.toml"
    config.write_text(f'vault = "{url}"\npassphrase_file = "{pw}"\n')
    config.chmod(0o600)
    res = run("--config", config, "list", env={"POPVAULT_PASSPHRASE": None})
    assert res.code == 0, res
