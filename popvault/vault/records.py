"""The vault's records as frozen dataclasses, and their JSON both ways (format §8.1, §9.2).

A commit's segment holds a list of records: ``msg`` (a distinct message: its size, its
pieces, its metadata), ``src`` (one arrival of a message: account, UIDL, source),
``del`` (a UIDL deleted from a server) and ``rst`` (a message restored to a target). A
commit record names the packs and segments of one commit. Each class has ``to_json()``,
giving the exact dict the format describes (same keys, same order: the bytes of a
segment do not depend on this module), and ``from_json()``, which refuses a malformed
one with IntegrityError. A message's pieces (§7.2) are named tuples, so that they are
the format's JSON arrays as they are; :func:`piece_ids` reads the blob ids out of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from popvault.errors import IntegrityError
from popvault.vault.meta import MessageMeta


class BlobPiece(NamedTuple):
    """A run of the message's bytes stored as one blob (§7.2: ``["r", blob]``)."""

    tag: Literal["r"]
    blob: str  # the blob's id, hex


class AttachmentPiece(NamedTuple):
    """A base64 attachment stored decoded, in blobs, and how to wrap it again (§7.2:
    ``["b", [blob, ...], line_length, "crlf" | "lf"]``)."""

    tag: Literal["b"]
    blobs: list[str]  # the blobs' ids, hex, in order
    line_length: int
    eol: Literal["crlf", "lf"]


#: One piece of a message. Being tuples, pieces are the JSON arrays the format spells.
Piece = BlobPiece | AttachmentPiece
Pieces = list[Piece]


def blob_piece(blob: str) -> BlobPiece:
    return BlobPiece("r", blob)


def attachment_piece(blobs: list[str], line_length: int, eol: bytes) -> AttachmentPiece:
    return AttachmentPiece("b", blobs, line_length, "crlf" if eol == b"\r\n" else "lf")


def pieces_from_json(items: Any) -> Pieces:
    """A message's pieces from their JSON arrays; IntegrityError when malformed (an
    unknown kind of piece included: a reader cannot rebuild the message without it)."""
    out: Pieces = []
    try:
        for p in items:
            if p[0] == "r" and len(p) == 2 and isinstance(p[1], str):
                out.append(BlobPiece("r", p[1]))
            elif (
                p[0] == "b"
                and len(p) == 4
                and isinstance(p[1], list)
                and all(isinstance(b, str) for b in p[1])
                and isinstance(p[2], int)
                and p[2] > 0
                and p[3] in ("crlf", "lf")
            ):
                out.append(AttachmentPiece("b", list(p[1]), p[2], p[3]))
            else:
                raise ValueError
    except (TypeError, ValueError, IndexError, KeyError):
        raise IntegrityError(f"a message's pieces are malformed: {str(items)[:80]}") from None
    return out


@dataclass(frozen=True)
class SourceInfo:
    """Where one arrival of a message came from (the ``src`` record's fields)."""

    account: str
    source: str
    uidl: str | None = None
    flags: str | None = None
    file_time: float | None = None
    from_line_time: float | None = None


@dataclass(frozen=True)
class AddResult:
    """What adding one message did: its id, whether the vault lacked it, its size."""

    msg_id: bytes
    new: bool
    size: int


@dataclass(frozen=True)
class MsgRecord:
    """``msg``: one distinct message."""

    id: bytes
    size: int
    pieces: Pieces
    meta: MessageMeta

    def to_json(self) -> dict[str, Any]:
        return {
            "t": "msg",
            "id": self.id.hex(),
            "size": self.size,
            "pieces": self.pieces,
            "meta": self.meta.to_json(),
        }


@dataclass(frozen=True)
class SrcRecord:
    """``src``: one arrival of a message."""

    msg: bytes
    source: SourceInfo
    archived: float

    def to_json(self) -> dict[str, Any]:
        s = self.source
        return {
            "t": "src",
            "msg": self.msg.hex(),
            "account": s.account,
            "uidl": s.uidl,
            "source": s.source,
            "flags": s.flags,
            "archived": self.archived,
            "file_time": s.file_time,
            "from_line_time": s.from_line_time,
        }


@dataclass(frozen=True)
class DelRecord:
    """``del``: a UIDL deleted from a server (``msg``: the message archived for it)."""

    account: str
    uidl: str
    msg: bytes | None
    time: float

    def to_json(self) -> dict[str, Any]:
        return {
            "t": "del",
            "account": self.account,
            "uidl": self.uidl,
            "msg": self.msg.hex() if self.msg else None,
            "time": self.time,
        }


@dataclass(frozen=True)
class RstRecord:
    """``rst``: a message restored to a target (``uid``: its IMAP UID, if known)."""

    target: str
    msg: bytes
    uid: int | None
    time: float

    def to_json(self) -> dict[str, Any]:
        return {
            "t": "rst",
            "target": self.target,
            "msg": self.msg.hex(),
            "uid": self.uid,
            "time": self.time,
        }


Record = MsgRecord | SrcRecord | DelRecord | RstRecord


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def record_from_json(d: Any) -> Record | None:
    """A record from its JSON form; None for a record type this version does not know
    (a reader skips those); IntegrityError when a known one is malformed."""
    try:
        t = d.get("t")
        if t == "msg":
            m = d.get("meta") or {}
            meta = MessageMeta(
                date=_opt_float(m.get("date")),
                received=_opt_float(m.get("received")),
                from_=str(m.get("from") or ""),
                to=str(m.get("to") or ""),
                cc=str(m.get("cc") or ""),
                subject=str(m.get("subject") or ""),
                message_id=str(m.get("message_id") or ""),
            )
            pieces = d["pieces"]
            if not isinstance(pieces, list):
                raise TypeError
            return MsgRecord(bytes.fromhex(d["id"]), int(d["size"]), pieces_from_json(pieces), meta)
        if t == "src":
            src = SourceInfo(
                account=str(d["account"]),
                source=str(d["source"]),
                uidl=d.get("uidl"),
                flags=d.get("flags"),
                file_time=_opt_float(d.get("file_time")),
                from_line_time=_opt_float(d.get("from_line_time")),
            )
            return SrcRecord(bytes.fromhex(d["msg"]), src, float(d["archived"]))
        if t == "del":
            msg = bytes.fromhex(d["msg"]) if d.get("msg") else None
            return DelRecord(str(d["account"]), str(d["uidl"]), msg, float(d["time"]))
        if t == "rst":
            uid = d.get("uid")
            return RstRecord(
                str(d["target"]),
                bytes.fromhex(d["msg"]),
                None if uid is None else int(uid),
                float(d["time"]),
            )
    except (AttributeError, KeyError, TypeError, ValueError):
        raise IntegrityError(f"a record of the index is malformed: {str(d)[:80]}") from None
    return None


def records_from_json(items: list[Any]) -> list[Record]:
    return [r for r in (record_from_json(d) for d in items) if r is not None]


def piece_ids(pieces: Pieces) -> list[bytes]:
    """The blob ids a message's pieces name, in order (format §7.2)."""
    return [bytes.fromhex(h) for h in piece_hex_ids(pieces)]


def piece_hex_ids(pieces: Pieces) -> list[str]:
    """The same as :func:`piece_ids`, as the hex strings the pieces hold (cheaper)."""
    out: list[str] = []
    for p in pieces:
        if isinstance(p, BlobPiece):
            out.append(p.blob)
        else:
            out += p.blobs
    return out


@dataclass(frozen=True)
class CommitRecord:
    """A commit record (§8.1): the packs and segments of one commit, in sequence.

    ``accepts`` (written by ``popvault repair`` only) lists the damage to the chain of
    commits that the repair has recovered from and accepted (§8.7).
    """

    seq: int
    time: float
    host: str
    packs: list[str]
    segments: list[str]
    parent: str | None
    accepts: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "version": 1,
            "seq": self.seq,
            "time": self.time,
            "host": self.host,
            "packs": self.packs,
            "segments": self.segments,
            "parent": self.parent,
        }
        if self.accepts:
            body["accepts"] = list(self.accepts)
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any], what: str) -> CommitRecord:
        """From its JSON object (version already checked); IntegrityError if malformed."""
        try:
            packs, segments, parent = body["packs"], body["segments"], body.get("parent")
            accepts = body.get("accepts", [])
            if not isinstance(packs, list) or not isinstance(segments, list):
                raise TypeError
            if not isinstance(accepts, list):
                raise TypeError
            if not all(isinstance(x, str) for x in packs + segments + accepts):
                raise TypeError
            if parent is not None and not isinstance(parent, str):
                raise TypeError
            seq = body["seq"]
            if not isinstance(seq, int) or isinstance(seq, bool):
                raise TypeError
            return cls(
                seq,
                float(body.get("time", 0)),
                str(body.get("host", "")),
                packs,
                segments,
                parent,
                tuple(accepts),
            )
        except (KeyError, TypeError, ValueError):
            raise IntegrityError(f"{what} is malformed") from None


@dataclass(frozen=True)
class CommitMark:
    """``cmt``: the first record of every commit's record list (§9.2): the sequence
    number and parent the commit was written for, and the packs it wrote before the one
    holding its ``rec`` blob. A pack that no commit names but whose ``rec`` blob holds
    a mark tells which commit it belonged to (§8.4)."""

    seq: int
    parent: str | None
    packs: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"t": "cmt", "seq": self.seq, "parent": self.parent, "packs": list(self.packs)}


def commit_mark(items: list[Any]) -> CommitMark | None:
    """The ``cmt`` record of a record list, or None (older writers, or malformed)."""
    for d in items[:1]:
        if not isinstance(d, dict) or d.get("t") != "cmt":
            return None
        seq, parent, packs = d.get("seq"), d.get("parent"), d.get("packs", [])
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            return None
        if parent is not None and not isinstance(parent, str):
            return None
        if not isinstance(packs, list) or not all(isinstance(p, str) for p in packs):
            return None
        return CommitMark(seq, parent, tuple(packs))
    return None


@dataclass(frozen=True)
class Segment:
    """An index segment (§9.1): the blob locations of one commit, and its records (their
    JSON, read with :meth:`records` only when needed)."""

    blobs: list[list[Any]]
    records_json: list[Any]

    def records(self) -> list[Record]:
        return records_from_json(self.records_json)
