"""The vault's records as frozen dataclasses, and their JSON both ways (format §8.1, §9.2).

A commit's segment holds a list of records: ``msg`` (a distinct message: its size, its
pieces, its metadata), ``src`` (one arrival of a message: account, UIDL, source),
``del`` (a UIDL deleted from a server) and ``rst`` (a message restored to a target). A
commit record names the packs and segments of one commit. Each class has ``to_json()``,
giving the exact dict the format describes (same keys, same order: the bytes of a
segment do not depend on this module), and ``from_json()``, which refuses a malformed
one with IntegrityError. A message's pieces keep their JSON shape here (lists, §7.2):
:func:`piece_ids` reads the blob ids out of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from popvault.errors import IntegrityError
from popvault.vault.meta import MessageMeta

#: A message's pieces as the format spells them (§7.2): ``["r", blob]`` or
#: ``["b", [blob, ...], line_length, "crlf" | "lf"]``.
Pieces = list[Any]


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
            return MsgRecord(bytes.fromhex(d["id"]), int(d["size"]), pieces, meta)
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
    out: list[bytes] = []
    for p in pieces:
        if p[0] == "r":
            out.append(bytes.fromhex(p[1]))
        elif p[0] == "b":
            out += [bytes.fromhex(x) for x in p[1]]
    return out


def piece_hex_ids(pieces: Pieces) -> list[str]:
    """The same as :func:`piece_ids`, as the hex strings the pieces hold (cheaper)."""
    out: list[str] = []
    for p in pieces:
        if p[0] == "r":
            out.append(p[1])
        elif p[0] == "b":
            out += p[1]
    return out
