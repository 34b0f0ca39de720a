"""One conformance suite for every storage backend (docs/format.md §3, "Backend interface").

Each test runs against :class:`LocalBackend`, :class:`MemoryBackend` and
:class:`S3Backend` (a fresh bucket, with and without a prefix, on a private SeaweedFS:
the ``s3_vault`` fixture); a new backend joins by adding a factory to ``BACKENDS``.
Local-only durability details (temporary files, fault steps) and S3-only details (the
conditional-write probe, bounded reads, request counts) follow at the end.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from popvault.errors import (
    AuthenticationFailed,
    IntegrityError,
    NetworkError,
    PopvaultError,
    UsageError,
    VaultNotFound,
)
from popvault.vault import s3 as s3mod
from popvault.vault.backend import (
    MAX_OBJECT,
    TMP_PREFIX,
    Backend,
    DiskFull,
    LocalBackend,
    MemoryBackend,
    ObjectNotFound,
)
from popvault.vault.config import as_backend
from popvault.vault.s3 import ConditionalWritesUnsupported, S3Backend
from tests.support.seaweedfs import CuttingRelay, Seaweed

#: name -> factory(tmp_path, request); the S3 ones ask for the ``s3_vault`` fixture.
BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], Backend]] = {
    "local": lambda p, _r: LocalBackend(p / "store"),
    "memory": lambda _p, _r: MemoryBackend(),
    "s3": lambda _p, r: as_backend(str(r.getfixturevalue("s3_vault")))[0],
    "s3-prefix": lambda _p, r: as_backend(f"{r.getfixturevalue('s3_vault')}/some/prefix")[0],
}

BAD_NAMES = ["", "/abs", "a/../b", "..", "../x", "a\\b", "packs/..", "/"]


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield BACKENDS[request.param](tmp_path, request)


def test_put_get_roundtrip(backend: Backend) -> None:
    data = bytes(range(256)) * 3
    backend.put("config", data)
    backend.put("packs/ab/abcdef", b"pack")
    assert backend.get("config") == data
    assert backend.get("packs/ab/abcdef") == b"pack"


def test_put_empty_object(backend: Backend) -> None:
    backend.put("index/empty", b"")
    assert backend.get("index/empty") == b""
    assert backend.size("index/empty") == 0
    assert backend.exists("index/empty")


def test_put_copies_the_data(backend: Backend) -> None:
    """A caller may reuse its buffer once put returns: the object keeps its bytes."""
    buf = bytearray(b"original")
    backend.put("x/y", buf)
    buf[:] = b"mutated!"
    assert backend.get("x/y") == b"original"


def test_put_replaces_same_name(backend: Backend) -> None:
    backend.put("keys/k1", b"first version, longer")
    backend.put("keys/k1", b"second")
    assert backend.get("keys/k1") == b"second"
    assert backend.size("keys/k1") == len(b"second")
    assert backend.list("keys") == ["keys/k1"]


def test_get_range(backend: Backend) -> None:
    data = bytes(range(100))
    backend.put("packs/00/p", data)
    assert backend.get_range("packs/00/p", 0, 10) == data[:10]
    assert backend.get_range("packs/00/p", 40, 20) == data[40:60]
    assert backend.get_range("packs/00/p", 90, 50) == data[90:]  # fewer only at the end
    assert backend.get_range("packs/00/p", 100, 5) == b""
    assert backend.get_range("packs/00/p", 0, 0) == b""


def test_size_and_exists(backend: Backend) -> None:
    assert not backend.exists("packs/00/p")
    backend.put("packs/00/p", b"12345")
    assert backend.exists("packs/00/p")
    assert backend.size("packs/00/p") == 5
    # a folder is not an object
    assert not backend.exists("packs/00")
    assert not backend.exists("packs")


@pytest.mark.parametrize(
    "op",
    [
        lambda b: b.get("nope/x"),
        lambda b: b.get_range("nope/x", 0, 1),
        lambda b: b.size("nope/x"),
        lambda b: b.get("nope"),
    ],
    ids=["get", "get_range", "size", "get-top"],
)
def test_missing_object_raises_object_not_found(
    backend: Backend, op: Callable[[Backend], object]
) -> None:
    backend.put("other", b"1")
    with pytest.raises(ObjectNotFound) as ei:
        op(backend)
    assert ei.value.exit_code == 1


def test_get_of_a_folder_is_not_found(backend: Backend) -> None:
    backend.put("packs/ab/p1", b"1")
    with pytest.raises(ObjectNotFound):
        backend.get("packs/ab")
    with pytest.raises(ObjectNotFound):
        backend.get("packs/ab/p1/below")


def test_list_recursive_sorted(backend: Backend) -> None:
    names = ["packs/ff/z", "packs/00/b", "packs/00/a", "packs/7a/m", "index/s1", "packsx/q"]
    for n in names:
        backend.put(n, n.encode())
    assert backend.list("packs") == ["packs/00/a", "packs/00/b", "packs/7a/m", "packs/ff/z"]
    assert backend.list("packs/00") == ["packs/00/a", "packs/00/b"]
    assert backend.list("index") == ["index/s1"]
    assert backend.list("commits") == []
    assert backend.list("nothing/here") == []


def test_list_ignores_dot_names(backend: Backend) -> None:
    """§3: names whose last component starts with '.' are not objects when listing."""
    backend.put("packs/00/a", b"1")
    backend.put("packs/00/.hidden", b"2")
    assert backend.list("packs") == ["packs/00/a"]


def test_delete_is_idempotent(backend: Backend) -> None:
    backend.put("commits/c", b"1")
    backend.delete("commits/c")
    assert not backend.exists("commits/c")
    with pytest.raises(ObjectNotFound):
        backend.get("commits/c")
    backend.delete("commits/c")  # already gone: no error
    backend.delete("never/existed")
    assert backend.list("commits") == []


def test_delete_leaves_siblings(backend: Backend) -> None:
    backend.put("keys/a", b"a")
    backend.put("keys/b", b"b")
    backend.delete("keys/a")
    assert backend.list("keys") == ["keys/b"]
    assert backend.get("keys/b") == b"b"


def test_create_exclusive(backend: Backend) -> None:
    assert backend.create_exclusive("lock", b"mine") is True
    assert backend.create_exclusive("lock", b"theirs") is False
    assert backend.get("lock") == b"mine"
    backend.delete("lock")
    assert backend.create_exclusive("lock", b"again") is True
    assert backend.get("lock") == b"again"


def test_create_exclusive_nested(backend: Backend) -> None:
    assert backend.create_exclusive("a/b/c", b"x") is True
    assert backend.list("a") == ["a/b/c"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_rejected(backend: Backend, name: str) -> None:
    with pytest.raises(ValueError):
        backend.put(name, b"x")
    with pytest.raises(ValueError):
        backend.create_exclusive(name, b"x")
    with pytest.raises(ValueError):
        backend.get(name)
    with pytest.raises(ValueError):
        backend.delete(name)


def test_cleanup_temporary_keeps_objects(backend: Backend) -> None:
    names = ["config", "keys/k", "packs/00/p", "index/i", "commits/0000000001-aa"]
    for n in names:
        backend.put(n, n.encode())
    removed = backend.cleanup_temporary()
    assert removed >= 0
    for n in names:
        assert backend.get(n) == n.encode()
    assert backend.list("packs") == ["packs/00/p"]


# --- local backend only: the durable put of §3.1 ---------------------------------------


def _tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TMP_PREFIX)]


def test_local_put_steps_in_order(tmp_path: Path) -> None:
    steps: list[tuple[str, str]] = []
    b = LocalBackend(tmp_path / "v", fault_hook=lambda s, n: steps.append((s, n)))
    (tmp_path / "v").mkdir()
    b.put("packs/ab/p", b"data")
    # two new folders, each followed by a parent fsync; then write, fsync, rename, fsync-dir
    assert steps == [
        ("fsync-dir", "packs/ab/p"),
        ("fsync-dir", "packs/ab/p"),
        ("write", "packs/ab/p"),
        ("fsync", "packs/ab/p"),
        ("rename", "packs/ab/p"),
        ("fsync-dir", "packs/ab/p"),
    ]
    assert (tmp_path / "v" / "packs" / "ab").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "v" / "packs" / "ab" / "p").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("fail_at", ["write", "fsync", "rename"])
def test_local_failed_put_leaves_nothing(tmp_path: Path, fail_at: str) -> None:
    def hook(step: str, _name: str) -> None:
        if step == fail_at:
            raise OSError(errno.EIO, "injected")

    root = tmp_path / "v"
    root.mkdir()
    b = LocalBackend(root, fault_hook=hook)
    with pytest.raises(OSError) as ei:
        b.put("index/s", b"segment")
    assert ei.value.errno == errno.EIO
    assert not LocalBackend(root).exists("index/s")
    assert _tmp_files(root) == []


@pytest.mark.parametrize("fail_at", ["write", "fsync", "rename", "fsync-dir"])
@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT])
def test_local_disk_full_is_reported(tmp_path: Path, fail_at: str, err: int) -> None:
    def hook(step: str, _name: str) -> None:
        if step == fail_at:
            raise OSError(err, os.strerror(err))

    root = tmp_path / "v"
    root.mkdir()
    with pytest.raises(DiskFull) as ei:
        LocalBackend(root, fault_hook=hook).put("packs/ab/p", b"x")
    assert "no space" in ei.value.message
    assert _tmp_files(root) == []


def test_local_replaced_object_never_partial(tmp_path: Path) -> None:
    root = tmp_path / "v"
    root.mkdir()
    LocalBackend(root).put("config", b"old contents")

    def hook(step: str, _name: str) -> None:
        if step == "fsync":
            raise OSError(errno.EIO, "injected")

    with pytest.raises(OSError):
        LocalBackend(root, fault_hook=hook).put("config", b"new contents")
    assert LocalBackend(root).get("config") == b"old contents"


def test_local_cleanup_removes_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "v"
    b = LocalBackend(root)
    b.put("packs/ab/p", b"pack")
    b.put("index/i", b"seg")
    stray = [
        root / "packs" / "ab" / f"{TMP_PREFIX}0123456789abcdef",
        root / "index" / f"{TMP_PREFIX}x",
    ]
    for s in stray:
        s.write_bytes(b"partial")
    assert b.list("packs") == ["packs/ab/p"]  # temporary files are never listed
    assert b.cleanup_temporary() == 2
    assert _tmp_files(root) == []
    assert b.get("packs/ab/p") == b"pack"
    assert b.get("index/i") == b"seg"


def test_local_cleanup_spares_fresh_top_level_temp(tmp_path: Path) -> None:
    """Lock attempts of other processes write temporaries at the top level."""
    root = tmp_path / "v"
    b = LocalBackend(root)
    b.put("config", b"c")
    fresh = root / f"{TMP_PREFIX}fresh"
    old = root / f"{TMP_PREFIX}old"
    fresh.write_bytes(b"")
    old.write_bytes(b"")
    os.utime(old, (0, 0))
    assert b.cleanup_temporary() == 1
    assert fresh.exists()
    assert not old.exists()


# --- S3 backend only (format §3.2), against the private SeaweedFS ------------------------


def _s3(url: str) -> S3Backend:
    backend, label = as_backend(url)
    assert isinstance(backend, S3Backend)
    assert label == url
    return backend


def test_s3_keys_live_under_the_prefix(s3_vault: str, seaweed: Seaweed) -> None:
    b = _s3(f"{s3_vault}/mail/vault1")
    b.put("packs/ab/p", b"pack")
    b.put("config", b"c")
    bucket = s3_vault.removeprefix("s3://")
    keys = [o["Key"] for o in seaweed.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(keys) == ["mail/vault1/config", "mail/vault1/packs/ab/p"]
    # a sibling prefix is another vault: nothing of it shows
    _s3(f"{s3_vault}/mail/vault10").put("config", b"other")
    assert b.list("") == ["config", "packs/ab/p"]
    assert b.list("packs") == ["packs/ab/p"]


def test_s3_list_is_paginated(s3_vault: str) -> None:
    b = _s3(s3_vault)
    names = [f"index/{i:05d}" for i in range(1005)]  # > 1000: two pages
    for n in names:
        b.put(n, b"")
    assert b.list("index") == names


def test_s3_create_exclusive_412_is_someone_elses(s3_vault: str) -> None:
    """A 412 to the first try is another writer's object, whatever its bytes (no read);
    a 412 after a retry is read back (tests/faults/test_s3_faults.py)."""
    b = _s3(s3_vault)
    b.put("lock", b"token-123")
    assert b.exclusive_create  # probed first
    before = b.requests
    assert b.create_exclusive("lock", b"token-123") is False
    assert b.requests == before + 1
    assert b.get("lock") == b"token-123"


def test_s3_probe_leaves_nothing(s3_vault: str) -> None:
    b = _s3(s3_vault)
    assert b.exclusive_create is True  # SeaweedFS 4.48 honours If-None-Match
    before = b.requests
    assert b.create_exclusive("lock", b"x")  # probed already: one request
    assert b.requests == before + 1
    assert b.list("") == ["lock"]
    assert list(_s3(s3_vault)._list_keys("", "")) == ["lock"]  # no dot-named probe left


def _ignoring_conditional_writes(b: S3Backend) -> S3Backend:
    """``b`` behind a gateway that drops If-None-Match (the header removed before
    signing, so SeaweedFS itself overwrites): what some S3-compatible servers do."""

    def drop(request: Any, **_kw: Any) -> None:
        if "If-None-Match" in request.headers:
            del request.headers["If-None-Match"]

    b._client.meta.events.register("before-sign.s3.PutObject", drop)
    return b


def test_s3_server_ignoring_conditional_writes_is_found_out(s3_vault: str) -> None:
    """The probe finds out; exclusive creation is then refused, never an overwrite."""
    b = _ignoring_conditional_writes(_s3(s3_vault))
    assert b.exclusive_create is False
    b.put("lock", b"theirs")
    with pytest.raises(ConditionalWritesUnsupported) as ei:
        b.create_exclusive("lock", b"mine")
    assert ei.value.exit_code == 1
    assert "ignores conditional writes" in ei.value.message
    assert list(b._list_keys("", "")) == ["lock"]  # no probe left, nothing overwritten
    assert b.get("lock") == b"theirs"


def test_s3_without_conditional_writes_a_vault_has_one_writer(
    s3_vault: str, tmp_path: Path
) -> None:
    """On such a server the writer lock is a lease (format §10.1): a second writer is
    kept out, and the lease goes when the first closes."""
    from popvault.errors import VaultLocked
    from popvault.vault.crypto import TEST_KDF
    from popvault.vault.vault import Vault

    url = f"{s3_vault}/v"
    Vault.init(url, b"pw", kdf=TEST_KDF, cache_dir=tmp_path).close()

    def writer() -> Vault:
        b = _ignoring_conditional_writes(_s3(url))
        return Vault.open(b, b"pw", write=True, cache_dir=tmp_path)

    first = writer()
    assert first.backend.list("locks") and not first.backend.exists("lock")
    with pytest.raises(VaultLocked, match="locked by"):
        writer()
    first.close()
    assert _s3(url).list("locks") == []
    writer().close()


def test_s3_bounded_reads(s3_vault: str, monkeypatch: pytest.MonkeyPatch) -> None:
    b = _s3(s3_vault)
    b.put("packs/00/big", b"x" * 100)
    monkeypatch.setattr(s3mod, "MAX_OBJECT", 50)
    reads: list[Callable[[], bytes]] = [
        lambda: b.get("packs/00/big"),
        lambda: b.get_range("packs/00/big", 0, 10),
    ]
    for read in reads:
        with pytest.raises(IntegrityError, match="larger than any object"):
            read()
    with pytest.raises(PopvaultError, match="larger than any object"):
        b.put("packs/00/bigger", b"y" * 51)
    assert not b.exists("packs/00/bigger")
    assert MAX_OBJECT == 256 << 20


def test_s3_missing_bucket_is_vault_not_found(s3_vault: str) -> None:
    b = _s3("s3://pv-no-such-bucket")
    with pytest.raises(VaultNotFound) as ei:
        b.get("config")
    assert ei.value.exit_code == 10
    assert "pv-no-such-bucket does not exist" in ei.value.message


def test_s3_prepare_init(s3_vault: str, seaweed: Seaweed) -> None:
    fresh = _s3(f"s3://pv-created-{secrets.token_hex(3)}/v")
    try:
        assert fresh.prepare_init() is True  # the bucket was missing: created
        assert fresh.list("") == []
    finally:
        seaweed.delete_bucket(fresh.location.bucket)
    assert _s3(f"{s3_vault}/v").prepare_init() is False  # exists: left alone
    _s3(s3_vault).put("photos/cat.jpg", b"meow")
    with pytest.raises(UsageError, match="holds objects that are not a vault"):
        _s3(s3_vault).prepare_init()
    with pytest.raises(UsageError, match="holds objects that are not a vault"):
        _s3(f"{s3_vault}/photos").prepare_init()
    assert _s3(s3_vault).list("") == ["photos/cat.jpg"]


@pytest.mark.parametrize(
    "url",
    ["s3://", "s3://ab", "s3://key:secret@bucket/p", "s3://bucket/a/../b", "s3://b_ucket?x=1",
     "s3://bucket/.hidden", "s3://host:9000/bucket"],
)  # fmt: skip
def test_s3_bad_urls(url: str) -> None:
    with pytest.raises(UsageError) as ei:
        as_backend(url)
    assert ei.value.exit_code == 2
    assert "secret" not in ei.value.message


def test_s3_get_of_a_body_cut_off_is_retried(
    s3_vault: str, seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore does not retry a body cut off mid-read: the backend fetches it again
    (within the retry policy's tries), then gives up with a temporary failure (75)."""
    data = secrets.token_bytes(1 << 20)
    _s3(s3_vault).put("packs/00/p", data)
    relay = CuttingRelay(seaweed.port)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", relay.endpoint)
        monkeypatch.setenv("POPVAULT_S3_BACKOFF", "0.01")
        b = _s3(s3_vault)
        relay.cuts = 2
        assert b.get("packs/00/p") == data
        assert b.get_range("packs/00/p", 1000, 500_000) == data[1000:501_000]
        assert relay.cuts == 0
        relay.cuts = 5
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        with pytest.raises(NetworkError) as ei:
            _s3(s3_vault).get("packs/00/p")
        assert ei.value.exit_code == 75
        assert "download of packs/00/p" in ei.value.message
        assert "2 tries in" in ei.value.message
        assert relay.cuts == 3
    finally:
        relay.close()


def test_s3_every_put_sends_content_md5(s3_vault: str) -> None:
    import base64
    import hashlib

    b = _s3(s3_vault)
    sent: list[tuple[str, str]] = []

    def capture(request: Any, **_kw: Any) -> None:
        header = request.headers.get("Content-MD5", b"")
        sent.append((request.method, header.decode() if isinstance(header, bytes) else header))

    b._client.meta.events.register("before-send.s3.PutObject", capture)
    b.put("packs/00/p", b"pack bytes")
    assert b.create_exclusive("lock", b"lock bytes")
    md5 = [
        base64.b64encode(hashlib.md5(d).digest()).decode() for d in (b"pack bytes", b"lock bytes")
    ]
    assert sent[0] == ("PUT", md5[0])
    assert sent[-1] == ("PUT", md5[1])
    assert all(h for _m, h in sent)  # the probe's puts too


def test_s3_credentials_from_a_profile(
    seaweed_signed: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The AWS chain: a profile of a credentials file, as the aws command reads it; a
    wrong one is refused with exit 77 and the secret is never shown."""
    env = seaweed_signed.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[pv]\naws_access_key_id = {env['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {env['AWS_SECRET_ACCESS_KEY']}\n"
        "[bad]\naws_access_key_id = NOSUCH\naws_secret_access_key = bad-secret-123\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    seaweed_signed.create_bucket("pv-profile")
    monkeypatch.setenv("AWS_PROFILE", "pv")
    b = _s3("s3://pv-profile/v")
    b.put("config", b"c")
    assert b.get("config") == b"c"
    monkeypatch.setenv("AWS_PROFILE", "bad")
    with pytest.raises(AuthenticationFailed) as ei:
        _s3("s3://pv-profile/v").get("config")
    assert ei.value.exit_code == 77
    assert "bad-secret-123" not in ei.value.message + str(ei.value.hint)
    monkeypatch.setenv("AWS_PROFILE", "nosuchprofile")
    with pytest.raises(UsageError, match="profile 'nosuchprofile' not found"):
        _s3("s3://pv-profile/v").get("config")
