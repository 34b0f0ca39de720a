"""Ctrl-C and SIGTERM at any instant: a clean stop, never lost or half-stored mail.

Real ``popvault backup`` runs (POP3S from the private Dovecot, with the helper process:
the mailbox has more than PREPARE_MIN messages) and real ``popvault import`` runs (an
mbox) get SIGINT or SIGTERM:

- after a sweep of delays spread over the length of an uninterrupted run, and
- at each named durable step (write, fsync, rename, directory fsync) of each kind of
  object a run puts (packs, index segments, commit records), by a fault hook of the
  local backend that signals the process from inside that step.

After every signal the run must exit 130 (SIGINT) or 143 (SIGTERM) within
``EXIT_BOUND`` seconds with one ``popvault: error: interrupted`` line and no traceback;
the lock must be released; no helper process may be left; the vault, opened on a fresh
cache, must pass ``check --read-data`` with no message recorded without its data; and the
next uninterrupted run must complete the vault: every message on the server (or in the
mbox) in it exactly once, byte for byte. A run that finished before its signal counts as
a trial too (exit 0, same checks), but most trials must be real interrupts.

``POPVAULT_INTERRUPT_TRIALS`` scales the delay sweeps (default 72: with the 28 step
trials, 100 interrupted runs); ``POPVAULT_INTERRUPT_SEED`` replays one sweep's jitter.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from popvault.app.backup import backup_account
from popvault.app.config import AccountConfig
from popvault.demo.server import Faults, ScriptedPop3Server
from popvault.mailboxes.mbox import MboxWriter
from popvault.vault.vault import Vault
from popvault.vault.writer import Writer
from tests.support.backup_helpers import (
    PASSPHRASE,
    REPO,
    cli_env,
    create_vault,
    small_messages,
    write_config,
)
from tests.support.dovecot import Dovecot, UserInfo, served_bytes
from tests.support.generate import realistic

#: Seconds from the signal to the process's exit.
EXIT_BOUND = 10.0
TRIALS = int(os.environ.get("POPVAULT_INTERRUPT_TRIALS") or 72)
SEED = int(os.environ.get("POPVAULT_INTERRUPT_SEED") or random.randrange(1 << 30))
#: The named steps of a durable put (LocalBackend's fault hook) and the objects a run puts.
STEPS = ("write", "fsync", "rename", "fsync-dir")
OBJECTS = ("packs/", "index/", "commits/", "claims/")


def _messages() -> list[bytes]:
    """Mostly small messages, some with attachments: ~1,500 (the helper starts at 200)."""
    small = [data for _, data in small_messages(1300, seed=11)]
    rich = list(realistic(200, seed=12, avg_size=24 * 1024))
    return [m for pair in zip(small, rich, strict=False) for m in pair] + small[len(rich) :]


MESSAGES = _messages()


@dataclass
class Trial:
    what: str
    code: int
    seconds_to_exit: float
    stderr: str


@dataclass
class Setup:
    """A command to interrupt, and how to check the vault it writes."""

    root: Path
    template: Path  # an empty vault, copied for every trial
    args: list[str]
    env: dict[str, str]
    expected: dict[bytes, int]  # exact bytes -> how many times they must be archived
    account: str

    def fresh(self, name: str) -> tuple[Path, Path]:
        vault = self.root / name / "vault"
        shutil.copytree(self.template, vault)
        return vault, self.root / name / "cache"


@pytest.fixture(scope="module")
def backup_setup(dovecot: Dovecot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    import secrets

    root = tmp_path_factory.mktemp("interrupts-backup")
    user: UserInfo = dovecot.add_user(f"intr{secrets.token_hex(3)}", secrets.token_urlsafe(12))
    dovecot.deliver(user, MESSAGES)
    template = root / "template"
    create_vault(template, root / "template-cache")
    config = write_config(
        root / "config.toml",
        {
            "dc": {
                "host": dovecot.host,
                "port": dovecot.pop3s_port,
                "user": user.name,
                "tls": "implicit",
                "tls_ca_file": str(dovecot.ca_file),
                "password_env": "INTR_POP3_PASSWORD",
                "timeout": 20,
            }
        },
    )
    expected: dict[bytes, int] = {}
    for m in MESSAGES:
        expected[served_bytes(m)] = expected.get(served_bytes(m), 0) + 1
    yield Setup(
        root,
        template,
        ["--config", str(config), "backup"],
        {"INTR_POP3_PASSWORD": user.password},
        expected,
        "dc",
    )


@pytest.fixture(scope="module")
def import_setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("interrupts-import")
    mbox = root / "archive.mbox"
    messages = MESSAGES * 2  # a longer run: import is faster than a backup
    with MboxWriter(mbox) as w:
        for m in messages:
            w.add(m)
    template = root / "template"
    create_vault(template, root / "template-cache")
    # what the mbox gives back (its reader undoes the writer's quoting and line ends
    # exactly as an uninterrupted import does): measured once, then required each time
    probe_vault, probe_cache = root / "probe", root / "probe-cache"
    shutil.copytree(template, probe_vault)
    done = _run(probe_vault, probe_cache, ["import", "--account", "mbox", str(mbox)], {})
    assert done.returncode == 0, done.stderr
    with _open(probe_vault, root / "probe-cache-2") as v:
        expected = {v.read_message(row.id): len(row.sources) for row in v.messages()}
    assert sum(expected.values()) == len(messages)
    return Setup(root, template, ["import", "--account", "mbox", str(mbox)], {}, expected, "mbox")


def _command(vault: Path, args: Sequence[str], hook: str | None) -> list[str]:
    if hook is None:
        return [sys.executable, "-m", "popvault", "--vault", str(vault), *args]
    return [sys.executable, "-c", hook, "--vault", str(vault), *args]


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """A popvault process to signal: stderr captured, stdin and stdout closed."""
    return subprocess.Popen(
        argv,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(
    vault: Path, cache: Path, args: Sequence[str], extra: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(vault, args, None),
        env=cli_env(cache, **extra),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def _open(vault: Path, cache: Path) -> Vault:
    return Vault.open(vault, PASSPHRASE.encode(), cache_dir=cache)


def _left_behind(marker: str) -> list[int]:
    """Processes still running with ``marker`` in their environment (a helper left)."""
    found: list[int] = []
    needle = f"POPVAULT_TRIAL={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def _hook_script(signum: int, step: str, prefix: str) -> str:
    """A ``python -c`` program: popvault's CLI, signalling itself inside the first
    ``step`` of a put of an object under ``prefix`` (LocalBackend's fault hook)."""
    return textwrap.dedent(
        f"""
        import os
        from popvault.vault.backend import LocalBackend
        from popvault.__main__ import run
        fired = []
        def hook(self, step, name):
            if not fired and step == {step!r} and name.startswith({prefix!r}):
                fired.append(name)
                os.kill(os.getpid(), {signum})
        LocalBackend._hook = hook
        run()
        """
    )


def _trial(
    setup: Setup, name: str, signum: int, *, delay: float | None = None, hook: str | None = None
) -> Trial:
    """One interrupted run and every check that follows it."""
    vault, cache = setup.fresh(name)
    # every trial is a copy of one template vault: each is its own machine (its anchor,
    # format §8.6, beside its cache, as cli_env puts the child's)
    os.environ["POPVAULT_STATE_DIR"] = f"{cache}.state"
    marker = uuid.uuid4().hex
    env = cli_env(cache, POPVAULT_TRIAL=marker, **setup.env)
    proc = _start(_command(vault, setup.args, hook), env)
    try:
        if delay is not None:
            _wait_holding(proc)
            time.sleep(delay)
            sent = time.monotonic()
            proc.send_signal(signum)
        else:
            sent = time.monotonic()
        try:
            _out, err = proc.communicate(timeout=60 if delay is None else EXIT_BOUND * 3)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
            pytest.fail(f"{name}: no exit {EXIT_BOUND * 3:.0f} s after the signal: {err}")
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    trial = Trial(name, proc.returncode, took, err)
    assert "Traceback" not in err, f"{name}: {err}"
    if trial.code != 0:
        assert trial.code == 128 + signum, f"{name}: exit {trial.code}: {err}"
        assert "popvault: error: interrupted" in err, f"{name}: {err}"
        assert took < EXIT_BOUND, f"{name}: exit took {took:.1f} s"
    deadline = time.monotonic() + 5
    while _left_behind(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _left_behind(marker) == [], f"{name}: a process of the run is still there"
    assert not (vault / "lock").exists(), f"{name}: the lock was left behind"
    # the vault as a new machine sees it: checks clean, nothing recorded without data
    with _open(vault, cache.parent / "fresh-cache") as v:
        report = v.check(read_data=True)
        assert report.ok, f"{name}: {report.problems}"
        assert v.cache.incomplete() == set(), name
        before = {v.read_message(row.id) for row in v.messages()}
    assert before <= set(setup.expected), f"{name}: the vault holds bytes nobody sent"
    # the next run completes it: everything, once, byte for byte
    done = _run(vault, cache, setup.args, setup.env)
    assert done.returncode == 0, f"{name}: next run: {done.stderr}"
    with _open(vault, cache) as v:
        arrivals = {
            v.read_message(row.id): len(row.sources if setup.account == "mbox" else row.uidls)
            for row in v.messages()
        }
        assert v.check().ok, name
    assert arrivals == setup.expected, f"{name}: vault incomplete after the next run"
    return trial


def _holding(pid: int) -> bool:
    """Whether the process catches SIGTERM yet (Python does not by default; popvault
    does from the first line of its entry point on): /proc/PID/status, SigCgt."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # gone: nothing to wait for
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def _wait_holding(proc: subprocess.Popen[str]) -> None:
    """The sweeps' delays count from the moment popvault holds signals (the first line
    of its entry point, popvault.__main__): before, the Python interpreter itself is
    starting, and a signal then gets Python's default handling (no vault is open yet)."""
    deadline = time.monotonic() + 30
    while not _holding(proc.pid) and proc.poll() is None:
        assert time.monotonic() < deadline, "popvault never installed its signal handlers"
        time.sleep(0.002)


def _full_run_seconds(setup: Setup, label: str) -> float:
    """How long a run takes from the moment it holds signals to its exit."""
    vault, cache = setup.fresh(f"baseline-{label}")
    proc = _start(_command(vault, setup.args, None), cli_env(cache, **setup.env))
    _wait_holding(proc)
    t0 = time.monotonic()
    _out, err = proc.communicate(timeout=300)
    took = time.monotonic() - t0
    assert proc.returncode == 0, err
    return took


def _sweep(setup: Setup, label: str, signum: int, count: int) -> list[Trial]:
    """``count`` trials with delays spread evenly over an uninterrupted run's length.

    The length is the faster of two uninterrupted runs, and shrinks to any run that ends
    before its signal (a loaded machine makes the first measure long), so the delays keep
    landing inside the run."""
    full = min(_full_run_seconds(setup, f"{label}-a"), _full_run_seconds(setup, f"{label}-b"))
    rng = random.Random(f"{SEED}-{label}")
    trials = []
    for i in range(count):
        delay = full * (i + rng.random()) / count
        trial = _trial(setup, f"{label}-{i}", signum, delay=delay)
        trials.append(trial)
        if trial.code == 0:  # finished before the signal: it took at most this long
            full = max(0.05, min(full, delay))
    interrupted = sum(1 for t in trials if t.code != 0)
    print(
        f"{label}: full run {full:.2f} s; {interrupted}/{count} interrupted; slowest exit"
        f" {max(t.seconds_to_exit for t in trials):.2f} s (seed {SEED})"
    )
    assert interrupted >= count // 2, f"{label}: most runs finished before the signal"
    return trials


#: How the sweep trials are shared out (with the 24 step trials and the 4 lock trials,
#: the default 72 make 100 interrupted runs).
SHARES = {"backup-SIGINT": 30, "backup-SIGTERM": 14, "import-SIGINT": 14, "import-SIGTERM": 14}


def _count(label: str) -> int:
    return max(4, round(SHARES[label] * TRIALS / sum(SHARES.values())))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_backup_interrupted_at_a_sweep_of_moments(
    backup_setup: Setup, signum: signal.Signals
) -> None:
    label = f"backup-{signum.name}"
    _sweep(backup_setup, label, signum, _count(label))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_import_interrupted_at_a_sweep_of_moments(
    import_setup: Setup, signum: signal.Signals
) -> None:
    label = f"import-{signum.name}"
    _sweep(import_setup, label, signum, _count(label))


@pytest.mark.parametrize("prefix", OBJECTS)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(
    ("command", "signum"),
    [("backup", signal.SIGINT), ("import", signal.SIGTERM)],
    ids=["backup-SIGINT", "import-SIGTERM"],
)
def test_signal_at_each_step_of_a_put(
    request: pytest.FixtureRequest, command: str, signum: signal.Signals, step: str, prefix: str
) -> None:
    setup: Setup = request.getfixturevalue(f"{command}_setup")
    name = f"{command}-step-{step}-{prefix.rstrip('/')}"
    trial = _trial(setup, name, signum, hook=_hook_script(signum, step, prefix))
    assert trial.code == 128 + signum, f"{name}: the run was not interrupted: {trial.stderr}"


@pytest.mark.parametrize("step", STEPS)
def test_a_lock_is_never_left_by_a_signal_while_it_is_taken(backup_setup: Setup, step: str) -> None:
    """The lock object's own put (write, fsync, link, directory fsync), signalled from
    inside: the run stops, and the lock is gone either way."""
    name = f"backup-lock-{step}"
    trial = _trial(
        backup_setup, name, signal.SIGINT, hook=_hook_script(signal.SIGINT, step, "lock")
    )
    assert trial.code == 130, trial.stderr


def test_a_vault_damaged_by_the_old_bug_is_found_by_check_and_healed_by_backup(
    backup_setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before this fix, Ctrl-C could commit messages without their blobs; `check` found
    them (exit 20) but the next backup counted their UIDLs as seen and never fetched
    them again. A vault damaged exactly so (pending frame groups dropped before a commit
    that still names their blobs) is now reported by `check` and completed by `backup`."""
    vault, cache = backup_setup.fresh("damaged")
    config = backup_setup.args[1]
    table = tomllib.loads(Path(config).read_text())["accounts"]["dc"]
    acct = AccountConfig(
        name="dc",
        **{k: v for k, v in table.items() if k != "password_env"},
    )
    real_commit = Vault.commit
    torn: list[int] = []

    def tearing_commit(self: Vault) -> str | None:
        groups = self._writer.groups
        if not torn and groups:
            torn.append(sum(len(g.blobs) for g in groups.values()))
            groups.clear()  # what a KeyboardInterrupt in _flush_group did
        return real_commit(self)

    with monkeypatch.context() as m:
        m.setattr(Writer, "assert_complete", lambda *_a: None)
        m.setattr(Vault, "commit", tearing_commit)
        with Vault.open(vault, PASSPHRASE.encode(), write=True, cache_dir=cache) as v:
            rep = backup_account(v, acct, backup_setup.env["INTR_POP3_PASSWORD"])
    assert torn and torn[0] > 0 and rep.fetched == len(MESSAGES)

    env = cli_env(cache, **backup_setup.env)
    check = subprocess.run(
        _command(vault, ["check"], None), env=env, capture_output=True, text=True, check=False
    )
    assert check.returncode == 20, check.stderr
    assert "without all of their data" in check.stderr
    with _open(vault, cache) as v:
        damaged = v.cache.incomplete()
    assert damaged

    done = _run(vault, cache, backup_setup.args, backup_setup.env)
    assert done.returncode == 0, done.stderr
    check = subprocess.run(
        _command(vault, ["check", "--read-data"], None),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    with _open(vault, cache.parent / "fresh-cache") as v:
        assert v.cache.incomplete() == set()
        held = {v.read_message(row.id, use_cache=False) for row in v.messages()}
        assert len(v.known_uidls("dc")) == len(MESSAGES)
    assert held == set(backup_setup.expected)


def _maildir_files(path: Path) -> list[Path]:
    return [f for sub in ("new", "cur") if (path / sub).is_dir() for f in (path / sub).iterdir()]


@pytest.mark.parametrize("command", ["restore", "export", "list", "check"])
def test_long_commands_stop_with_130_on_ctrl_c(
    import_setup: Setup, tmp_path: Path, command: str
) -> None:
    """Readers and restore: SIGINT mid-run exits 130 with one error line, leaves no lock,
    and (restore) the next run completes the target with every message exactly once."""
    vault = tmp_path / "vault"
    shutil.copytree(import_setup.root / "probe", vault)
    cache = tmp_path / "cache"
    target = tmp_path / "target"
    args = {
        "restore": ["restore", "--to", f"maildir:{target}"],
        "export": ["export", str(target), "--format", "mbox"],
        "list": ["list"],
        "check": ["check", "--read-data"],
    }[command]
    started: Callable[[], bool] = {
        "restore": lambda: len(_maildir_files(target)) > 10,
        "export": lambda: target.exists() and target.stat().st_size > 0,
        "list": lambda: True,
        "check": lambda: True,
    }[command]
    proc = subprocess.Popen(
        _command(vault, args, None),
        env=cli_env(cache),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        if command == "list":
            assert proc.stdout.readline()  # it is writing
        deadline = time.monotonic() + 60
        while not started() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        if command == "check":
            time.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _out, err_bytes = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    err = err_bytes.decode()
    assert "Traceback" not in err
    if command != "check":  # check may have finished: it only has to stop cleanly
        assert proc.returncode == 130, (proc.returncode, err)
    if proc.returncode == 130:
        assert took < EXIT_BOUND
        assert "popvault: error: interrupted (SIGINT)" in err
    assert not (vault / "lock").exists()
    if command == "restore":
        done = _run(vault, cache, args, {})
        assert done.returncode == 0, done.stderr
        with _open(vault, tmp_path / "fresh") as v:
            held = sorted(v.read_message(row.id) for row in v.messages())
        restored = sorted(f.read_bytes() for f in _maildir_files(target))
        assert restored == held  # every message once, unchanged (file = message)


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_does_not_wait_for_a_silent_server(
    backup_setup: Setup, tmp_path: Path, jobs: int
) -> None:
    """A server that never answers RETR (a fault Dovecot cannot produce: our scripted
    server) holds a read for up to its 60 s timeout. Ctrl-C must not wait for it, also
    when it is read by another thread (``--jobs``), while a second account backs up from
    Dovecot: exit 130 within the bound, what Dovecot gave is committed and checks clean."""
    messages = small_messages(20, seed=5)
    faults = Faults(hang_on="RETR")
    with ScriptedPop3Server(messages, user="silent", password="pw", faults=faults) as server:
        table = tomllib.loads(Path(backup_setup.args[1]).read_text())["accounts"]
        table["silent"] = {
            "host": "127.0.0.1",
            "port": server.port,
            "user": "silent",
            "tls": "none",
            "password_env": "INTR_SILENT_PASSWORD",
            "timeout": 60,
        }
        config = write_config(tmp_path / "config.toml", table)
        vault, cache = backup_setup.fresh(f"silent-{jobs}")
        argv = ["--config", str(config), "backup", "--jobs", str(jobs)]
        if jobs == 1:
            argv += ["silent"]
        env = cli_env(cache, INTR_SILENT_PASSWORD="pw", **backup_setup.env)
        proc = _start(_command(vault, argv, None), env)
        try:
            deadline = time.monotonic() + 30
            while not any(c.startswith("RETR") for c in server.commands):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.01)
            time.sleep(1.0 if jobs > 1 else 0.1)  # Dovecot's account gets going
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=EXIT_BOUND * 3)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err
    assert took < EXIT_BOUND, f"exit took {took:.1f} s"
    assert "Traceback" not in err
    assert not (vault / "lock").exists()
    with _open(vault, cache.parent / "fresh-cache") as v:
        assert v.check(read_data=True).ok
        assert set(v.known_uidls("silent")) == set()
        if jobs > 1:
            assert v.known_uidls("dc")  # the other account's work was committed
