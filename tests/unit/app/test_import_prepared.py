"""Import prepares messages off its main thread (a helper process for small ones after
the first PREPARE_MIN, a thread for larger ones held whole): the vault it makes holds
the same messages, pieces and metadata as adding each message the ordinary way, in the
order read, duplicates counted once."""

from __future__ import annotations

from pathlib import Path

import pytest

from popvault.app.export import export_messages
from popvault.app.fetch import PREPARE_MAX, PREPARE_MIN
from popvault.app.importer import import_sources
from popvault.app.metadata import parse_metadata
from popvault.mailboxes.mbox import MboxWriter, read_mbox
from popvault.vault import SourceInfo, Vault
from tests.support.generate import realistic
from tests.support.vaults import create, isolate_cache, open_ro, open_rw


def _listing(vault: Vault) -> list[tuple[object, ...]]:
    """Everything a listing shows but the time of the run and the vault's keyed ids,
    with each message's bytes and its blobs' kinds and sizes."""
    out: list[tuple[object, ...]] = []
    for r in vault.messages():
        shown = (r.size, r.date, r.received, r.from_, r.to, r.cc, r.subject, r.message_id)
        more = (r.file_time, r.accounts, r.uidls, r.sources, r.flags)
        out.append((*shown, *more, vault.read_message(r.id)))
    return out


def test_import_files_what_adding_each_message_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_cache(monkeypatch, tmp_path)
    messages = list(realistic(PREPARE_MIN + 120, 7, avg_size=60 << 10))
    messages += messages[PREPARE_MIN + 5 : PREPARE_MIN + 15]  # duplicates, prepared too
    assert any(len(m) > PREPARE_MAX for m in messages[PREPARE_MIN:])  # a thread's too
    mbox = tmp_path / "in.mbox"
    with MboxWriter(mbox) as w:
        for i, m in enumerate(messages):
            w.add(m, sender="a@example.org", when=1_600_000_000 + 60 * i)
    imported, added = tmp_path / "imported", tmp_path / "added"
    create(imported)
    create(added)
    with open_rw(imported) as v:
        rep = import_sources(v, [str(mbox)])
    assert (rep.messages, rep.new, rep.duplicates) == (len(messages), len(messages) - 10, 10)
    with open_rw(added) as v:
        for sm in read_mbox(mbox):
            src = SourceInfo("import", sm.source, from_line_time=sm.from_line_time)
            v.add_message(sm.data, src, parse_metadata(sm.data))
        v.commit()
    with open_ro(imported) as a, open_ro(added) as b:
        listed = _listing(a)
        assert listed == _listing(b)
        assert len(listed) == len(messages) - 10
        assert {row[-1] for row in listed} == {sm.data for sm in read_mbox(mbox)}
        assert _blob_bytes(a) == _blob_bytes(b)
        same = ("messages", "arrivals", "raw_bytes", "arrival_bytes", "commits")
        assert [a.stats()[k] for k in same] == [b.stats()[k] for k in same]


def _blob_bytes(vault: Vault) -> list[tuple[str, int, int]]:
    """Blobs (count, bytes) by kind, but the commit's records (its keyed ids and times
    differ)."""
    q = "SELECT kind, COUNT(*), SUM(length) FROM blobs WHERE kind != 'rec' GROUP BY kind"
    return list(vault.cache.db.execute(q))


def test_reimporting_an_mbox_export_of_many_messages_adds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages prepared by the helper are looked up in their exported forms too (CRLF
    mail exported as LF), once everything read before them is filed."""
    isolate_cache(monkeypatch, tmp_path)
    messages = list(realistic(PREPARE_MIN + 60, 8, avg_size=8 << 10))
    assert all(b"\r\n" in m for m in messages)
    maildir = tmp_path / "md"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for i, m in enumerate(messages):
        (maildir / "cur" / f"{i}.host:2,S").write_bytes(m)
    vault = tmp_path / "v"
    create(vault)
    with open_rw(vault) as v:
        assert import_sources(v, [str(maildir)]).new == len(messages)
        export_messages(v, str(tmp_path / "out.mbox"), "mbox")
        rep = import_sources(v, [str(tmp_path / "out.mbox")])
        assert (rep.new, rep.duplicates) == (0, len(messages))
        assert v.message_count() == len(messages)
