"""Logging in to a POP3 server: USER/PASS, APOP and SASL (RFC 1939, RFC 5034).

The login stage of :class:`~popvault.pop3.client.Pop3Client`, kept apart from the
session's commands: which method to use, and each exchange. USER and PASS are pipelined
when the server offers PIPELINING. A refused login is AuthenticationFailed (exit 77) or
a temporary failure for the RFC 2449/3206 response codes; messages never carry the
password, the digest or a SASL string.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import TYPE_CHECKING

from popvault.errors import ProtocolError, TLSError
from popvault.pop3 import sasl
from popvault.pop3.errors import Pop3CommandFailed, error_for_reply
from popvault.pop3.limits import status_deadline
from popvault.pop3.parser import Continuation, Expect, Status

if TYPE_CHECKING:
    from popvault.pop3.client import Pop3Client

log = logging.getLogger("popvault.pop3")

_MAX_SASL_ROUNDS = 8
_TIMESTAMP_RE = re.compile(r"<[^<>\s]*@[^<>\s]*>")


def start_session(client: Pop3Client) -> None:
    """From the greeting to a logged-in session: the greeting (and its APOP timestamp),
    CAPA, STLS when asked (then CAPA again), UTF8 when offered, the login, CAPA once
    more."""
    settings = client._settings
    client._parser.expect(Expect.SINGLE)
    greeting = client._read_status("greeting")
    if not greeting.ok:
        raise error_for_reply(client.host, "greeting", greeting.text)
    client._greeting = greeting.text
    m = _TIMESTAMP_RE.search(greeting.text)
    client._timestamp = m.group(0) if m else None
    client._capabilities = client._capa()
    if settings.tls == "starttls":
        if "STLS" not in client._capabilities:
            raise TLSError(
                f"{client.host}: server does not offer STLS",
                hint="use pop3s:// (implicit TLS) or, only on a trusted network, tls=none",
            )
        client._simple("STLS")
        dropped = client._parser.discard_buffer()
        if dropped:
            log.warning("%s: discarded %d plaintext bytes sent after STLS", client.host, dropped)
        assert client._sock is not None
        raw, client._sock = client._sock, None
        client._sock = client._wrap_tls(raw, settings)
        client._sock.settimeout(settings.timeout)
        client._capabilities = client._capa()
    if settings.utf8 and "UTF8" in client._capabilities:
        client._parser.expect(Expect.SINGLE)
        client._send(b"UTF8\r\n", "UTF8")
        client._read_status("UTF8")  # a refusal is harmless: we stay in ASCII mode
    login(client)
    after = client._capa()
    if after:
        client._capabilities = after


def login(client: Pop3Client) -> None:
    """Log in with the configured method, or the best one the server offers (SASL
    PLAIN, else USER/PASS, else SASL LOGIN); AuthenticationFailed (77) when refused."""
    settings = client._settings
    method = settings.auth.lower() if settings.auth else None
    if method is None:
        offered = [m.upper() for m in client._capabilities.get("SASL", [])]
        if "PLAIN" in offered:
            method = "plain"
        elif "USER" in client._capabilities or not client._capabilities or "LOGIN" not in offered:
            method = "user"
        else:
            method = "login"
    if method == "user":
        _user_pass(client)
    elif method == "apop":
        _apop(client)
    else:
        _sasl(client, sasl.MECHANISMS[method.upper()](settings.user, settings.password))


def _user_pass(client: Pop3Client) -> None:
    settings = client._settings
    user_label = f"USER {settings.user}"
    user_line = f"USER {settings.user}\r\n".encode()
    pass_line = f"PASS {settings.password}\r\n".encode()
    if client.pipelining:
        client._parser.expect(Expect.SINGLE)
        client._parser.expect(Expect.SINGLE)
        client._send(user_line + pass_line, "USER/PASS")
        user_status = client._read_status(user_label)
        pass_status = client._read_status("PASS")
    else:
        client._parser.expect(Expect.SINGLE)
        client._send(user_line, user_label)
        user_status = client._read_status(user_label)
        if user_status.ok:
            client._parser.expect(Expect.SINGLE)
            client._send(pass_line, "PASS")
            pass_status = client._read_status("PASS")
    if not user_status.ok:
        raise error_for_reply(client.host, user_label, user_status.text, login=True)
    if not pass_status.ok:
        raise error_for_reply(client.host, "PASS", pass_status.text, login=True)


def _apop(client: Pop3Client) -> None:
    settings = client._settings
    if client._timestamp is None:
        raise Pop3CommandFailed(
            f"{client.host}: APOP requested but the server greeting has no timestamp",
            hint="this server does not offer APOP; use auth 'plain' or 'user' over TLS",
        )
    digest = hashlib.md5((client._timestamp + settings.password).encode()).hexdigest()
    label = f"APOP {settings.user}"
    client._parser.expect(Expect.SINGLE)
    client._send(f"APOP {settings.user} {digest}\r\n".encode(), label)
    status = client._read_status(label)
    if not status.ok:
        raise error_for_reply(client.host, label, status.text, login=True)


def _sasl(client: Pop3Client, mech: sasl.SaslMechanism) -> None:
    label = f"AUTH {mech.name}"
    line, sent_initial = sasl.auth_command(mech)
    initial_due = not sent_initial and mech.initial() is not None
    client._parser.expect(Expect.SASL)
    client._send(line, label)
    for _ in range(_MAX_SASL_ROUNDS):
        event = client._next_event(label, status_deadline(client._settings.timeout))
        if isinstance(event, Status):
            if not event.ok:
                raise error_for_reply(client.host, label, event.text, login=True)
            return
        if not isinstance(event, Continuation):
            raise client._protocol(label, "unexpected reply during SASL exchange")
        challenge = sasl.decode_challenge(event.text)
        if initial_due and not challenge:
            initial_due = False
            answer = mech.initial()
            assert answer is not None
        else:
            try:
                answer = mech.step(challenge)
            except ProtocolError as exc:
                client._send(b"*\r\n", label)  # cancel (RFC 5034 section 4)
                raise client._protocol(label, exc.message) from None
        wire = sasl.encode(answer) if answer else b""
        client._send(wire + b"\r\n", label)
    raise client._protocol(label, "too many SASL challenges")
