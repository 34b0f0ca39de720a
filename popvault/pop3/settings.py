"""Connection settings of one POP3 account, and the ``pop3s://`` / ``pop3://`` URL form.

:class:`Pop3Settings` is everything the client needs to reach and log in to a server;
its repr never shows the password. :func:`parse_pop3_url` reads the account URLs users
write in config files and on the command line: ``pop3s://USER@HOST[:PORT]`` (implicit
TLS, port 995) and ``pop3://USER@HOST[:PORT][?tls=starttls|none]`` (port 110, STLS by
default). The user may be percent-encoded (``alice%40example.com``) and may carry an
RFC 2384 ``;AUTH=mechanism``. A password in the URL is refused: it would end up in the
process list and shell history (guarantee 8).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from popvault.errors import UsageError, shown_url
from popvault.tls import TLS_MODES, TlsMode

#: Every value of an ``auth`` setting: USER/PASS, APOP and the SASL mechanisms we speak.
AUTH_METHODS = ("user", "apop", "plain", "login", "xoauth2", "oauthbearer")


@dataclass(frozen=True)
class Pop3Settings:
    """How to reach and log in to one POP3 account.

    ``port`` None means 995 for implicit TLS and 110 otherwise. ``auth`` None picks
    automatically from CAPA (SASL PLAIN if offered, else USER/PASS); for ``xoauth2`` and
    ``oauthbearer`` the password is the bearer token. ``tls_fingerprint`` (SHA-256 of the
    DER certificate or of its SubjectPublicKeyInfo) replaces chain verification by a pin.
    ``timeout`` bounds every read; ``connect_timeout`` the TCP connect and TLS handshake.
    """

    host: str
    user: str
    password: str = field(repr=False)
    port: int | None = None
    tls: TlsMode = "implicit"
    auth: str | None = None
    tls_ca_file: str | None = None
    tls_fingerprint: str | None = None
    connect_timeout: float = 30.0
    timeout: float = 60.0
    utf8: bool = True

    def __post_init__(self) -> None:
        if self.tls not in TLS_MODES:
            raise UsageError(f"tls must be one of {', '.join(TLS_MODES)}, not {self.tls!r}")
        if self.auth is not None and self.auth.lower() not in AUTH_METHODS:
            raise UsageError(
                f"unknown auth method {self.auth!r}", hint=f"use one of {', '.join(AUTH_METHODS)}"
            )
        if self.port is not None and not 0 < self.port < 65536:
            raise UsageError(f"port {self.port} is out of range")
        for name, value in (("host", self.host), ("user", self.user)):
            if not value or any(c in value for c in "\r\n\0"):
                raise UsageError(f"{name} must be non-empty and must not contain CR, LF or NUL")
        if any(c in self.password for c in "\r\n\0"):
            raise UsageError("the password must not contain CR, LF or NUL")

    @property
    def effective_port(self) -> int:
        """The port to connect to: ``port``, or 995 (implicit TLS) / 110."""
        if self.port is not None:
            return self.port
        return 995 if self.tls == "implicit" else 110


@dataclass(frozen=True)
class Pop3Url:
    """The pieces of an account URL; :meth:`settings` adds the secret."""

    host: str
    user: str
    port: int | None
    tls: TlsMode
    auth: str | None = None

    def settings(self, password: str, **options: object) -> Pop3Settings:
        """Build :class:`Pop3Settings` from these pieces, ``password`` and extra options."""
        return Pop3Settings(
            host=self.host,
            user=self.user,
            password=password,
            port=self.port,
            tls=self.tls,
            auth=self.auth,
            **options,  # type: ignore[arg-type]
        )


def parse_pop3_url(url: str) -> Pop3Url:
    """Parse ``pop3s://USER@HOST[:PORT]`` or ``pop3://USER@HOST[:PORT][?tls=...]``.

    Raises :class:`UsageError` (exit 2) for any other scheme, a missing user or host, a
    password in the URL, a bad port, a path, fragment or unknown query parameter.
    """
    shown = shown_url(url)  # what an error may show of it: never a password
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"bad POP3 URL {shown!r}: {exc}") from None
    scheme = parts.scheme.lower()
    hint = "write pop3s://USER@HOST[:PORT] or pop3://USER@HOST[:PORT]?tls=starttls|none"
    if scheme not in ("pop3", "pop3s"):
        raise UsageError(f"bad POP3 URL {shown!r}: scheme must be pop3s or pop3", hint=hint)
    if parts.password is not None:
        raise UsageError(
            "bad POP3 URL: it contains a password",
            hint="give the password in the config file or the environment, never in the URL",
        )
    if parts.path not in ("", "/") or parts.fragment:
        raise UsageError(f"bad POP3 URL {shown!r}: unexpected path or fragment", hint=hint)
    raw_user = parts.username
    host = parts.hostname
    if not raw_user or not host:
        raise UsageError(f"bad POP3 URL {shown!r}: user and host are required", hint=hint)
    auth: str | None = None
    if ";" in raw_user:
        raw_user, _, param = raw_user.partition(";")
        key, _, value = param.partition("=")
        if key.lower() != "auth" or not value:
            raise UsageError(f"bad POP3 URL {shown!r}: unknown user parameter", hint=hint)
        value = urllib.parse.unquote(value).lower()
        if value in ("*", "+apop"):
            auth = None if value == "*" else "apop"
        elif value in AUTH_METHODS:
            auth = value
        else:
            raise UsageError(f"bad POP3 URL {shown!r}: unknown auth method {value!r}", hint=hint)
    user = urllib.parse.unquote(raw_user, errors="strict")
    tls: TlsMode = "implicit" if scheme == "pop3s" else "starttls"
    try:
        query = urllib.parse.parse_qsl(
            parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)
        )
    except ValueError:
        raise UsageError(f"bad POP3 URL {shown!r}: malformed query", hint=hint) from None
    for key, value in query:
        if key != "tls" or scheme != "pop3":
            raise UsageError(f"bad POP3 URL {shown!r}: unknown parameter {key!r}", hint=hint)
        if value == "starttls":
            tls = "starttls"
        elif value == "none":
            tls = "none"
        else:
            raise UsageError(f"bad POP3 URL {shown!r}: tls must be starttls or none", hint=hint)
    if port == 0:
        raise UsageError(f"bad POP3 URL {shown!r}: port 0", hint=hint)
    if any(c in user for c in "\r\n\0"):
        raise UsageError(f"bad POP3 URL {shown!r}: control characters in the user", hint=hint)
    return Pop3Url(host=host, user=user, port=port, tls=tls, auth=auth)


__all__ = ["AUTH_METHODS", "Pop3Settings", "Pop3Url", "TlsMode", "parse_pop3_url"]
