"""``popvault demo``: the README's first command runs the main job end to end."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from popvault.demo.run import run_demo, sample_messages
from popvault.mailboxes.mbox import read_mbox
from popvault.vault.vault import Vault


def test_demo_backs_up_every_sample_once_and_exports_them(tmp_path: Path) -> None:
    lines: list[str] = []
    rep = run_demo(tmp_path / "keep", say=lines.append)
    samples = sample_messages()
    assert len(samples) >= 10
    assert rep.messages_served == len(samples)
    assert rep.first_run_fetched == len(samples)
    assert rep.second_run_fetched == 0
    assert rep.listed == rep.exported == len(samples)
    assert any("check --read-data: ok" in line for line in lines)
    # the vault holds each sample byte for byte (the server serves them verbatim)
    with Vault.open(
        tmp_path / "keep" / "vault", b"demo passphrase", cache_dir=tmp_path / "c"
    ) as vault:
        stored = sorted(vault.read_message(r.id) for r in vault.messages())
    assert stored == sorted(data for _, data in samples)
    # the mbox export holds them with LF line ends (the documented default transform)
    exported = sorted(m.data for m in read_mbox(rep.mbox))
    assert exported == sorted(data.replace(b"\r\n", b"\n") for _, data in samples)


def test_demo_command_exits_zero_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "popvault", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "demo complete" in proc.stdout
    assert "'popvault demo --keep DIR'" in proc.stdout  # then how to browse it
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # the throw-away vault is gone


def test_demo_ends_by_saying_how_to_browse_and_that_command_serves_the_vault(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "POPVAULT_CACHE_DIR": str(tmp_path / "c")}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    keep = tmp_path / "keep"
    proc = subprocess.run(
        [sys.executable, "-m", "popvault", "demo", "--keep", str(keep)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.splitlines()[-1].strip()
    assert last == (
        f"POPVAULT_PASSPHRASE='demo passphrase' popvault --vault {keep.resolve() / 'vault'} serve"
    )
    # the printed command, run as printed, serves the demo's messages
    words = shlex.split(last)
    serve_env = {**env, words[0].split("=")[0]: words[0].split("=", 1)[1]}
    server = subprocess.Popen(
        [sys.executable, "-m", *words[1:]],
        env=serve_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        base, token = url.split("/?token=")
        req = urllib.request.Request(  # noqa: S310 (127.0.0.1)
            base + "/", headers={"Cookie": f"popvault_{base.rsplit(':', 1)[1]}={token}"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
            page = r.read().decode()
        assert f"{len(sample_messages())} messages in the vault" in page
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert server.returncode == 0


def test_demo_without_keep_says_how_to_keep_a_vault_to_browse() -> None:
    from popvault.cli.cmd_demo import browse_hint

    assert "popvault demo --keep DIR" in browse_hint(None)
