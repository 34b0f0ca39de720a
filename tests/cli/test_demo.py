"""``popvault demo``: the README's first command runs the main job end to end."""

from __future__ import annotations

import os
import subprocess
import sys
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
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # the throw-away vault is gone
