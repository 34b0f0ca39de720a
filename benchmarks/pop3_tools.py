"""POP3 clients driven by the benchmarks: popvault, mpop, getmail6, fetchmail, poplib.

Each tool keeps its own state (seen UIDLs, delivered mail) in a directory of its own on
the work file system, so a second `fetch` is that tool's no-op incremental run. Every
tool connects with implicit TLS (POP3S) to the private Dovecot and verifies the
server certificate against the fixture's CA, passed with the tool's own option. None
of them deletes anything from the server.
"""

from __future__ import annotations

import os
import poplib
import pwd
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from benchmarks.common import (
    MAIL_PASSWORD,
    Bench,
    BenchError,
    ChildRun,
    ensure_tool,
    popvault_argv,
    python_argv,
    run_child,
    tree_size,
)

#: The unprivileged user getmail6 runs as (the private Dovecot creates it).
RUN_AS = "vmail"


class Server:
    """A private Dovecot (tests/support/dovecot.py) for the benchmarks."""

    def __init__(self) -> None:
        from tests.support.dovecot import Dovecot, DovecotError

        ensure_tool("doveadm", "dovecot-core")
        ensure_tool("/usr/lib/dovecot/pop3", "dovecot-pop3d")
        ensure_tool("/usr/lib/dovecot/imap", "dovecot-imapd")
        try:
            self.dc = Dovecot.start()
        except DovecotError as exc:
            raise BenchError(f"cannot start the private Dovecot: {exc}") from exc
        self.host = self.dc.host
        self.ca_file = str(self.dc.ca_file)

    @classmethod
    def start(cls) -> Server:
        return cls()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dc.stop()

    def warm(self, user: str) -> int:
        """Log in once and list: Dovecot builds its index and reads every file."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        pop = poplib.POP3_SSL(self.host, self.dc.pop3s_port, context=ctx, timeout=600)
        try:
            pop.user(user)
            pop.pass_(MAIL_PASSWORD)
            _resp, listing, _octets = pop.list()
            pop.uidl()
        finally:
            pop.quit()
        return len(listing)


def _private_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


def _maildir(path: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Tool:
    """One configured POP3 client: ``fetch`` runs it once as a child process."""

    name: str
    argv: list[str]
    env: dict[str, str] | None
    store: Path
    ok_codes: tuple[int, ...] = (0,)
    #: run as this system user (getmail6 refuses to deliver as root)
    user: str | None = None
    #: seconds before a run counts as hung and is killed
    timeout: float = 1800.0

    def fetch(self) -> ChildRun:
        run = run_child(self.argv, env=self.env, check=False, user=self.user, timeout=self.timeout)
        if run.returncode not in self.ok_codes:
            raise BenchError(f"{self.name} exited {run.returncode}: {run.stderr.strip()[-1500:]}")
        return run

    def stored_bytes(self) -> int:
        return tree_size(self.store)


def popvault_tool(bench: Bench, srv: Server, user: str, vault: Path) -> Tool:
    url = f"pop3s://{user}@{srv.host}:{srv.dc.pop3s_port}"
    return Tool(
        "popvault",
        popvault_argv(vault, "backup", "--url", url, "--tls-ca-file", srv.ca_file),
        bench.env(POPVAULT_POP3_PASSWORD=MAIL_PASSWORD),
        vault,
    )


def popvault_backup(bench: Bench, srv: Server, user: str, vault: Path) -> ChildRun:
    return popvault_tool(bench, srv, user, vault).fetch()


def mpop_tool(bench: Bench, srv: Server, user: str, base: Path) -> Tool:
    mpop = ensure_tool("mpop", "mpop")
    base.mkdir(parents=True, exist_ok=True)
    box = _maildir(base / "Maildir")
    conf = _private_file(
        base / "mpoprc",
        f"""defaults
tls on
tls_starttls off
tls_trust_file {srv.ca_file}
pipelining on
keep on
only_new on
received_header off
auth user

account bench
host {srv.host}
port {srv.dc.pop3s_port}
user {user}
password {MAIL_PASSWORD}
delivery maildir {box}
uidls_file {base / "uidls"}
""",
    )
    return Tool("mpop", [mpop, "-C", str(conf), "--quiet", "bench"], None, box)


def mpop_fetch(bench: Bench, srv: Server, user: str, base: Path) -> MpopRun:
    tool = mpop_tool(bench, srv, user, base)
    return MpopRun(tool, tool.fetch())


@dataclass
class MpopRun:
    tool: Tool
    run: ChildRun


def getmail_tool(bench: Bench, srv: Server, user: str, base: Path) -> Tool:
    getmail = ensure_tool("getmail", "getmail6")
    base.mkdir(parents=True, exist_ok=True)
    box = _maildir(base / "Maildir")
    state = base / "state"
    state.mkdir(exist_ok=True)
    rc = _private_file(
        base / "getmailrc",
        f"""[retriever]
type = SimplePOP3SSLRetriever
server = {srv.host}
port = {srv.dc.pop3s_port}
username = {user}
password = {MAIL_PASSWORD}
ca_certs = {srv.ca_file}

[destination]
type = Maildir
path = {box}/

[options]
verbose = 0
read_all = false
delete = false
delivered_to = false
received = false
message_log_syslog = false
""",
    )
    # getmail6 refuses to deliver as root: run it as the unprivileged mail user
    owner = pwd.getpwnam(RUN_AS)
    for root, dirs, files in os.walk(base):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), owner.pw_uid, owner.pw_gid)
    os.chown(base, owner.pw_uid, owner.pw_gid)
    env = dict(os.environ, HOME=str(state))
    return Tool(
        "getmail6",
        [getmail, "--getmaildir", str(state), "--rcfile", str(rc), "--quiet"],
        env,
        box,
        user=RUN_AS if os.geteuid() == 0 else None,
    )


def fetchmail_tool(bench: Bench, srv: Server, user: str, base: Path) -> Tool:
    fetchmail = ensure_tool("fetchmail", "fetchmail")
    base.mkdir(parents=True, exist_ok=True)
    box = _maildir(base / "Maildir")
    home = base / "home"
    home.mkdir(exist_ok=True)
    home.chmod(0o700)
    # fetchmail does not match IP addresses in subjectAltName: it checks the certificate
    # against sslcommonname "localhost" (a DNS name in it) and connects to 127.0.0.1.
    # fetchmail needs an MDA (or an MTA) to deliver: the smallest Maildir delivery,
    # tmp/ then new/, one sh + cat + mv per message, as users' procmail/maildrop would.
    mda = base / "mda.sh"
    mda.write_text(
        "#!/bin/sh\n"
        f'f="$$.$(date +%s)"\ncat > "{box}/tmp/$f" && exec mv "{box}/tmp/$f" "{box}/new/$f"\n'
    )
    mda.chmod(0o755)
    rc = _private_file(
        base / "fetchmailrc",
        f"""set no syslog
set no bouncemail
poll localhost via {srv.host} service {srv.dc.pop3s_port} protocol pop3 uidl
  user "{user}" there password "{MAIL_PASSWORD}"
  keep ssl sslcertck sslcertfile "{srv.ca_file}" sslcommonname "localhost" sslproto "TLS1.2+"
  no rewrite
  mda "{mda}"
""",
    )
    env = dict(os.environ, FETCHMAILHOME=str(home), HOME=str(home))
    return Tool(
        "fetchmail",
        [fetchmail, "-f", str(rc), "--idfile", str(home / ".fetchids"), "--silent", "--nodetach"],
        env,
        box,
        ok_codes=(0, 1),  # 1: "no mail"
    )


def poplib_tool(bench: Bench, srv: Server, user: str, base: Path) -> Tool:
    base.mkdir(parents=True, exist_ok=True)
    box = _maildir(base / "Maildir")
    return Tool(
        "poplib loop",
        python_argv(
            "-m",
            "benchmarks.poplib_loop",
            "--host",
            srv.host,
            "--port",
            str(srv.dc.pop3s_port),
            "--user",
            user,
            "--ca-file",
            srv.ca_file,
            "--maildir",
            str(box),
            "--seen",
            str(base / "seen"),
        ),
        bench.env(BENCH_POP3_PASSWORD=MAIL_PASSWORD),
        box,
    )
