"""Shared pieces of the restore and migrate tests: vaults to restore from, the CLI, and
what a restored message looks like when read back over IMAP from the private Dovecot.

The one normalisation every test uses is `dovecot_imap_view`: it maps the bytes popvault
holds for a message to the bytes a ``FETCH BODY[]`` of the APPENDed copy returns from the
private Dovecot (2.3.19). It applies exactly these transformations and nothing else:

1. popvault's own, documented in `popvault.app.restore.to_crlf`: a bare LF is sent as
   CRLF (IMAP wants CRLF line ends).
2. Dovecot saves APPENDed mail with LF line ends (``mail_save_crlf = no``): every CRLF
   is stored as LF. A CR that stands right before a CRLF therefore ends up stored before
   an LF, and a CR at the very end of the message is dropped (no LF follows it).
3. Dovecot serves LF as CRLF, but an LF already preceded by a CR as it is. Together with
   step 2 this means: a CR directly before a CRLF is lost (``CR CR LF`` comes back as
   ``CR LF``, ``CR CR CR LF`` as ``CR CR LF``), and a trailing CR is lost; every other
   lone CR comes back unchanged. (shared/notes/dovecot.md says "APPEND turns a bare CR
   into a line break"; seen here, it is this narrower rule.)
4. ``FETCH BODY[]`` shows a NUL byte as 0x80.

Anything else that differs is a real difference, and the tests fail on it.
"""

from __future__ import annotations

import collections
import datetime as dt
import email.utils
import json
import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import popvault.vault.crypto
from popvault.app.metadata import parse_metadata
from popvault.app.restore import to_crlf
from popvault.imap import ImapClient, ImapSettings
from popvault.tls import TlsMode
from popvault.vault.vault import SourceInfo, Vault
from tests.support.dovecot import Dovecot, UserInfo
from tests.support.imap_helpers import uid_fetch_all

PASSPHRASE = "restore-test-passphrase"
_MIDDLE_CR = re.compile(rb"\r(?=\r\n)")


def dovecot_imap_view(data: bytes) -> bytes:
    """The bytes FETCH BODY[] returns for ``data`` restored (APPENDed) to the private
    Dovecot; see the module docstring for the four transformations, and only those."""
    sent = to_crlf(data)  # 1
    stored = sent.replace(b"\r\n", b"\n")  # 2: LF line ends on disk
    if stored.endswith(b"\r"):
        stored = stored[:-1]  # 2: a trailing CR waits for an LF that never comes
    served = re.sub(rb"(?<!\r)\n", b"\r\n", stored)  # 3
    return served.replace(b"\x00", b"\x80")  # 4


def multiset(messages: Iterable[bytes]) -> collections.Counter[bytes]:
    """Messages as a multiset (order-free, duplicates counted)."""
    return collections.Counter(messages)


# --------------------------------------------------------------------------- vaults


@dataclass(frozen=True)
class Seed:
    """One message to put into a test vault, and where it says it came from."""

    data: bytes
    flags: str | None = None
    file_time: float | None = None
    account: str = "acct"
    uidl: str | None = None


@dataclass(frozen=True)
class Stored:
    """A message as it is in the test vault."""

    msg_id: bytes
    data: bytes
    flags: str | None
    file_time: float | None


def make_vault(path: Path, seeds: Sequence[Seed], *, source: str = "test") -> list[Stored]:
    """Create a vault at ``path`` (cheap KDF, passphrase `PASSPHRASE`) holding ``seeds``,
    committed; return them in ``seeds`` order. The caller sets POPVAULT_CACHE_DIR."""
    Vault.init(path, PASSPHRASE.encode(), kdf=popvault.vault.crypto.TEST_KDF).close()
    return add_to_vault(path, seeds, source=source)


def add_to_vault(path: Path, seeds: Sequence[Seed], *, source: str = "test") -> list[Stored]:
    """Add ``seeds`` to the vault at ``path`` and commit."""
    out: list[Stored] = []
    with Vault.open(path, PASSPHRASE.encode(), write=True) as vault:
        for i, s in enumerate(seeds):
            res = vault.add_message(
                s.data,
                SourceInfo(
                    account=s.account,
                    source=f"{source}:{i}",
                    uidl=s.uidl,
                    flags=s.flags,
                    file_time=s.file_time,
                ),
                parse_metadata(s.data),
            )
            out.append(Stored(res.msg_id, s.data, s.flags, s.file_time))
        vault.commit()
    return out


def rfc2822(when: dt.datetime) -> str:
    return email.utils.format_datetime(when)


def dated_message(
    tag: str,
    *,
    date: dt.datetime | None,
    received: Sequence[dt.datetime] = (),
    body_lines: int = 3,
) -> bytes:
    """A small CRLF message with the given Date and Received headers (newest first)."""
    lines: list[str] = []
    for n, when in enumerate(received):
        lines.append(f"Received: from relay{n}.example.org by mx.example.net; {rfc2822(when)}")
    lines += [
        "From: Sender <sender@example.org>",
        "To: owner@example.net",
        f"Subject: restore test {tag}",
        f"Message-ID: <{tag}@example.org>",
    ]
    if date is not None:
        lines.append(f"Date: {rfc2822(date)}")
    lines.append("")
    lines += [f"body line {i} of message {tag}" for i in range(body_lines)]
    return ("\r\n".join(lines) + "\r\n").encode()


# ----------------------------------------------------------------------------- IMAP


def imap_settings(dc: Dovecot, user: UserInfo, tls: TlsMode = "implicit") -> ImapSettings:
    port = dc.imaps_port if tls == "implicit" else dc.imap_port
    return ImapSettings(
        host=dc.host,
        port=port,
        tls=tls,
        user=user.name,
        password=user.password,
        tls_ca_file=str(dc.ca_file),
        timeout=30.0,
    )


def imaps_url(dc: Dovecot, user: UserInfo, folder: str = "Restored") -> str:
    return f"imaps://{user.name}@{dc.host}:{dc.imaps_port}/{folder}"


def starttls_url(dc: Dovecot, user: UserInfo, folder: str = "Restored") -> str:
    return f"imap://{user.name}@{dc.host}:{dc.imap_port}/{folder}"


@dataclass(frozen=True)
class Fetched:
    uid: int
    data: bytes
    internaldate: float
    flags: frozenset[str]


def fetch_folder(dc: Dovecot, user: UserInfo, folder: str) -> list[Fetched]:
    """Every message of ``folder`` (server spelling, e.g. ``A.B``) as FETCH returns it;
    ``\\Recent`` is left out of the flags (the server sets it, not restore)."""
    with ImapClient.connect(imap_settings(dc, user)) as client:
        if not client.folder_exists(folder):
            return []
        return [
            Fetched(uid, data, when, frozenset(f for f in flags if f != "\\Recent"))
            for uid, data, when, flags in uid_fetch_all(client, folder)
        ]


# ------------------------------------------------------------------------------ CLI


def cli_env(
    cache_dir: Path, *, imap_password: str | None = None, pop3_password: str | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POPVAULT_")}
    env["POPVAULT_PASSPHRASE"] = PASSPHRASE
    env["POPVAULT_CACHE_DIR"] = str(cache_dir)
    env["POPVAULT_STATE_DIR"] = f"{cache_dir}.state"  # a fresh cache: a fresh machine
    if imap_password is not None:
        env["POPVAULT_IMAP_PASSWORD"] = imap_password
    if pop3_password is not None:
        env["POPVAULT_POP3_PASSWORD"] = pop3_password
    return env


def json_report(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """The one JSON object a ``--json`` run printed on stdout."""
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line, got {proc.stdout!r} / {proc.stderr!r}"
    value = json.loads(lines[0])
    assert isinstance(value, dict)
    return value
