"""Create the golden vault vectors in ``tests/vectors/v1/`` (format version 1, §13).

Run once, by hand, when a new vector set is wanted; never from a test::

    python tests/vectors/make_vectors.py            # writes tests/vectors/v1/
    python tests/vectors/make_vectors.py --out DIR  # somewhere else

The vault is made with ``TEST_KDF`` and the passphrase ``popvault-golden``. Keys, salts
and nonces are random (the vault's own), the messages are fixed: text with CRLF and LF,
8-bit and NUL bytes, an empty message, a base64 attachment that is split out, a line
over 2,048 bytes, and one message archived from two accounts, in three commits.
``expected.json`` next to the vault files maps every message id (hex) to the SHA-256 of
its bytes. ``tests/unit/vault/test_vectors.py`` reads a copy of the committed output on
every run, so a change that cannot read an old vault fails CI. The directory must not
exist (or be empty): vectors are never regenerated in place.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import sys
import tempfile
from pathlib import Path

PASSPHRASE = b"popvault-golden"


def _messages() -> list[list[tuple[str, bytes]]]:
    """Three batches of (account, message bytes)."""
    rnd = random.Random(1)
    attachment = rnd.randbytes(30_000)
    b64 = base64.b64encode(attachment)
    wrapped = b"".join(b64[i : i + 76] + b"\r\n" for i in range(0, len(b64), 76))
    text = (
        b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
        b"Subject: golden text\r\nMessage-ID: <g1@example.org>\r\n"
        b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n"
        b"Hello Bob,\r\n.leading dot\r\nFrom the start\r\n>From quoted\r\n"
    )
    lf = b"From: carol@example.org\nSubject: lf only\n\nline one\nline two\n"
    eight_bit = (
        b"From: d@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\n"
        + bytes(range(256))
        + b"\r\nno final newline"
    )
    attach = (
        b"From: e@example.org\r\nSubject: attachment\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + wrapped
        + b"--b--\r\n"
    )
    long_line = b"From: f@example.org\r\nSubject: long line\r\n\r\n" + b"x" * 5000 + b"\r\n"
    return [
        [("alice", text), ("alice", lf), ("alice", b"")],
        [("alice", eight_bit), ("bob", attach), ("bob", text)],
        [("bob", long_line)],
    ]


def make(out: Path, version: int = 1) -> dict[str, str]:
    """The vault at ``out`` in format ``version`` (a new vault is of the newest version;
    its config is set back before anything is written, so packs are of ``version``)."""
    from popvault.vault.config import FORMAT_NAME
    from popvault.vault.crypto import TEST_KDF, checksum_json, parse_checksum_json
    from popvault.vault.vault import MessageMeta, SourceInfo, Vault

    Vault.init(out, PASSPHRASE, kdf=TEST_KDF).close()
    body = parse_checksum_json((out / "config").read_bytes(), "config")
    assert body["format"] == FORMAT_NAME
    if body["version"] != version:
        (out / "config").chmod(0o600)
        (out / "config").write_bytes(checksum_json({**body, "version": version}))
    expected: dict[str, str] = {}
    with Vault.open(out, PASSPHRASE, write=True) as v:
        for b, batch in enumerate(_messages()):
            for i, (account, data) in enumerate(batch):
                res = v.add_message(
                    data,
                    SourceInfo(account, "pop3", uidl=f"uidl-{b}-{i}"),
                    MessageMeta(subject=f"batch {b} message {i}"),
                )
                expected[res.msg_id.hex()] = hashlib.sha256(data).hexdigest()
            v.commit()
        assert v.check(read_data=True).ok
    return expected


def main(version: int = 1, description: str = __doc__) -> int:
    """Write the golden vault of format ``version`` to ``--out`` (default ``v<version>``
    next to this file), with its ``expected.json``."""
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=here / f"v{version}")
    args = parser.parse_args()
    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        print(f"{out} exists and is not empty; vectors are never regenerated", file=sys.stderr)
        return 2
    sys.path.insert(0, str(here.parent.parent))
    with tempfile.TemporaryDirectory() as cache:
        os.environ["POPVAULT_CACHE_DIR"] = cache
        messages = make(out, version)
    magics = {p.read_bytes()[:8] for p in (out / "packs").rglob("*") if p.is_file()}
    assert magics == {b"PVPACK0%d" % version}, magics
    doc = {
        "format_version": version,
        "passphrase": PASSPHRASE.decode(),
        "kdf": "TEST_KDF",
        "commits": 3,
        "messages": dict(sorted(messages.items())),
    }
    (out / "expected.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(messages)} messages to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
