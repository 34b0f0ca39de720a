"""A private Dovecot 2.3 instance for integration tests: config, certificates, users, mail.

`Dovecot.start()` writes its own config file into a short base directory under /tmp
(``/tmp/pvdc-XXXXXXXX``; Dovecot's unix sockets live there and a socket path must stay
under 108 bytes), starts ``dovecot -F -c CONFIG`` as a child and waits until all four
listeners accept and one POP3 and one IMAP login succeed. It never touches the system
instance: ``doveadm`` without ``-c`` would. Listeners, all on 127.0.0.1 and free high
ports: POP3 (STLS offered), POP3S, IMAP (STARTTLS offered), IMAPS.

Mail is owned by the system user ``vmail`` (created with useradd when missing: Dovecot
refuses mail access as root). Users come from passwd-files (one per user) with
``{PLAIN}`` passwords, so users can be added while it runs.

Stable UIDLs: ``pop3_uidl_format = %08Xu%08Xv`` and a ``dovecot-uidlist`` written by
`Dovecot.deliver` itself (fixed UIDVALIDITY, UIDs in delivery order), under Dovecot's own
dotlock, so appending later never renumbers earlier messages.

Facts learned here (see also shared/notes/dovecot.md):

- Dovecot serves a Maildir file with LF line endings as CRLF, keeps existing CRLF, and
  appends a CRLF to a file without a final newline (an empty file is served as one
  CRLF); lone CR and NUL pass unchanged. `served_bytes` models that, checked against
  every case of `tests.support.generate.adversarial` in the fixture's own tests.
- Dovecot re-reads a changed passwd-file at most once a second, so each user has a
  passwd-file of its own (``passwd/%u``), read the moment the user first logs in.
- After a failed login, anvil's auth penalty delays every later login from the same IP
  (2 s, 4 s, ... up to 15 s); the config disables it, and ``auth_failure_delay``.
- ``%08Xu%08Xv`` gives lower-case hex in 2.3.19 (despite the capital X).
- APOP needs a passdb that can hand out the plaintext password: a passwd-file with
  ``{PLAIN}`` passwords can, so ``auth_mechanisms = plain login apop`` works and the
  POP3 greeting then carries the ``<...>`` timestamp.
- ``pop3_logout_format`` writes per-session counts to the log; `retr_counts` reads them.
  The log process writes asynchronously: poll (``min_sessions``) rather than read once.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import imaplib
import ipaddress
import os
import poplib
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DEFAULT_UIDVALIDITY",
    "Dovecot",
    "DovecotError",
    "Pop3SessionStats",
    "UserInfo",
    "served_bytes",
]

#: UIDVALIDITY written into every ``dovecot-uidlist`` this module creates: fixed, so
#: UIDLs are the same on every run and across server restarts.
DEFAULT_UIDVALIDITY = 0x5EED0001

MAIL_USER = "vmail"
_BINARIES = ("dovecot", "doveadm")
_START_TIMEOUT = 20.0
_host_counter = 0


class DovecotError(RuntimeError):
    """The private Dovecot could not be set up, started or driven."""


@dataclass(frozen=True)
class UserInfo:
    """A mail user of the private Dovecot.

    ``maildir`` is the user's Maildir (``cur``/``new``/``tmp`` below it); ``control_dir``
    holds ``dovecot-uidlist`` (the Maildir itself, unless the user was pointed at an
    existing Maildir, whose tree then stays free of Dovecot's own files).
    """

    name: str
    password: str
    maildir: Path
    control_dir: Path
    uidvalidity: int

    def uidl(self, uid: int) -> str:
        """The UIDL Dovecot reports for ``uid`` (``%08Xu%08Xv``, lower-case hex)."""
        return f"{uid:08x}{self.uidvalidity:08x}"


@dataclass(frozen=True)
class Pop3SessionStats:
    """One POP3 session's counts from ``pop3_logout_format``.

    ``top``/``top_bytes``: TOP commands and bytes sent; ``retr``/``retr_bytes``: RETR
    commands and bytes sent; ``deleted``: messages expunged at QUIT; ``messages``: messages
    in the mailbox at login; ``size``: mailbox size in bytes at login.
    """

    top: int
    top_bytes: int
    retr: int
    retr_bytes: int
    deleted: int
    messages: int
    size: int


def served_bytes(message: bytes) -> bytes:
    """The octets Dovecot serves (RETR, after dot-unstuffing) for a Maildir file.

    Bare LF becomes CRLF, CRLF stays, a lone CR and NUL stay, and a message that does not
    end in a newline gets CRLF appended (which LIST and STAT do not count); so an empty
    file is served as a lone CRLF.
    """
    out = re.sub(rb"(?<!\r)\n", b"\r\n", message)
    if not out.endswith(b"\n"):
        out += b"\r\n"
    return out


@dataclass(frozen=True)
class _Ports:
    pop3: int
    pop3s: int
    imap: int
    imaps: int


def _free_ports(count: int) -> list[int]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _mail_user() -> pwd.struct_passwd:
    """The ``vmail`` system user, created when missing (needs root)."""
    try:
        return pwd.getpwnam(MAIL_USER)
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise DovecotError(f"system user {MAIL_USER!r} is missing and we are not root")
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", MAIL_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(MAIL_USER)


def _write_pem(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def _make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _make_searchable(path: Path) -> None:
    """Add o+x to ``path`` and every ancestor so the mail user can reach it."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & 0o001:
            p.chmod((mode & 0o7777) | 0o001)


class Dovecot:
    """A private Dovecot instance: start it, add users, deliver mail, read its log.

    Use ``with Dovecot.start() as dc:`` or call `stop` yourself. Attributes after start:
    ``host`` (``"127.0.0.1"``), ``pop3_port``, ``pop3s_port``, ``imap_port``, ``imaps_port``,
    ``ca_file`` (CA that signed the server certificate, for CN/SAN 127.0.0.1 and localhost),
    ``wrong_ca_file`` (an unrelated CA, for negative TLS tests), ``cert_file``,
    ``cert_fingerprint_sha256`` (lower-case hex SHA-256 of the server certificate's DER),
    ``base_dir``, ``config_file``, ``log_file``.
    """

    host = "127.0.0.1"

    def __init__(self, base_dir: Path, *, extra_config: str = "") -> None:
        self.base_dir = base_dir
        self.extra_config = extra_config
        self.config_file = base_dir / "dovecot.conf"
        self.log_file = base_dir / "dovecot.log"
        self.passwd_dir = base_dir / "passwd"
        self.run_dir = base_dir / "run"
        self.mail_root = base_dir / "mail"
        self.ca_file = base_dir / "ca.pem"
        self.wrong_ca_file = base_dir / "wrong-ca.pem"
        self.cert_file = base_dir / "server.pem"
        self.key_file = base_dir / "server.key"
        self.cert_fingerprint_sha256 = ""
        self.pop3_port = self.pop3s_port = self.imap_port = self.imaps_port = 0
        self._users: dict[str, UserInfo] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._mail_uid = 0
        self._mail_gid = 0
        self._deliver_counter = 0

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def start(cls, *, extra_config: str = "") -> Dovecot:
        """Start a private instance and wait until it serves logins; raise DovecotError.

        ``extra_config`` is appended to the generated config (e.g. ``pop3_lock_session
        = yes``). The returned instance owns a fresh ``/tmp/pvdc-*`` directory, removed by
        `stop`.
        """
        missing = [b for b in _BINARIES if shutil.which(b) is None]
        if missing:
            raise DovecotError(
                f"Dovecot binaries not found on PATH: {', '.join(missing)}; "
                "install the Debian packages dovecot-pop3d and dovecot-imapd "
                "(.ci/run does this)"
            )
        if os.geteuid() != 0:
            raise DovecotError("the private Dovecot must be started as root (it drops to vmail)")
        base = Path(tempfile.mkdtemp(prefix="pvdc-", dir="/tmp"))
        base.chmod(0o755)
        dc = cls(base, extra_config=extra_config)
        try:
            dc._setup()
            last: Exception | None = None
            for _attempt in range(3):
                try:
                    dc._launch()
                    return dc
                except DovecotError as exc:
                    # Most likely a free port got taken between probe and bind: retry.
                    last = exc
                    dc._terminate()
            raise DovecotError(f"Dovecot did not start: {last}")
        except BaseException:
            dc.stop()
            raise

    def __enter__(self) -> Dovecot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the master (SIGTERM via its pid, SIGKILL after 10 s) and remove base_dir."""
        self._terminate()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    @property
    def master_pid(self) -> int | None:
        """The master's pid from ``base_dir/run/master.pid``, or None when not running."""
        try:
            return int((self.run_dir / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _terminate(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        pid = self.master_pid or proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        # Children (login, auth, pop3...) exit when the master goes; give them a moment.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 0)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                os.killpg(proc.pid, 0)
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGKILL)

    def _setup(self) -> None:
        mail = _mail_user()
        self._mail_uid, self._mail_gid = mail.pw_uid, mail.pw_gid
        for needed in ("dovecot", "dovenull"):
            try:
                pwd.getpwnam(needed)
            except KeyError as exc:
                raise DovecotError(
                    f"system user {needed!r} is missing: is dovecot-core installed?"
                ) from exc
        self.run_dir.mkdir(mode=0o755)
        (self.base_dir / "state").mkdir(mode=0o750)
        self.mail_root.mkdir(mode=0o755)
        os.chown(self.mail_root, self._mail_uid, self._mail_gid)
        (self.base_dir / "control").mkdir(mode=0o755)
        os.chown(self.base_dir / "control", self._mail_uid, self._mail_gid)

        ca_key, ca_cert = _make_ca("popvault test CA")
        key, cert = _make_server_cert(ca_key, ca_cert)
        _wrong_key, wrong_ca = _make_ca("popvault unrelated CA")
        _write_pem(self.ca_file, ca_cert.public_bytes(serialization.Encoding.PEM))
        _write_pem(self.wrong_ca_file, wrong_ca.public_bytes(serialization.Encoding.PEM))
        _write_pem(self.cert_file, cert.public_bytes(serialization.Encoding.PEM))
        _write_pem(self.key_file, _key_pem(key), 0o600)
        self.cert_fingerprint_sha256 = hashlib.sha256(
            cert.public_bytes(serialization.Encoding.DER)
        ).hexdigest()
        self.passwd_dir.mkdir(mode=0o755)

    def _config(self, ports: _Ports) -> str:
        b = self.base_dir
        return f"""\
# Generated by tests/support/dovecot.py: a private instance, nothing from /etc/dovecot.
base_dir = {self.run_dir}
state_dir = {b}/state
instance_name = pvdc-{b.name}
protocols = pop3 imap
listen = {self.host}
log_path = {self.log_file}
info_log_path = {self.log_file}
default_internal_user = dovecot
default_login_user = dovenull
default_vsz_limit = 1G
shutdown_clients = yes

ssl = yes
ssl_cert = <{self.cert_file}
ssl_key = <{self.key_file}
ssl_min_protocol = TLSv1.2

# {{PLAIN}} passwords let the passdb hand out plaintext, which APOP (and CRAM-MD5)
# need; Dovecot 2.3 supports the "apop" mechanism on that condition.
disable_plaintext_auth = no
auth_mechanisms = plain login apop
auth_cache_size = 0
# Tests of refused logins need not wait: no fixed delay after a failure, and no
# per-IP penalty (2 s, 4 s, ... 15 s for every later login from 127.0.0.1): the auth
# process disables the penalty when it cannot connect to the anvil-auth-penalty socket.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
auth_verbose = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_dir}/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.passwd_dir}/%u
}}

first_valid_uid = {self._mail_uid}
last_valid_uid = {self._mail_uid}
first_valid_gid = {self._mail_gid}
last_valid_gid = {self._mail_gid}
mail_location = maildir:~/Maildir
mail_max_userip_connections = 50
namespace inbox {{
  inbox = yes
}}

pop3_uidl_format = %08Xu%08Xv
pop3_no_flag_updates = yes
pop3_logout_format = top=%t/%p, retr=%r/%b, del=%d/%m, size=%s

service pop3-login {{
  inet_listener pop3 {{
    address = {self.host}
    port = {ports.pop3}
  }}
  inet_listener pop3s {{
    address = {self.host}
    port = {ports.pop3s}
    ssl = yes
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {ports.imap}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {ports.imaps}
    ssl = yes
  }}
}}
{self.extra_config}
"""

    def _launch(self) -> None:
        ports = _Ports(*_free_ports(4))
        self.config_file.write_text(self._config(ports))
        stderr_path = self.base_dir / "master.stderr"
        with stderr_path.open("wb") as err:
            self._proc = subprocess.Popen(
                ["dovecot", "-F", "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
            )
        atexit.register(self._terminate)
        self.pop3_port, self.pop3s_port = ports.pop3, ports.pop3s
        self.imap_port, self.imaps_port = ports.imap, ports.imaps
        deadline = time.monotonic() + _START_TIMEOUT
        for port in (ports.pop3, ports.pop3s, ports.imap, ports.imaps):
            self._wait_port(port, deadline)
        self._wait_login(deadline)

    def _diagnostics(self) -> str:
        parts = []
        for path in (self.base_dir / "master.stderr", self.log_file):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").strip()
                if text:
                    parts.append(f"{path.name}:\n" + "\n".join(text.splitlines()[-15:]))
        return "\n".join(parts)

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise DovecotError(
                f"dovecot exited with status {self._proc.returncode}\n{self._diagnostics()}"
            )

    def _wait_port(self, port: int, deadline: float) -> None:
        while True:
            self._check_alive()
            try:
                with socket.create_connection((self.host, port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise DovecotError(
                        f"port {port} did not open in time\n{self._diagnostics()}"
                    ) from None
                time.sleep(0.05)

    def _wait_login(self, deadline: float) -> None:
        """Right after start-up the auth process may not answer yet: retry a login."""
        probe = self.add_user(f"pvprobe{secrets.token_hex(3)}", secrets.token_hex(8))
        while True:
            self._check_alive()
            try:
                pop = poplib.POP3(self.host, self.pop3_port, timeout=5)
                try:
                    pop.user(probe.name)
                    pop.pass_(probe.password)
                finally:
                    pop.quit()
                with imaplib.IMAP4(self.host, self.imap_port, timeout=5) as imap:
                    imap.login(probe.name, probe.password)
                    imap.logout()
                return
            except (OSError, poplib.error_proto, imaplib.IMAP4.error) as exc:
                if time.monotonic() > deadline:
                    raise DovecotError(
                        f"no successful login before the deadline: {exc}\n{self._diagnostics()}"
                    ) from exc
                time.sleep(0.1)

    # ---------------------------------------------------------------------- users

    def _write_passwd(self, name: str, line: str) -> None:
        # One passwd-file per user (the passdb path is ``passwd/%u``): Dovecot re-reads a
        # changed passwd-file at most once a second, so a user appended to one shared file
        # would not be able to log in for up to a second; a new file is read at once.
        tmp = self.passwd_dir / f".{name}.tmp"
        tmp.write_text(line + "\n")
        tmp.chmod(0o644)
        os.replace(tmp, self.passwd_dir / name)

    def add_user(
        self,
        name: str,
        password: str,
        *,
        maildir: Path | None = None,
        uidvalidity: int = DEFAULT_UIDVALIDITY,
    ) -> UserInfo:
        """Create a mail user; usable for logins as soon as this returns.

        Without ``maildir`` the user gets an empty Maildir under ``base_dir/mail`` with a
        pre-written ``dovecot-uidlist`` (fixed ``uidvalidity``). With ``maildir`` the user
        reads that existing Maildir (e.g. one popvault restored): its tree is chowned to
        vmail, its ancestors are made searchable (o+x), and Dovecot's uidlist and indexes
        go to a separate directory under base_dir, pre-written with the Maildir's files in
        name order, so the tree gets no Dovecot files (Dovecot may still move files from
        ``new/`` to ``cur/``).
        """
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._+-]*", name) or name in self._users:
            raise DovecotError(f"invalid or duplicate user name {name!r}")
        if ":" in password or "\n" in password:
            raise DovecotError("a passwd-file password cannot contain ':' or a newline")
        uid, gid = self._mail_uid, self._mail_gid
        home = self.mail_root / name
        home.mkdir(mode=0o700)
        os.chown(home, uid, gid)
        extra = ""
        if maildir is None:
            box = home / "Maildir"
            for sub in ("", "cur", "new", "tmp"):
                (box / sub).mkdir(mode=0o700)
                os.chown(box / sub, uid, gid)
            control = box
            names: list[str] = []
        else:
            box = maildir.resolve()
            for sub in ("cur", "new", "tmp"):
                (box / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            _chown_tree(box, uid, gid)
            _make_searchable(box)
            control = self.base_dir / "control" / name
            control.mkdir(mode=0o700)
            os.chown(control, uid, gid)
            index = control / "index"
            index.mkdir(mode=0o700)
            os.chown(index, uid, gid)
            extra = f"userdb_mail=maildir:{box}:CONTROL={control}:INDEX={index}"
            # With an explicit CONTROL, INBOX's dovecot-uidlist lives in CONTROL/.INBOX.
            control = control / ".INBOX"
            control.mkdir(mode=0o700)
            os.chown(control, uid, gid)
            names = sorted(
                {
                    _basename(f)
                    for sub in ("cur", "new")
                    for f in os.listdir(box / sub)
                    if not f.startswith(".")
                }
            )
        info = UserInfo(name, password, box, control, uidvalidity)
        lines = [f"{i} :{n}" for i, n in enumerate(names, start=1)]
        header = f"3 V{uidvalidity} N{len(names) + 1} G{secrets.token_hex(16)}"
        self._write_uidlist(info, header, lines)
        self._users[name] = info
        self._write_passwd(name, f"{name}:{{PLAIN}}{password}:{uid}:{gid}::{home}::{extra}")
        return info

    def user(self, name: str) -> UserInfo:
        """The `UserInfo` of a user created by `add_user`."""
        return self._users[name]

    def _info(self, user: str | UserInfo) -> UserInfo:
        return self._users[user] if isinstance(user, str) else user

    # ----------------------------------------------------------------------- mail

    def _write_uidlist(self, info: UserInfo, header: str, lines: Sequence[str]) -> None:
        path = info.control_dir / "dovecot-uidlist"
        tmp = info.control_dir / f"dovecot-uidlist.pvdc{os.getpid()}"
        tmp.write_text(header + "\n" + "".join(line + "\n" for line in lines))
        os.chown(tmp, self._mail_uid, self._mail_gid)
        tmp.chmod(0o600)
        os.replace(tmp, path)

    @contextlib.contextmanager
    def _uidlist_lock(self, info: UserInfo) -> Iterator[None]:
        """Dovecot's own dotlock on ``dovecot-uidlist``: no sync runs while we hold it."""
        lock = info.control_dir / "dovecot-uidlist.lock"
        deadline = time.monotonic() + 30
        while True:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
                break
            except FileExistsError:
                if time.monotonic() > deadline:
                    raise DovecotError(f"{lock} held for over 30 s") from None
                time.sleep(0.02)
        try:
            os.close(fd)
            yield
        finally:
            lock.unlink()

    def _read_uidlist(self, info: UserInfo) -> tuple[list[str], list[str], dict[int, str]]:
        text = (info.control_dir / "dovecot-uidlist").read_text()
        header, *lines = text.splitlines()
        fields = header.split()
        if fields[0] != "3":
            raise DovecotError(f"unexpected dovecot-uidlist version in {info.control_dir}")
        by_uid: dict[int, str] = {}
        for line in lines:
            head, _sep, fname = line.partition(":")
            by_uid[int(head.split()[0])] = fname
        return fields, lines, by_uid

    def deliver(
        self,
        user: str | UserInfo,
        messages: Sequence[bytes],
        *,
        flags: str | Sequence[str] | None = None,
    ) -> list[str]:
        """Write ``messages`` as Maildir files, byte for byte, and return their UIDLs.

        Files go to ``tmp/`` then are renamed into ``cur/`` (name ``...:2,FLAGS``) and
        registered in ``dovecot-uidlist`` with the next UIDs, all under Dovecot's uidlist
        dotlock, so earlier UIDLs never change. ``flags`` are Maildir info letters
        ("S" seen, "R" replied, "F" flagged, ...): one string for all messages or one per
        message. Line endings are kept as given; Dovecot serves them as `served_bytes`.
        """
        info = self._info(user)
        if flags is None:
            per_message = [""] * len(messages)
        elif isinstance(flags, str):
            per_message = [flags] * len(messages)
        else:
            per_message = list(flags)
            if len(per_message) != len(messages):
                raise ValueError("one flags string per message, or one for all")
        uidls: list[str] = []
        with self._uidlist_lock(info):
            fields, lines, by_uid = self._read_uidlist(info)
            next_uid = int(next(f[1:] for f in fields[1:] if f.startswith("N")))
            next_uid = max([next_uid, *(u + 1 for u in by_uid)])
            now = int(time.time())
            for msg, fl in zip(messages, per_message, strict=True):
                self._deliver_counter += 1
                base = f"{now}.M{self._deliver_counter}P{os.getpid()}.pvdc"
                tmp = info.maildir / "tmp" / base
                with tmp.open("wb") as fh:
                    fh.write(msg)
                os.chown(tmp, self._mail_uid, self._mail_gid)
                tmp.chmod(0o600)
                os.replace(tmp, info.maildir / "cur" / f"{base}:2,{''.join(sorted(fl))}")
                lines.append(f"{next_uid} :{base}")
                uidls.append(info.uidl(next_uid))
                next_uid += 1
            header = " ".join(f if not f.startswith("N") else f"N{next_uid}" for f in fields)
            self._write_uidlist(info, header, lines)
        return uidls

    def reuse_uid(self, user: str | UserInfo, uid: int, message: bytes) -> str:
        """Remove the message with ``uid`` out of band and deliver ``message`` under the
        same UID, so that POP3 lists it with the old UIDL (RFC 1939 lets a server reuse a
        unique-id once its message is gone; Dovecot itself never does). Returns the UIDL.

        The file is replaced and its ``dovecot-uidlist`` line rewritten under Dovecot's
        dotlock, and Dovecot's index files are removed (an index that remembers ``uid``
        as expunged would give the new file a new UID), so Dovecot rebuilds them from the
        uidlist. No session of the user may be open meanwhile.
        """
        info = self._info(user)
        with self._uidlist_lock(info):
            fields, lines, by_uid = self._read_uidlist(info)
            if uid not in by_uid:
                raise DovecotError(f"no UID {uid} in {info.control_dir}/dovecot-uidlist")
            for sub in ("cur", "new"):
                for f in os.listdir(info.maildir / sub):
                    if _basename(f) == by_uid[uid]:
                        (info.maildir / sub / f).unlink()
            self._deliver_counter += 1
            base = f"{int(time.time())}.M{self._deliver_counter}P{os.getpid()}.pvdc"
            tmp = info.maildir / "tmp" / base
            tmp.write_bytes(message)
            os.chown(tmp, self._mail_uid, self._mail_gid)
            tmp.chmod(0o600)
            os.replace(tmp, info.maildir / "cur" / f"{base}:2,")
            lines = [f"{uid} :{base}" if int(ln.split()[0]) == uid else ln for ln in lines]
            self._write_uidlist(info, " ".join(fields), lines)
            index_dirs = {info.maildir, info.control_dir, info.control_dir.parent / "index"}
            for d in index_dirs:
                if d.is_dir():
                    for index_file in d.rglob("dovecot.index*"):
                        index_file.unlink()
        return info.uidl(uid)

    def _files_by_uid(self, info: UserInfo) -> list[Path]:
        files: dict[str, Path] = {}
        for sub in ("cur", "new"):
            for f in os.listdir(info.maildir / sub):
                if not f.startswith("."):
                    files[_basename(f)] = info.maildir / sub / f
        _fields, _lines, by_uid = self._read_uidlist(info)
        ordered = [files.pop(by_uid[u]) for u in sorted(by_uid) if by_uid[u] in files]
        return ordered + [files[k] for k in sorted(files)]

    def maildir_messages(self, user: str | UserInfo) -> list[bytes]:
        """The user's INBOX files' exact bytes, in UID order (then unknown files by name).

        Messages stored by Dovecot itself (IMAP APPEND) are on disk with LF line endings
        (``mail_save_crlf = no``); compare them with `served_bytes` on both sides.
        """
        return [p.read_bytes() for p in self._files_by_uid(self._info(user))]

    def message_count(self, user: str | UserInfo) -> int:
        """How many messages the user's INBOX holds on disk now."""
        info = self._info(user)
        return sum(
            1
            for sub in ("cur", "new")
            for f in os.listdir(info.maildir / sub)
            if not f.startswith(".")
        )

    # ------------------------------------------------------------------------ log

    def retr_counts(
        self, user: str | UserInfo, *, min_sessions: int = 0, timeout: float = 5.0
    ) -> list[Pop3SessionStats]:
        """Per-session POP3 counts of ``user`` from the log, oldest first.

        The log is written asynchronously after a session ends: pass ``min_sessions`` to
        wait (up to ``timeout`` seconds) until that many sessions are logged.
        """
        name = self._info(user).name
        pattern = re.compile(
            rf"pop3\({re.escape(name)}\)<[^>]*><[^>]*>: .*?"
            r"top=(\d+)/(\d+), retr=(\d+)/(\d+), del=(\d+)/(\d+), size=(\d+)"
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = self.log_file.read_text(errors="replace")
            except FileNotFoundError:
                text = ""
            stats = [
                Pop3SessionStats(*(int(g) for g in m.groups())) for m in pattern.finditer(text)
            ]
            if len(stats) >= min_sessions or time.monotonic() > deadline:
                return stats
            time.sleep(0.02)

    def log_text(self) -> str:
        """The whole Dovecot log so far (for assertions and failure messages)."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _basename(maildir_filename: str) -> str:
    return maildir_filename.split(":", 1)[0]
