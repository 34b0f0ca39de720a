"""SASL mechanisms for POP3 AUTH (RFC 5034): PLAIN, LOGIN, XOAUTH2 and OAUTHBEARER.

Each mechanism is a small object that produces the client's messages as raw bytes; the
client (:mod:`popvault.pop3.client`) does the base64 framing and decides, per RFC 5034
section 4, whether the initial response goes on the AUTH line (only if the whole command
fits in 255 octets including CRLF) or is sent after an empty ``+`` challenge. No
mechanism's repr, str or error message ever contains the secret it carries. PLAIN is
RFC 4616, OAUTHBEARER is RFC 7628, XOAUTH2 is Google's documented variant; LOGIN is the
de-facto username/password exchange (draft-murchison-sasl-login).
"""

from __future__ import annotations

import base64
import binascii

from popvault.errors import ProtocolError

#: RFC 5034 section 4: an AUTH command with initial response must fit in 255 octets.
MAX_AUTH_LINE = 255


class SaslMechanism:
    """One SASL client exchange. Subclasses override :meth:`initial` and :meth:`step`.

    :meth:`initial` is pure (it may be called to measure the AUTH line); when the
    initial response did not fit on the AUTH line, the client sends it in answer to the
    server's first, empty challenge and only later challenges go to :meth:`step`.
    """

    name: str = ""

    def __init__(self, user: str, secret: str) -> None:
        self._user = user
        self._secret = secret

    def __repr__(self) -> str:
        return f"<{type(self).__name__} user={self._user!r} secret=***>"

    def initial(self) -> bytes | None:
        """The client-first message, or None if the mechanism has none."""
        return None

    def step(self, challenge: bytes) -> bytes:
        """Answer a decoded server challenge with the next client message."""
        raise ProtocolError(f"unexpected SASL {self.name} challenge from the server")


class Plain(SaslMechanism):
    """RFC 4616: ``authzid NUL authcid NUL passwd``, with an empty authzid."""

    name = "PLAIN"

    def initial(self) -> bytes:
        return b"\0" + self._user.encode() + b"\0" + self._secret.encode()


class Login(SaslMechanism):
    """The LOGIN mechanism: the server prompts for the user name, then the password."""

    name = "LOGIN"

    def __init__(self, user: str, secret: str) -> None:
        super().__init__(user, secret)
        self._steps = 0

    def step(self, challenge: bytes) -> bytes:
        self._steps += 1
        if self._steps == 1:
            return self._user.encode()
        if self._steps == 2:
            return self._secret.encode()
        raise ProtocolError("too many SASL LOGIN challenges")


class XOAuth2(SaslMechanism):
    """Google's XOAUTH2: ``user=U ^A auth=Bearer T ^A ^A``.

    On failure the server sends a base64 JSON error as a challenge; the client must
    answer with an empty response, after which the server sends ``-ERR``.
    """

    name = "XOAUTH2"

    def initial(self) -> bytes:
        return f"user={self._user}\x01auth=Bearer {self._secret}\x01\x01".encode()

    def step(self, challenge: bytes) -> bytes:
        return b""  # the challenge is an error report: acknowledge, -ERR follows


class OAuthBearer(SaslMechanism):
    """RFC 7628 OAUTHBEARER with a GS2 header naming the user.

    On failure the server sends a base64 JSON error; the client answers ``^A`` (RFC 7628
    section 3.2.3) and the server then sends ``-ERR``.
    """

    name = "OAUTHBEARER"

    def initial(self) -> bytes:
        gs2_user = self._user.replace("=", "=3D").replace(",", "=2C")
        return f"n,a={gs2_user},\x01auth=Bearer {self._secret}\x01\x01".encode()

    def step(self, challenge: bytes) -> bytes:
        return b"\x01"


MECHANISMS: dict[str, type[SaslMechanism]] = {
    "PLAIN": Plain,
    "LOGIN": Login,
    "XOAUTH2": XOAuth2,
    "OAUTHBEARER": OAuthBearer,
}


def encode(message: bytes) -> bytes:
    """Base64 for the wire; RFC 5034 sends an empty initial response as ``=``."""
    return base64.b64encode(message) if message else b"="


def decode_challenge(text: str) -> bytes:
    """Decode a ``+ base64`` challenge; raise :class:`ProtocolError` if not base64."""
    text = text.strip()
    if text in ("", "="):
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ProtocolError("server sent a SASL challenge that is not base64") from None


def auth_command(mechanism: SaslMechanism) -> tuple[bytes, bool]:
    """The AUTH command line (with CRLF) and whether it carries the initial response.

    The initial response is included only when the mechanism has one and the whole
    command, CRLF included, fits :data:`MAX_AUTH_LINE` octets (RFC 5034 section 4).
    """
    bare = b"AUTH " + mechanism.name.encode() + b"\r\n"
    first = mechanism.initial()
    if first is None:
        return bare, False
    line = b"AUTH " + mechanism.name.encode() + b" " + encode(first) + b"\r\n"
    if len(line) <= MAX_AUTH_LINE:
        return line, True
    return bare, False


__all__ = [
    "MAX_AUTH_LINE",
    "MECHANISMS",
    "Login",
    "OAuthBearer",
    "Plain",
    "SaslMechanism",
    "XOAuth2",
    "auth_command",
    "decode_challenge",
    "encode",
]
