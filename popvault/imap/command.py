"""How command arguments go on the wire (RFC 3501 sections 4 and 9): atoms, quoted
strings, literals and mailbox names.

A command is a list of :data:`Arg`: bytes sent as they are, or a :class:`LiteralArg`
that the connection announces as ``{n}`` (waiting for the server's ``+``) or ``{n+}``
(LITERAL+, no wait) before sending its bytes. :func:`astring` picks the cheapest form
that carries a value exactly; :func:`mailbox` writes a folder name in modified UTF-7.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeAlias

from popvault.imap.mutf7 import encode_mutf7

_ATOM_SPECIALS = frozenset(b'(){ %*"\\]\r\n') | frozenset(range(0x20)) | {0x7F}


def is_atom(text: str) -> bool:
    """Whether ``text`` can be sent as an atom (no quoting, no literal)."""
    return bool(text) and all(0x20 < ord(c) < 0x7F and ord(c) not in _ATOM_SPECIALS for c in text)


class LiteralArg:
    """A command argument sent as a literal (``{n}`` or ``{n+}``): ``data``, or ``size``
    bytes that ``pieces()`` yields (a large message, streamed instead of held)."""

    __slots__ = ("data", "pieces", "size")

    def __init__(
        self,
        data: bytes,
        pieces: Callable[[], Iterable[bytes]] | None = None,
        size: int | None = None,
    ) -> None:
        self.data = data
        self.pieces = pieces
        self.size = len(data) if size is None else size


Arg: TypeAlias = "bytes | LiteralArg"


def astring(value: str) -> Arg:
    """An astring argument: atom, quoted string, or literal for anything else."""
    if is_atom(value):
        return value.encode("ascii")
    if value.isascii() and not any(c in value for c in "\r\n\0") and len(value) < 1000:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'.encode("ascii")
    return LiteralArg(value.encode("utf-8"))


def mailbox(name: str) -> Arg:
    """A mailbox name argument: ``INBOX`` (any case) as such, others in modified UTF-7."""
    if name.upper() == "INBOX":
        return b"INBOX"
    return astring(encode_mutf7(name))


def flat(part: Arg) -> bytes:
    """An argument as it shows in a message: a literal as its ``{n}`` marker only."""
    return part if isinstance(part, bytes) else b"{%d}" % part.size


__all__ = ["Arg", "LiteralArg", "astring", "flat", "is_atom", "mailbox"]
