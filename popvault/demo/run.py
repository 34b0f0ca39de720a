"""``popvault demo``: the main job end to end on built-in sample data, on 127.0.0.1.

Starts our scripted POP3 server (:mod:`popvault.demo.server`) over TLS (a fresh
self-signed certificate, pinned by fingerprint, the way a user pins a self-signed
server), serving the sample messages in ``popvault/demo/samples/``; backs them up into a
throw-away vault; runs again to show that nothing new is fetched; lists the vault;
exports it to an mbox; checks every byte; stops. The steps are the use cases of
:mod:`popvault.app`, called as the CLI calls them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from popvault.app.backup import backup_account
from popvault.app.config import AccountConfig
from popvault.app.export import export_messages
from popvault.app.progress import NullProgress, Progress
from popvault.demo.server import ScriptedPop3Server
from popvault.errors import IntegrityError
from popvault.vault import KdfParams, Vault


@dataclass
class DemoReport:
    messages_served: int = 0
    first_run_fetched: int = 0
    second_run_fetched: int = 0
    listed: int = 0
    exported: int = 0
    mbox: str = ""
    vault: str = ""
    lines: list[str] = field(default_factory=list)


def sample_messages() -> list[tuple[str, bytes]]:
    """(uidl, bytes) of every sample message shipped in the package, sorted by name."""
    root = resources.files("popvault.demo").joinpath("samples")
    out = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".eml"):
            out.append((entry.name.removesuffix(".eml"), entry.read_bytes()))
    return out


def _self_signed(directory: Path) -> tuple[ssl.SSLContext, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "popvault demo")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "demo-cert.pem", directory / "demo-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return ctx, fingerprint


def run_demo(
    workdir: Path | None = None,
    *,
    progress: Progress | None = None,
    say: Callable[[str], None] = print,
) -> DemoReport:
    """Run the demo in ``workdir`` (a new temporary folder when None, removed after)."""
    progress = progress or NullProgress()
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="popvault-demo-") as tmp:
            return run_demo(Path(tmp), progress=progress, say=say)
    rep = DemoReport()
    workdir.mkdir(parents=True, exist_ok=True)
    messages = sample_messages()
    rep.messages_served = len(messages)
    ctx, fingerprint = _self_signed(workdir)
    password = "demo-password"  # noqa: S105 - a throw-away local server
    vault_dir = workdir / "vault"
    state = workdir / "state"  # the demo's machine is its folder: its anchors stay there
    rep.vault = str(vault_dir)
    with ScriptedPop3Server(
        messages, user="demo", password=password, tls="implicit", ssl_context=ctx
    ) as server:
        say(f"1. POP3S server on 127.0.0.1:{server.port} serving {len(messages)} sample messages")
        acct = AccountConfig(
            name="demo",
            host="127.0.0.1",
            user="demo",
            port=server.port,
            tls="implicit",
            tls_fingerprint=fingerprint,
            timeout=30,
        )
        passphrase = b"demo passphrase"
        Vault.init(
            vault_dir, passphrase, kdf=KdfParams(), cache_dir=workdir / "cache", state_dir=state
        ).close()
        say(f"2. created an encrypted vault in {vault_dir}")
        with Vault.open(
            vault_dir,
            passphrase,
            write=True,
            cache_dir=workdir / "cache",
            warn=progress.warn,
            state_dir=state,
        ) as vault:
            r1 = backup_account(vault, acct, password, progress=progress)
            rep.first_run_fetched = r1.fetched
            say(f"3. backup: fetched {r1.fetched} messages ({r1.bytes} bytes), {r1.new} new")
            r2 = backup_account(vault, acct, password, progress=progress)
            rep.second_run_fetched = r2.fetched
            say(f"4. backup again: {r2.listed} on the server, {r2.fetched} fetched (nothing new)")
            rows = list(vault.messages())
            rep.listed = len(rows)
            say(f"5. list: {len(rows)} messages in the vault")
            for row in rows:
                when = dt.datetime.fromtimestamp(row.delivered, dt.UTC).strftime("%Y-%m-%d")
                say(f"     {row.id.hex()[:12]}  {when}  {row.size:>6}  {row.subject[:56]}")
            mbox = workdir / "demo.mbox"
            ex = export_messages(vault, str(mbox), "mbox", progress=progress)
            rep.exported = ex.messages
            rep.mbox = str(mbox)
            say(f"6. export: {ex.messages} messages to {mbox}")
            check = vault.check(read_data=True)
            if not check.ok:
                raise IntegrityError("demo vault failed its check: " + "; ".join(check.problems))
            stats = vault.stats()
            say(
                f"7. check --read-data: ok. {stats['raw_bytes']} bytes of mail stored in"
                f" {stats['stored_bytes']} bytes (the forwarded photo is stored once)"
            )
    say("8. server stopped; the throw-away vault is removed unless you pass --keep DIR")
    return rep
