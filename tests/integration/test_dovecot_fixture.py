"""The private Dovecot fixture itself: listeners, TLS, logins, delivery, UIDLs, log counts.

The stdlib poplib/imaplib are fine here (and only here): these tests check the fixture,
not popvault's client.
"""

from __future__ import annotations

import hashlib
import imaplib
import mailbox
import poplib
import socket
import ssl
from pathlib import Path

import pytest

from tests.support.dovecot import Dovecot, UserInfo, served_bytes
from tests.support.generate import adversarial

MESSAGES = [
    b"From: a@example.org\r\nSubject: crlf\r\n\r\nbody one\r\n",
    b"From: b@example.org\nSubject: lf only\n\n.starts with a dot\n.\nend\n",
    b"Subject: odd bytes\r\n\r\nNUL \x00 lone CR \r here \xff\xfe\nmixed\r\n",
    b"Subject: no final newline\r\n\r\nlast line",
]


def _context(dc: Dovecot, cafile: Path | None = None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile or dc.ca_file))


def _pop3(dc: Dovecot, user: UserInfo) -> poplib.POP3:
    pop = poplib.POP3(dc.host, dc.pop3_port, timeout=10)
    pop.user(user.name)
    pop.pass_(user.password)
    return pop


def _uidls(pop: poplib.POP3) -> list[str]:
    _resp, lines, _octets = pop.uidl()
    return [line.split()[1].decode() for line in lines]


def _retr(pop: poplib.POP3, which: int) -> bytes:
    _resp, lines, _octets = pop.retr(which)
    return b"".join(line + b"\r\n" for line in lines)


def test_pop3s_login_verifies_with_ca_file(dovecot: Dovecot, dovecot_user: UserInfo) -> None:
    pop = poplib.POP3_SSL(dovecot.host, dovecot.pop3s_port, context=_context(dovecot), timeout=10)
    pop.user(dovecot_user.name)
    pop.pass_(dovecot_user.password)
    assert pop.stat() == (0, 0)
    assert isinstance(pop.sock, ssl.SSLSocket)
    der = pop.sock.getpeercert(binary_form=True)
    assert der is not None
    assert hashlib.sha256(der).hexdigest() == dovecot.cert_fingerprint_sha256
    pop.quit()


def test_localhost_name_verifies(dovecot: Dovecot) -> None:
    ctx = _context(dovecot)
    with socket.create_connection((dovecot.host, dovecot.pop3s_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.recv(100).startswith(b"+OK")


def test_wrong_ca_is_refused(dovecot: Dovecot) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        poplib.POP3_SSL(
            dovecot.host,
            dovecot.pop3s_port,
            context=_context(dovecot, dovecot.wrong_ca_file),
            timeout=10,
        )


def test_stls_and_apop(dovecot: Dovecot, dovecot_user: UserInfo) -> None:
    pop = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=10)
    assert b"<" in pop.getwelcome()  # APOP timestamp: the apop mechanism is on
    assert "STLS" in pop.capa()
    pop.stls(_context(dovecot))
    pop.apop(dovecot_user.name, dovecot_user.password)
    assert pop.stat() == (0, 0)
    pop.quit()


def test_wrong_password_is_auth_error(dovecot: Dovecot, dovecot_user: UserInfo) -> None:
    pop = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=10)
    pop.user(dovecot_user.name)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        pop.pass_(dovecot_user.password + "x")
    pop.close()


def test_imaps_login_and_starttls(dovecot: Dovecot, dovecot_user: UserInfo) -> None:
    with imaplib.IMAP4_SSL(
        dovecot.host, dovecot.imaps_port, ssl_context=_context(dovecot), timeout=10
    ) as imap:
        imap.login(dovecot_user.name, dovecot_user.password)
        assert imap.select("INBOX")[0] == "OK"
    with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10) as imap:
        assert "STARTTLS" in imap.capabilities
        imap.starttls(_context(dovecot))
        imap.login(dovecot_user.name, dovecot_user.password)
        imap.logout()


def test_deliver_uidls_stable_and_retr_byte_exact(dovecot: Dovecot, dovecot_user: UserInfo) -> None:
    first = dovecot.deliver(dovecot_user, MESSAGES[:2])
    assert first == [dovecot_user.uidl(1), dovecot_user.uidl(2)]
    pop = _pop3(dovecot, dovecot_user)
    assert _uidls(pop) == first
    pop.quit()

    second = dovecot.deliver(dovecot_user, MESSAGES[2:], flags="S")
    assert second == [dovecot_user.uidl(3), dovecot_user.uidl(4)]
    pop = _pop3(dovecot, dovecot_user)
    assert _uidls(pop) == first + second
    for number, message in enumerate(MESSAGES, start=1):
        assert _retr(pop, number) == served_bytes(message)
    pop.quit()

    assert dovecot.maildir_messages(dovecot_user) == MESSAGES
    assert dovecot.message_count(dovecot_user) == len(MESSAGES)
    sessions = dovecot.retr_counts(dovecot_user, min_sessions=2)
    assert [(s.retr, s.messages, s.deleted) for s in sessions] == [(0, 2, 0), (4, 4, 0)]


def test_uidls_survive_imap_access_and_dele(dovecot: Dovecot, dovecot_user: UserInfo) -> None:
    uidls = dovecot.deliver(dovecot_user, [b"Subject: 1\r\n\r\n1\r\n", b"Subject: 2\r\n\r\n2\r\n"])
    with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10) as imap:
        imap.login(dovecot_user.name, dovecot_user.password)
        imap.select("INBOX")
        _typ, data = imap.fetch("1:*", "(UID)")
        assert len(data) == 2
        imap.logout()
    pop = _pop3(dovecot, dovecot_user)
    pop.dele(1)
    pop.quit()
    more = dovecot.deliver(dovecot_user, [b"Subject: 3\r\n\r\n3\r\n"])
    assert more == [dovecot_user.uidl(3)]
    pop = _pop3(dovecot, dovecot_user)
    assert _uidls(pop) == [uidls[1], more[0]]
    pop.quit()
    assert dovecot.message_count(dovecot_user) == 2
    stats = dovecot.retr_counts(dovecot_user, min_sessions=2)
    assert stats[0].deleted == 1


def test_user_pointed_at_existing_maildir(dovecot: Dovecot, tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "restored", create=True)
    originals = [b"Subject: r1\n\nfirst\n", b"Subject: r2\r\n\r\nsecond\r\n"]
    for message in originals:
        box.add(message)
    user = dovecot.add_user("restored1", "pw", maildir=tmp_path / "restored")
    pop = _pop3(dovecot, user)
    assert _uidls(pop) == [user.uidl(1), user.uidl(2)]
    got = sorted(_retr(pop, n) for n in (1, 2))
    pop.quit()
    assert got == sorted(served_bytes(m) for m in originals)
    assert sorted(dovecot.maildir_messages(user)) == sorted(originals)
    assert not any(p.name.startswith("dovecot") for p in (tmp_path / "restored").iterdir())


def test_listeners_on_loopback_only(dovecot: Dovecot) -> None:
    ports = {dovecot.pop3_port, dovecot.pop3s_port, dovecot.imap_port, dovecot.imaps_port}
    assert len(ports) == 4
    assert all(port > 1024 for port in ports)
    assert dovecot.master_pid is not None


def _raw_retr_all(dc: Dovecot, user: UserInfo, count: int) -> list[bytes]:
    """RETR every message over a raw socket: poplib cannot read lines over 2,048 bytes."""
    with socket.create_connection((dc.host, dc.pop3_port), timeout=30) as sock:
        stream = sock.makefile("rwb")

        def command(line: str) -> bytes:
            stream.write(line.encode() + b"\r\n")
            stream.flush()
            reply = stream.readline()
            assert reply.startswith(b"+OK"), reply
            return reply

        stream.readline()
        command(f"USER {user.name}")
        command(f"PASS {user.password}")
        out = []
        for number in range(1, count + 1):
            command(f"RETR {number}")
            lines = []
            while (line := stream.readline()) != b".\r\n":
                assert line.endswith(b"\r\n"), line[-20:]
                lines.append(line[1:] if line.startswith(b".") else line)
            out.append(b"".join(lines))
        command("QUIT")
    return out


def test_adversarial_messages_are_served_as_served_bytes_predicts(
    dovecot: Dovecot, dovecot_user: UserInfo
) -> None:
    cases = adversarial()
    dovecot.deliver(dovecot_user, [data for _name, data in cases])
    served = _raw_retr_all(dovecot, dovecot_user, len(cases))
    for (name, data), got in zip(cases, served, strict=True):
        assert got == served_bytes(data), name
    assert dovecot.maildir_messages(dovecot_user) == [data for _name, data in cases]


def test_imap_append_shows_in_maildir_and_keeps_uidls(
    dovecot: Dovecot, dovecot_user: UserInfo
) -> None:
    first = dovecot.deliver(dovecot_user, [b"Subject: delivered\r\n\r\none\r\n"])
    appended = b"Subject: appended\r\n\r\nbody\r\n"
    with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10) as imap:
        imap.login(dovecot_user.name, dovecot_user.password)
        assert imap.append("INBOX", r"(\Seen)", None, appended)[0] == "OK"
        imap.logout()
    last = dovecot.deliver(dovecot_user, [b"Subject: later\r\n\r\nthree\r\n"])
    assert last == [dovecot_user.uidl(3)]
    on_disk = dovecot.maildir_messages(dovecot_user)
    assert on_disk[1] == appended.replace(b"\r\n", b"\n")  # Dovecot saves LF
    assert served_bytes(on_disk[1]) == appended
    pop = _pop3(dovecot, dovecot_user)
    assert _uidls(pop) == [first[0], dovecot_user.uidl(2), last[0]]
    assert _retr(pop, 2) == appended
    pop.quit()
