"""``popvault copy`` to and from S3 (a private SeaweedFS, no mocks; format §8.8).

Local -> S3 (the bucket created), S3 -> local, S3 -> S3 (two buckets): each copy is the
same vault (check --read-data clean, byte-identical export). A copy with nothing new
costs a constant number of requests; a copy after new commits puts exactly the new
objects. Bad destinations (another vault, a prefix holding something else, wrong
credentials, an unreachable endpoint) give one line and their exit code. A copy killed
mid-upload resumes; one into an append-only bucket, through injected faults, completes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from popvault.vault import SourceInfo
from popvault.vault.crypto import TEST_KDF
from popvault.vault.s3 import S3Backend, parse_s3_url
from popvault.vault.vault import Vault
from tests.cli.helpers import PASSPHRASE, REPO, messages, one_line_error, run, simple_message
from tests.cli.test_copy import add_commits, copy, export, summary
from tests.support.s3relay import Fault, S3Relay
from tests.support.seaweedfs import Seaweed


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("POPVAULT_CACHE_DIR", str(path))
    monkeypatch.setenv("POPVAULT_PASSPHRASE", PASSPHRASE)
    return path


@pytest.fixture
def local(tmp_path: Path, cache_dir: Path) -> Path:
    """A local vault of three commits."""
    path = tmp_path / "vault"
    Vault.init(path, PASSPHRASE.encode(), kdf=TEST_KDF, cache_dir=cache_dir).close()
    msgs = messages(10, seed=21)
    add_commits(path, [msgs[:4], msgs[4:7], msgs[7:]])
    return path


def keys_of(url: str) -> list[str]:
    """Every object of a location (``s3://BUCKET``: the whole bucket)."""
    return S3Backend(parse_s3_url(url)).list("")


def checked(where: Path | str, messages: int) -> None:
    res = run("--vault", where, "check", "--read-data")
    assert res.code == 0, res
    assert f"no problems found: {messages} messages" in res.err


def test_local_to_s3_to_local_and_s3_to_s3(
    local: Path, s3_vault: str, seaweed: Seaweed, tmp_path: Path
) -> None:
    offsite = f"{s3_vault}-new/mail"  # a bucket that does not exist yet
    try:
        res = copy(local, offsite)
        assert res.code == 0, res
        assert f"created the bucket of {offsite}" in res.err
        checked(offsite, 10)
        original = export(local, tmp_path / "e0")
        assert export(offsite, tmp_path / "e1") == original

        back = tmp_path / "back"
        assert copy(offsite, back).code == 0
        checked(back, 10)
        assert export(back, tmp_path / "e2") == original

        second = f"{s3_vault}/copies/two"
        assert copy(offsite, second).code == 0
        checked(second, 10)
        assert export(second, tmp_path / "e3") == original
        assert keys_of(second) == keys_of(offsite)
        assert "config" in keys_of(second)
    finally:
        seaweed.delete_bucket(s3_vault.removeprefix("s3://") + "-new")


def _copy_counted(src: Path, url: str) -> tuple[int, int]:
    """(requests, objects copied) of one copy through the library."""
    backend = S3Backend(parse_s3_url(url))
    with Vault.open(src, PASSPHRASE.encode()) as v:
        rep = v.copy_to(backend)
    return backend.requests, rep.objects


def test_incremental_copy_costs_what_is_new(local: Path, s3_vault: str, cache_dir: Path) -> None:
    url = f"{s3_vault}/offsite"
    _, first = _copy_counted(local, url)
    # key slot, config, and per commit a pack, segment, record and its number's claim
    assert first == 2 + 3 * 4
    noop, copied = _copy_counted(local, url)
    assert copied == 0
    add_commits(local, [[simple_message(n)] for n in range(5)])
    before = set(keys_of(url))
    requests, copied = _copy_counted(local, url)
    assert copied == 20 == len(set(keys_of(url)) - before)
    # at the destination: a no-op copy's requests, the listings of packs and segments,
    # and one PUT an object (no HEAD: the PUT's Content-MD5 is checked by the server)
    assert requests == noop + 2 + copied
    noop_after, _ = _copy_counted(local, url)
    assert noop_after == noop <= 16  # listings, config, lock: not one per object
    checked(url, 15)


def test_refusals(local: Path, s3_vault: str, cache_dir: Path) -> None:
    other = f"{s3_vault}/other"
    Vault.init(other, PASSPHRASE.encode(), kdf=TEST_KDF, cache_dir=cache_dir).close()
    S3Backend(parse_s3_url(s3_vault)).put("photos/cat.jpg", b"meow")
    before = keys_of(s3_vault)
    assert "holds another vault" in one_line_error(copy(local, other), 2)
    line = one_line_error(copy(local, f"{s3_vault}/photos"), 2)
    assert "holds objects that are not a vault (cat.jpg)" in line
    assert keys_of(s3_vault) == before

    dest = f"{s3_vault}/offsite"
    assert copy(local, dest).code == 0
    add_commits(local, [[simple_message(1)]])
    elsewhere = local.parent / "elsewhere"
    Vault.open(
        dest, PASSPHRASE.encode(), write=True, cache_dir=elsewhere, state_dir=elsewhere
    ).close()
    with Vault.open(
        dest, PASSPHRASE.encode(), write=True, cache_dir=elsewhere, state_dir=elsewhere
    ) as v:
        v.add_message(simple_message(99), _src())
        v.commit()
    line = one_line_error(copy(local, dest), 20)
    assert "1 commit(s) this vault lacks" in line


def _src() -> SourceInfo:
    return SourceInfo(account="elsewhere", source="test")


def test_wrong_credentials_and_unreachable_endpoint(
    local: Path, seaweed_signed: Seaweed, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweed_signed.env().items():
        monkeypatch.setenv(name, value)
    seaweed_signed.create_bucket("pv-copy-signed")
    secret = "wrong-secret-do-not-print"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    res = copy(local, "s3://pv-copy-signed/offsite")
    assert "refused the credentials" in one_line_error(res, 77)
    assert secret not in res.err
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed_signed.env()["AWS_SECRET_ACCESS_KEY"])
    assert seaweed_signed.client().list_objects_v2(Bucket="pv-copy-signed").get("KeyCount") == 0

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    line = one_line_error(copy(local, "s3://pv-bucket/offsite"), 75)
    assert f"cannot reach http://127.0.0.1:{port}" in line


def test_kill_9_during_an_upload_then_rerun(
    local: Path, s3_vault: str, tmp_path: Path, seaweed: Seaweed
) -> None:
    """The CLI copying to S3 is killed once some commits are there; the copy is a valid
    vault (another machine checks it clean), and a rerun completes it."""
    add_commits(local, [[simple_message(n, subject=os.urandom(100_000).hex())] for n in range(40)])
    url = f"{s3_vault}/offsite"
    bucket = s3_vault.removeprefix("s3://")
    client = seaweed.client()

    def commits_there() -> int:
        listed = client.list_objects_v2(Bucket=bucket, Prefix="offsite/commits/")
        return int(listed.get("KeyCount", 0))

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "popvault", "--vault", str(local), "copy", url],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while proc.poll() is None and commits_there() < 5:
            pass
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the copy ended before it was killed"
    assert 5 <= commits_there() < 43
    other = tmp_path / "machine"
    with Vault.open(url, PASSPHRASE.encode(), cache_dir=other, state_dir=other) as v:
        assert v.damage == []
        assert v.check().ok
    res = copy(local, url, "--json")
    report = summary(res)
    assert report["commits_copied"] == 43 - int(str(report["commits_present"]))
    checked(url, 50)
    assert json.loads(run("--vault", url, "stats", "--json").text)["commits"] == 43


def test_copy_to_an_append_only_bucket_through_faults(
    local: Path, s3_vault: str, seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a policy that refuses every DELETE but of lock objects, and through 503
    SlowDown answers and uploads cut off mid-body, the copy completes: it deleted
    nothing but its lock, and the copy checks clean."""
    url = f"{s3_vault}/offsite"
    with S3Relay(seaweed.port) as relay:
        relay.deny_delete = True
        relay.add(
            Fault("slowdown", times=2, method="PUT", key="/packs/"),
            Fault("cut_request", times=1, method="PUT", key="/commits/"),
            Fault("slowdown", times=1, method="GET"),
        )
        monkeypatch.setenv("AWS_ENDPOINT_URL", relay.endpoint)
        monkeypatch.setenv("POPVAULT_S3_BACKOFF", "0.05")
        res = copy(local, url)
        assert res.code == 0, res
        assert relay.pending() == 0
        deletes = [(p, o) for m, p, o in relay.log if m == "DELETE"]
    assert deletes and all(p.endswith("/lock") or "/locks/" in p for p, _o in deletes), deletes
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.endpoint)
    checked(url, 10)


def test_copy_to_storage_without_conditional_writes_takes_a_lease(
    local: Path, s3_vault: str, seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where If-None-Match is ignored, the destination's writer lock is a lease
    (format §10.1): put under locks/, removed at the end; no lock object."""
    url = f"{s3_vault}/offsite"
    with S3Relay(seaweed.port) as relay:
        relay.drop_conditional = True
        monkeypatch.setenv("AWS_ENDPOINT_URL", relay.endpoint)
        assert copy(local, url).code == 0
        puts = [p for m, p, _o in relay.log if m == "PUT"]
        deletes = [p for m, p, _o in relay.log if m == "DELETE"]
    lease = [p for p in puts if "/offsite/locks/" in p and ".popvault-probe" not in p]
    assert lease and set(lease) <= set(deletes)
    assert not any(p.endswith("/offsite/lock") for p in puts)
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.endpoint)
    assert keys_of(url) == sorted(k for k in keys_of(url) if not k.startswith("locks/"))
    checked(url, 10)
