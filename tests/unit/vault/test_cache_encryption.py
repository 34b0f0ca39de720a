"""The local index cache is encrypted at rest (format §9.3, issue 10 item 7).

Real files, no mocks: a vault whose headers, UIDLs, accounts and source paths carry
marker strings is written and closed, then the raw bytes of the cache file and of its
``-wal`` and ``-shm`` are searched for every marker.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from popvault.errors import UsageError
from popvault.vault.cache import Filter, IndexCache
from popvault.vault.cachekey import FILE_MAGIC, PLAINTEXT_ENV, CacheKey
from popvault.vault.vault import MessageMeta, SourceInfo, Vault
from tests.cli.helpers import run_sub
from tests.support.vaults import PASSPHRASE, cache_file, create, open_ro, open_rw, text_message

#: One marker per kind of fact the cache holds; none may appear in its files.
MARKERS = {
    "from": "FromMarkerQx7",
    "to": "ToMarkerZk4",
    "cc": "CcMarkerWv9",
    "subject": "SubjectMarkerJp2",
    "message_id": "MsgIdMarkerRt5",
    "uidl": "UidlMarkerHb8",
    "account": "AccountMarkerLc3",
    "source": "SourceMarkerNy6",
    "flags": "FlagsMarkerDe1",
}
PLAIN_HEADER = b"SQLite format 3\x00"


@pytest.fixture(autouse=True)
def _encrypted_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PLAINTEXT_ENV, raising=False)


def _add_marked(v: Vault, n: int) -> bytes:
    """Add one message whose every cached fact carries a marker (with ``n`` appended)."""
    m = {k: f"{v_}{n}" for k, v_ in MARKERS.items()}
    meta = MessageMeta(
        date=1_700_000_000.0 + n,
        from_=f"{m['from']} <a{n}@example.org>",
        to=f"{m['to']}@example.net",
        cc=f"{m['cc']}@example.net",
        subject=f"{m['subject']} quarterly report",
        message_id=f"<{m['message_id']}@example.org>",
    )
    source = SourceInfo(
        m["account"], f"/home/user/Mail/{m['source']}.mbox", uidl=m["uidl"], flags=m["flags"]
    )
    return v.add_message(text_message(1000 + n), source, meta).msg_id


def _files(path: Path) -> list[Path]:
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def _found(path: Path, n: int) -> list[str]:
    """The markers (for message ``n``) found in the cache file or its -wal/-shm."""
    hits = []
    for p in _files(path):
        raw = p.read_bytes()
        for kind, marker in MARKERS.items():
            needle = f"{marker}{n}".encode()
            # also the bare marker and its UTF-16 forms, in case anything stores those
            for form in (needle, marker.encode(), marker.encode("utf-16-le")):
                if form in raw:
                    hits.append(f"{kind} in {p.name}")
    return hits


@contextmanager
def _marked_vault(root: Path, count: int = 3) -> Iterator[tuple[Vault, list[bytes]]]:
    """A vault (opened for writing) with ``count`` marked messages in two commits."""
    create(root)
    with open_rw(root) as v:
        ids = [_add_marked(v, n) for n in range(count - 1)]
        assert v.commit() is not None
        ids.append(_add_marked(v, count - 1))
        assert v.commit() is not None
        yield v, ids


def _cache_path(cache_dir: Path, root: Path) -> Path:
    with open_ro(root) as v:
        return cache_file(v)


def test_no_marker_in_the_cache_files_while_open_and_after(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "v"
    with _marked_vault(root, count=4) as (v, ids):
        path = cache_file(v)
        # the cache does know them (the test is not vacuous) ...
        rows = list(v.messages(Filter(from_=MARKERS["from"])))
        assert {r.id for r in rows} == set(ids)
        assert rows[0].uidls == [f"{MARKERS['uidl']}0"]
        assert rows[0].accounts == [f"{MARKERS['account']}0"]
        # ... and, while the vault is open, the WAL holds the latest pages: encrypted too
        assert Path(f"{path}-wal").exists()
        assert Path(f"{path}-wal").stat().st_size > 0
        for n in range(4):
            assert _found(path, n) == []
        head = path.read_bytes()[:16]
        assert head == FILE_MAGIC + bytes.fromhex(v.vault_id)[:8]
        for msg_id in ids:  # nor the keyed ids
            for p in _files(path):
                assert msg_id not in p.read_bytes()
    assert path.is_file()
    for n in range(4):
        assert _found(path, n) == []
    assert not path.read_bytes().startswith(PLAIN_HEADER)


#: Words only in the bytes of messages: the search index holds them (folded to lower
#: case, accents removed, CJK as bigrams), and none may appear in the cache files.
TEXT_MARKERS = ("BodyMarkerGt4", "FileMarkerPq8", "CrèmeMarkerXv5", "東京都庁鷺沢")


def _text_forms(marker: str) -> list[bytes]:
    from popvault.vault.fts import index_text

    forms = {marker, marker.lower(), marker.lower().replace("è", "e"), index_text(marker)}
    if all(c >= "\u3040" for c in marker):  # and each CJK bigram the index holds
        forms |= {marker[i : i + 2] for i in range(len(marker) - 1)}
    out = [f.encode() for f in forms if f]
    return out + [f.encode("utf-16-le") for f in forms if f]


def test_no_search_index_word_in_the_cache_files(tmp_path: Path, cache_dir: Path) -> None:
    """The full-text index (issue 13) lives in the encrypted cache: the body words,
    attachment names and snippets it stores are not in its files in any form."""
    from popvault.app.search import index_new, search

    body, fname, accent, cjk = TEXT_MARKERS
    msg = (
        "From: a@example.org\r\nSubject: hello\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"the {body} text, {accent} and {cjk}\r\n--b\r\n"
        f"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename={fname}.pdf"
        "\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n"
    ).encode()
    root = tmp_path / "v"
    create(root)
    with open_rw(root) as v:
        msg_id = v.add_message(msg, SourceInfo("acct", "x")).msg_id
        assert v.commit() is not None
        assert index_new(v).indexed == 1
        path = cache_file(v)
        # the index does hold them (the test is not vacuous) ...
        for query in (body, f"filename:{fname}", "cremEmarkerxv5", "都庁"):
            hits = list(search(v, query))
            assert [h.row.id for h in hits] == [msg_id], query
        assert "[" in hits[0].snippet
        # ... and neither the open files (WAL included) nor the closed ones show them
        assert Path(f"{path}-wal").stat().st_size > 0
        for p in _files(path):
            raw = p.read_bytes()
            for marker in TEXT_MARKERS:
                for form in _text_forms(marker):
                    assert form not in raw, (marker, form, p.name)
    for p in _files(path):
        raw = p.read_bytes()
        for marker in TEXT_MARKERS:
            for form in _text_forms(marker):
                assert form not in raw, (marker, form, p.name)


def test_cache_files_private(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "v"
    with _marked_vault(root) as (v, _ids):
        path = cache_file(v)
        files = _files(path)
        assert len(files) == 3  # the database, its -wal and -shm
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700


def test_encrypted_cache_reopens_without_a_rebuild(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "v"
    with _marked_vault(root) as (v, ids):
        with v.cache.db:
            v.cache.set_meta("probe", "kept")
    warnings: list[str] = []
    with open_ro(root, warn=warnings.append) as v:
        assert v.cache.encrypted
        assert v.cache.get_meta("probe") == "kept"  # the same file, not rebuilt
        assert {r.id for r in v.messages()} == set(ids)
    assert warnings == []


def test_plaintext_on_request(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PLAINTEXT_ENV, "1")
    root = tmp_path / "v"
    with _marked_vault(root) as (v, _ids):
        path = cache_file(v)
        assert not v.cache.encrypted
    raw = path.read_bytes()
    assert raw.startswith(PLAIN_HEADER)
    assert f"{MARKERS['subject']}0".encode() in raw
    assert f"{MARKERS['uidl']}2".encode() in raw
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("value", ["0", "", "yes", "true"])
def test_only_1_asks_for_plaintext(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(PLAINTEXT_ENV, value)
    root = tmp_path / "v"
    create(root)
    path = _cache_path(cache_dir, root)
    assert path.read_bytes().startswith(FILE_MAGIC)


def test_old_plaintext_cache_is_replaced_silently(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plaintext cache of an earlier popvault: replaced by an encrypted one, no
    warning; the listing is the same."""
    monkeypatch.setenv(PLAINTEXT_ENV, "1")
    root = tmp_path / "v"
    with _marked_vault(root) as (v, _ids):
        path = cache_file(v)
        before = [(r.id, r.from_, r.uidls, r.sources) for r in v.messages()]
    assert path.read_bytes().startswith(PLAIN_HEADER)
    monkeypatch.delenv(PLAINTEXT_ENV)
    warnings: list[str] = []
    with open_ro(root, warn=warnings.append) as v:
        assert v.cache.encrypted
        after = [(r.id, r.from_, r.uidls, r.sources) for r in v.messages()]
        assert _found(path, 0) == []
    assert warnings == []
    assert after == before
    assert path.read_bytes().startswith(FILE_MAGIC)
    for n in range(3):
        assert _found(path, n) == []
    # and back: asking for plaintext replaces the encrypted one, silently too
    monkeypatch.setenv(PLAINTEXT_ENV, "1")
    with open_ro(root, warn=warnings.append) as v:
        assert [(r.id, r.from_, r.uidls, r.sources) for r in v.messages()] == before
    assert warnings == []
    assert path.read_bytes().startswith(PLAIN_HEADER)


def test_cache_under_another_key_is_rebuilt_with_a_warning(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "v"
    with _marked_vault(root) as (v, ids):
        path = cache_file(v)
        salt = CacheKey.derive(v.keys, v.vault_id).salt
    for p in _files(path):
        p.unlink()
    wrong = IndexCache(path, CacheKey(os.urandom(32), salt))  # this vault's header
    wrong.reset("00" * 16)
    wrong.close()
    warnings: list[str] = []
    with open_ro(root, warn=warnings.append) as v:
        assert {r.id for r in v.messages(Filter(subject=MARKERS["subject"]))} == set(ids)
        assert v.cache.get_meta("vault_id") == v.vault_id
    assert len(warnings) == 1
    assert "did not open with this vault's key" in warnings[0]
    assert str(path) in warnings[0]
    with open_ro(root, warn=warnings.append):
        pass
    assert len(warnings) == 1  # rebuilt once, for good


def test_garbage_cache_is_rebuilt_with_a_warning(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "v"
    with _marked_vault(root) as (v, ids):
        path = cache_file(v)
    for p in _files(path):
        p.unlink()
    path.write_bytes(os.urandom(8192))
    warnings: list[str] = []
    with open_ro(root, warn=warnings.append) as v:
        assert {r.id for r in v.messages()} == set(ids)
    assert len(warnings) == 1
    assert "did not open" in warnings[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_encrypted_cache_of_another_vault_refused_with_cache_option(tmp_path: Path) -> None:
    """``--cache`` naming another vault's (encrypted) cache: refused, not overwritten."""
    shared = tmp_path / "one.sqlite"
    for name in ("a", "b"):
        create(tmp_path / name)
    Vault.open(tmp_path / "a", PASSPHRASE, cache_file=shared).close()
    before = shared.read_bytes()
    with pytest.raises(UsageError) as ei:
        Vault.open(tmp_path / "b", PASSPHRASE, cache_file=shared)
    assert ei.value.exit_code == 2
    assert "another vault" in ei.value.message
    assert shared.read_bytes() == before


def test_list_from_after_replacing_an_old_plaintext_cache(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command, as a user runs it: a plaintext cache left by an earlier popvault,
    then ``popvault list --from``: the right messages, nothing on stderr (no SQLCipher
    log lines either), and an encrypted cache afterwards."""
    monkeypatch.setenv(PLAINTEXT_ENV, "1")
    root = tmp_path / "v"
    with _marked_vault(root) as (v, _ids):
        path = cache_file(v)
    monkeypatch.delenv(PLAINTEXT_ENV)
    env = {"POPVAULT_PASSPHRASE": PASSPHRASE.decode(), "POPVAULT_CACHE_DIR": str(cache_dir)}
    res = run_sub("--vault", root, "list", "--from", f"{MARKERS['from']}1", env=env)
    assert res.code == 0, res
    assert res.err == ""
    assert f"{MARKERS['subject']}1".encode() in res.out
    assert f"{MARKERS['subject']}0".encode() not in res.out
    assert path.read_bytes().startswith(FILE_MAGIC)
    # the garbage case through the command: a warning on stderr, and the listing
    for p in _files(path):
        p.unlink()
    path.write_bytes(b"\x00garbage" * 1000)
    res = run_sub("--vault", root, "list", "--from", MARKERS["from"], env=env)
    assert res.code == 0, res
    assert "did not open" in res.err
    assert res.out.count(MARKERS["subject"].encode()) == 3


def test_cache_key_is_derived_from_the_master_key_and_vault_id(tmp_path: Path) -> None:
    create(tmp_path / "v")
    with open_ro(tmp_path / "v") as v:
        k = CacheKey.derive(v.keys, v.vault_id)
        assert len(k.key) == 32
        assert k == CacheKey.derive(v.keys, v.vault_id)
        assert k.key != CacheKey.derive(v.keys, "ff" * 16).key
        assert k.key not in (v.keys.enc, v.keys.mac)
        assert "secret" in repr(k) and k.key.hex() not in repr(k)
