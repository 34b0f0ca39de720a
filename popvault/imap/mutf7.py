"""Modified UTF-7, the encoding of IMAP mailbox names on the wire (RFC 3501 section 5.1.3).

Printable ASCII stands for itself except ``&``, which is written ``&-``; any other run
of characters is UTF-16BE in base64 (``,`` instead of ``/``, no padding) between ``&``
and ``-``. The client encodes every folder name it sends; a malformed name from a server
is a :class:`ProtocolError`.
"""

from __future__ import annotations

import base64

from popvault.errors import ProtocolError


def _b64_mutf7(text: str) -> str:
    raw = text.encode("utf-16-be")
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")


def encode_mutf7(name: str) -> str:
    """Encode a mailbox name in IMAP modified UTF-7 (RFC 3501 section 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            if pending:
                out.append("&" + _b64_mutf7("".join(pending)) + "-")
                pending = []
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    if pending:
        out.append("&" + _b64_mutf7("".join(pending)) + "-")
    return "".join(out)


def decode_mutf7(name: str) -> str:
    """Decode an IMAP modified UTF-7 mailbox name; :class:`ProtocolError` if malformed."""
    out: list[str] = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch != "&":
            if not 0x20 <= ord(ch) <= 0x7E:
                raise ProtocolError(f"invalid character in modified UTF-7 name {name!r}")
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise ProtocolError(f"unterminated shift in modified UTF-7 name {name!r}")
        chunk = name[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            try:
                raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
                if len(raw) % 2:
                    raise ValueError("odd length")
                out.append(raw.decode("utf-16-be"))
            except ValueError as exc:
                raise ProtocolError(f"invalid modified UTF-7 name {name!r}") from exc
        i = end + 1
    return "".join(out)


__all__ = ["decode_mutf7", "encode_mutf7"]
