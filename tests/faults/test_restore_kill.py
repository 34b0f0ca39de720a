"""kill -9 of ``popvault restore --to imaps://...`` at random moments, then resume.

Guarantee: "a restore killed at any moment finishes, when run again, with each message in
the target exactly once" (popvault.app.restore), and the vault stays sound (the next
writer breaks the dead process's lock and removes its leftovers). The kills land at
random times (vault opening, lock, header scan) and, mostly, right after a random number
of APPENDs reached the server, the window between an APPEND and the commit of its
``rst`` record, where only the header/size scan of the target prevents duplicates.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from popvault.app.metadata import parse_metadata
from popvault.vault.vault import Vault
from tests.support.backup_helpers import cli_command, run_cli
from tests.support.dovecot import Dovecot, UserInfo
from tests.support.generate import adversarial, realistic
from tests.support.restore_helpers import (
    PASSPHRASE,
    Seed,
    cli_env,
    dovecot_imap_view,
    fetch_folder,
    imaps_url,
    json_report,
    make_vault,
    multiset,
)

KILLS = 8
SEED = 0x6B696C6C  # "kill"


def seeds() -> list[Seed]:
    """About 300 messages: realistic mail and every adversarial case Dovecot can store,
    the adversarial ones spread through the restore order (by their file time)."""
    real = list(realistic(280, seed=77, avg_size=6 * 1024))
    times = sorted(t for t in (parse_metadata(m).received for m in real) if t is not None)
    assert len(times) > 100
    adv = [data for name, data in adversarial() if name != "empty"]
    step = len(times) // (len(adv) + 1)
    out = [Seed(m, flags="S" if i % 4 else None) for i, m in enumerate(real)]
    out += [
        Seed(data, flags="S" if i % 2 else "", file_time=times[(i + 1) * step] + 0.5)
        for i, data in enumerate(adv)
    ]
    return out


def wait_then_kill(
    proc: subprocess.Popen[bytes],
    dc: Dovecot,
    user: UserInfo,
    *,
    delay: float | None = None,
    count: int | None = None,
) -> bool:
    """Kill ``proc`` after ``delay`` seconds or once INBOX holds ``count`` messages;
    return whether it was killed (False: it ended by itself first)."""
    deadline = time.monotonic() + 120
    start = time.monotonic()
    while proc.poll() is None:
        if delay is not None and time.monotonic() - start >= delay:
            break
        if count is not None and dc.message_count(user) >= count:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("restore neither finished nor reached the kill point in 120 s")
        time.sleep(0.002)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    return proc.returncode == -signal.SIGKILL


def test_restore_killed_eight_times_resumes_to_exactly_once(
    dovecot: Dovecot, dovecot_user: UserInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(SEED)
    cache = tmp_path / "cache"
    cache.mkdir()
    vault = tmp_path / "vault"
    monkeypatch.setenv("POPVAULT_CACHE_DIR", str(cache))
    stored = make_vault(vault, seeds())
    total = len(stored)
    env = cli_env(cache, imap_password=dovecot_user.password)
    target = imaps_url(dovecot, dovecot_user, "INBOX")
    args = cli_command(
        vault, "-q", "restore", "--to", target, "--tls-ca-file", str(dovecot.ca_file)
    )

    # Five kills right after a random number of further APPENDs reached the server, three
    # at a random time after start (start-up, stale lock, folder scan, APPENDs, commit).
    plan = ["count"] * 5 + ["time"] * 3
    rng.shuffle(plan)
    killed = 0
    for n, kind in enumerate(plan):
        proc = subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        if kind == "time":
            was_killed = wait_then_kill(proc, dovecot, dovecot_user, delay=rng.uniform(0.05, 0.8))
        else:
            have = dovecot.message_count(dovecot_user)
            left = plan[n:].count("count")
            step = max(1, (total - have) // (left + 1))
            want = have + rng.randint(1, step)
            was_killed = wait_then_kill(proc, dovecot, dovecot_user, count=want)
        _out, err = proc.communicate()
        if was_killed:
            killed += 1
        else:
            assert proc.returncode == 0, err.decode(errors="replace")
    assert killed >= 5, f"only {killed} of {KILLS} runs were killed"

    final = run_cli(
        vault,
        ["restore", "--to", target, "--tls-ca-file", str(dovecot.ca_file), "--json"],
        env,
        timeout=300,
    )
    assert final.returncode == 0, final.stderr
    assert json_report(final)["failed"] == []

    fetched = fetch_folder(dovecot, dovecot_user, "INBOX")
    expected = multiset(dovecot_imap_view(s.data) for s in stored)
    got = multiset(f.data for f in fetched)
    extra = got - expected
    missing = expected - got
    assert (len(extra), len(missing)) == (0, 0), (
        [m[:80] for m in extra],
        [m[:80] for m in missing],
    )
    assert len(fetched) == total

    again = run_cli(
        vault,
        ["restore", "--to", target, "--tls-ca-file", str(dovecot.ca_file), "--json"],
        env,
    )
    assert again.returncode == 0, again.stderr
    rep = json_report(again)
    assert (rep["restored"], rep["already"]) == (0, total)
    assert dovecot.message_count(dovecot_user) == total

    with Vault.open(vault, PASSPHRASE.encode()) as v:
        report = v.check(read_data=True)
        assert report.ok, report.problems
        assert report.messages == total
