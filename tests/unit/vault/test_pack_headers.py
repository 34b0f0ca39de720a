"""Reading one message costs one request per frame once its pack's header is known: the
index cache keeps headers that a read verified. A read that must not trust what is kept
(the read-back before a deletion) still reads the header from the pack, and a wrong
header in the cache costs a request, never a false report of damage."""

from __future__ import annotations

from pathlib import Path

from popvault.vault import SourceInfo, Vault
from popvault.vault.backend import Backend, LocalBackend
from popvault.vault.pack import HEADER_SIZE
from popvault.vault.records import piece_ids

PASS = b"header cache test"


class Counting(LocalBackend):
    """A folder backend that counts ranged reads (header reads apart)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.headers = 0
        self.frames = 0

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if offset == 0 and length == HEADER_SIZE:
            self.headers += 1
        else:
            self.frames += 1
        return super().get_range(name, offset, length)


def _vault(tmp_path: Path) -> tuple[Path, list[bytes]]:
    path = tmp_path / "v"
    Vault.init(path, PASS, cache_dir=tmp_path / "init-cache").close()
    mail = [
        b"From: a@example.org\r\nSubject: one\r\n\r\nfirst\r\n",
        b"From: b@example.org\r\nSubject: two\r\n\r\n" + b"second line\r\n" * 500,
    ]
    v = Vault.open(path, PASS, write=True, cache_dir=tmp_path / "init-cache")
    try:
        for i, m in enumerate(mail):
            v.add_message(m, SourceInfo("a", "pop3", uidl=f"u{i}"))
        v.commit()
    finally:
        v.close()
    return path, mail


def _open(path: Path, cache: Path) -> tuple[Vault, Counting]:
    backend: Backend = Counting(path)
    v = Vault.open(backend, PASS, cache_file=cache)
    assert isinstance(backend, Counting)
    return v, backend


def _frames(v: Vault, msg_id: bytes) -> int:
    msg = v.message(msg_id)
    assert msg is not None
    locs = [v.cache.blob(b) for b in piece_ids(msg.pieces)]
    return len({(loc.pack, loc.frame) for loc in locs if loc is not None})


def test_a_known_header_saves_its_request(tmp_path: Path) -> None:
    path, mail = _vault(tmp_path)
    cache = tmp_path / "cache.sqlite"
    v, b = _open(path, cache)
    try:
        ids = [row.id for row in v.messages()]
        assert v.read_message(ids[0]) in mail
        assert b.headers == 1  # the first read of the pack reads its header
        frames = _frames(v, ids[0])
    finally:
        v.close()
    for msg_id in ids:  # each as a new process would: a new Vault, the same cache
        v, b = _open(path, cache)
        try:
            assert v.read_message(msg_id) in mail
            assert (b.headers, b.frames) == (0, _frames(v, msg_id))
        finally:
            v.close()
    assert frames >= 1
    # the read-back before a deletion reads the header from the pack all the same
    v, b = _open(path, cache)
    try:
        assert v.read_message(ids[1], use_cache=False) in mail
        assert b.headers >= 1
    finally:
        v.close()


def test_a_wrong_header_in_the_cache_is_read_again_from_the_pack(tmp_path: Path) -> None:
    path, mail = _vault(tmp_path)
    cache = tmp_path / "cache.sqlite"
    v, _b = _open(path, cache)
    try:
        ids = [row.id for row in v.messages()]
        v.read_message(ids[0])
        (pack,) = {
            loc.pack
            for loc in [v.cache.blob(x) for x in piece_ids(v.message(ids[0]).pieces)]
            if loc
        }
        good = v.cache.pack_header(pack)
        assert good is not None and len(good) == HEADER_SIZE
        v.cache.remember_pack_header(pack, good[:8] + bytes(HEADER_SIZE - 8))
    finally:
        v.close()
    v, b = _open(path, cache)
    try:
        assert v.read_message(ids[0]) in mail  # not reported as damage
        assert b.headers == 1
        assert v.cache.pack_header(pack) == good  # and the cache is right again
    finally:
        v.close()
