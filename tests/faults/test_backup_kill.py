"""kill -9 of a real ``popvault backup`` at random moments (guarantee 2).

A subprocess backs up 2,000 small messages from our scripted server (PIPELINING on,
deletions applied only at QUIT) with ``delete = true`` in its config file, and is killed
ten times at random moments: a random point of the run's expected command stream (login,
the pipelined RETRs, the DELEs, QUIT) plus a random delay of up to 0.4 s, so kills also
land in the silent phases (start-up and the vault lock, batch commits, the read-back
before the DELEs, the deletion record after QUIT). After every kill the vault opens with
a fresh cache, ``check --read-data`` passes, every message is on the server or in the
vault (never neither) and none is in the vault twice. A last uninterrupted run finishes
the job: the server is empty and the vault holds every message exactly once. When a run
gets through before its kill, 300 new messages arrive, so the later kills still matter.

The seed is random per run and printed on failure; set POPVAULT_KILL_SEED to replay one.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from popvault.demo.server import Mailbox, ScriptedPop3Server
from tests.support.backup_helpers import (
    assert_nothing_lost,
    assert_vault_sound,
    cli_command,
    cli_env,
    create_vault,
    message_count,
    open_vault,
    small_messages,
    write_config,
)

COUNT = 2000
KILLS = 10
REFILL = 300
PASSWORD = "kill-test-pw"
ACCOUNT = "victim"


def _wait_released(box: Mailbox, seed: int) -> None:
    """The server notices the dead client and unlocks the maildrop (else [IN-USE])."""
    deadline = time.monotonic() + 10
    while box._locked_by is not None:
        assert time.monotonic() < deadline, f"maildrop still locked (seed {seed})"
        time.sleep(0.01)


def test_kill_minus_9_at_random_moments(tmp_path: Path) -> None:
    seed = int(os.environ.get("POPVAULT_KILL_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    messages = small_messages(COUNT, seed=3)
    box = Mailbox(messages)
    cache = tmp_path / "cache"
    vault = tmp_path / "vault"
    create_vault(vault, cache)
    outcomes: list[str] = []
    with ScriptedPop3Server(box, user="victim", password=PASSWORD) as server:
        config = write_config(
            tmp_path / "config.toml",
            {
                ACCOUNT: {
                    "host": "127.0.0.1",
                    "port": server.port,
                    "user": "victim",
                    "tls": "none",
                    "password_env": "KILL_TEST_POP3_PASSWORD",
                    "delete": True,
                    "timeout": 10,
                }
            },
        )
        env = cli_env(cache, KILL_TEST_POP3_PASSWORD=PASSWORD)
        argv = cli_command(vault, "--config", str(config), "-q", "backup")
        known: dict[str, bytes] = {}
        # keep starting runs until KILLS of them were really killed mid-way (a run can
        # finish before its kill lands on a fast machine); bounded in attempts
        for attempt in range(3 * KILLS):
            if sum("rc -9" in o for o in outcomes) >= KILLS:
                break
            if not box.uidls():
                # a run got through: new mail arrives, so the next kills still matter
                extra = [(f"r{attempt}-{u}", d) for u, d in small_messages(REFILL, 1000 + attempt)]
                for uidl, data in extra:
                    box.add(uidl, data)
                messages += extra
            on_server = box.uidls()
            missing = sum(u not in known for u in on_server)
            # login etc., RETR of what is missing, DELE of everything, QUIT
            expected = 6 + missing + len(on_server) + 1
            target = rng.randrange(expected + 1) if attempt else 0
            jitter = rng.uniform(0.0, 0.05)
            base = len(server.commands)
            proc = subprocess.Popen(
                argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            try:
                deadline = time.monotonic() + 60
                while len(server.commands) - base < target and proc.poll() is None:
                    assert time.monotonic() < deadline, f"run stalled (seed {seed})"
                    time.sleep(0.002)
                time.sleep(jitter)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                rc = proc.wait(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                assert proc.stderr is not None
                err = proc.stderr.read().decode(errors="replace")
                proc.stderr.close()
            assert rc in (-signal.SIGKILL, 0), f"exit {rc} (seed {seed}): {err}"
            done = server.commands[base:]
            outcomes.append(
                f"#{attempt}: target {target}/{expected}+{jitter:.2f}s rc {rc},"
                f" {len(done)} commands, last {done[-1] if done else None}"
            )
            _wait_released(box, seed)
            # a fresh cache each time: the vault alone must tell what is archived
            with open_vault(vault, tmp_path / f"check-{attempt}") as v:
                assert_vault_sound(v)
                assert_nothing_lost(messages, box.messages(), v, ACCOUNT)
                known = v.known_uidls(ACCOUNT)
        # the last run, uninterrupted, completes the set
        final = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert final.returncode == 0, f"seed {seed}: {final.stderr}\n" + "\n".join(outcomes)
        assert box.messages() == [], f"seed {seed}: " + "\n".join(outcomes)
    with open_vault(vault, tmp_path / "cache-final") as v:
        assert_vault_sound(v)
        stored = assert_nothing_lost(messages, [], v, ACCOUNT)
        assert len(stored) == message_count(v) == len(messages) >= COUNT
    # most kills must have hit runs that were doing something, not finished ones
    assert sum("rc -9" in o for o in outcomes) >= KILLS, "\n".join(outcomes)
