"""Helpers for the CLI tests: run popvault in-process or as a subprocess, make vaults and
mailboxes quickly.

``run`` calls :func:`popvault.cli.main.main` (the real entry point, which maps errors
to exit codes) inside click's stream isolation and returns the exit code, stdout bytes
and stderr text. ``run_sub`` runs ``python -m popvault`` for end-to-end cases. Vaults
are created with the cheap test KDF so that opening them costs milliseconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from popvault.cli.main import main
from popvault.vault.crypto import TEST_KDF
from popvault.vault.vault import Vault
from tests.support.generate import realistic

PASSPHRASE = "correct horse"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Result:
    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8")

    def __str__(self) -> str:  # shown by pytest when an assertion on a result fails
        return f"exit {self.code}\n--- stdout\n{self.out[:2000]!r}\n--- stderr\n{self.err}"


def run(*args: str | os.PathLike[str], env: Mapping[str, str | None] | None = None) -> Result:
    """Run ``popvault ARGS`` in this process through the real entry point."""
    argv = [os.fspath(a) for a in args]
    runner = CliRunner()
    with runner.isolation(env=env) as (out, err, _mixed):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            raise AssertionError("popvault.cli.main.main returned without sys.exit")
        sys.stdout.flush()
        sys.stderr.flush()
        return Result(code, out.getvalue(), err.getvalue().decode("utf-8", "backslashreplace"))


def run_sub(
    *args: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> Result:
    """Run ``python -m popvault ARGS`` as a child process (stdin closed, no terminal)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "popvault", *[os.fspath(a) for a in args]],
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "backslashreplace"))


def one_line_error(res: Result, code: int) -> str:
    """The one ``popvault: error:`` line of a run that exited ``code``, no traceback."""
    assert res.code == code, res
    lines = [ln for ln in res.err.splitlines() if ln.startswith("popvault: error:")]
    assert len(lines) == 1, res
    assert "Traceback" not in res.err
    return lines[0]


def make_vault(path: Path, passphrase: str = PASSPHRASE) -> Path:
    """Create an empty vault at ``path`` with the cheap test KDF; returns ``path``."""
    Vault.init(
        path, passphrase.encode(), kdf=TEST_KDF, cache_dir=path.parent / "init-cache"
    ).close()
    return path


def messages(n: int, seed: int = 1, avg_size: int = 3000) -> list[bytes]:
    """``n`` distinct realistic CRLF messages (deterministic)."""
    out = list(dict.fromkeys(realistic(n, seed, avg_size=avg_size)))
    assert len(out) == n
    return out


def simple_message(n: int, *, sender: str = "alice@example.org", subject: str = "") -> bytes:
    """A tiny distinct message with the given From and Subject."""
    subject = subject or f"message {n}"
    return (
        f"From: {sender}\r\nTo: bob@example.net\r\nSubject: {subject}\r\n"
        f"Date: Mon, 01 Jan 2018 12:00:00 +0000\r\nMessage-ID: <m{n}@example.org>\r\n\r\n"
        f"body {n}\r\n"
    ).encode()


def write_maildir(path: Path, msgs: Iterable[bytes], *, prefix: str = "m") -> list[Path]:
    """A Maildir with one file a message in ``new/``; returns the files."""
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    files = []
    for i, m in enumerate(msgs):
        f = path / "new" / f"{prefix}{i:06d}.host"
        f.write_bytes(m)
        files.append(f)
    return files


def write_mbox(path: Path, msgs: Iterable[bytes]) -> None:
    """An mboxrd file of messages that contain no 'From ' lines and end in a newline."""
    with open(path, "wb") as f:
        for m in msgs:
            assert m.endswith(b"\n") and b"\nFrom " not in m and b"\n>" not in m
            f.write(b"From sender@example.org Mon Jan  1 12:00:00 2018\n")
            f.write(m)
            f.write(b"\n")


def write_eml_dir(path: Path, msgs: Iterable[bytes]) -> list[Path]:
    path.mkdir(parents=True, exist_ok=True)
    files = []
    for i, m in enumerate(msgs):
        f = path / f"{i:04d}.eml"
        f.write_bytes(m)
        files.append(f)
    return files


def list_json(vault: Path, *filters: str) -> list[dict[str, Any]]:
    res = run("--vault", vault, "list", "--json", *filters)
    assert res.code == 0, str(res)
    return [json.loads(line) for line in res.text.splitlines()]


def ids_of(vault: Path, *filters: str) -> set[str]:
    return {str(row["id"]) for row in list_json(vault, *filters)}


def contents(vault: Path) -> dict[str, bytes]:
    """Message id -> exact bytes, through ``popvault show``."""
    out: dict[str, bytes] = {}
    for mid in ids_of(vault):
        res = run("--vault", vault, "show", mid)
        assert res.code == 0, str(res)
        out[mid] = res.out
    return out


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (relative name -> bytes): a vault's full state."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def first_error_line(err: str) -> str:
    lines = err.splitlines()
    assert lines, "nothing on stderr"
    return lines[0]


def env_of(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment a subprocess test needs (passphrase, private cache)."""
    env = {
        "POPVAULT_PASSPHRASE": PASSPHRASE,
        "POPVAULT_CACHE_DIR": str(tmp / "cache"),
        "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
    }
    env.update(extra)
    return env


def strip_vars(names: Sequence[str]) -> dict[str, str | None]:
    return dict.fromkeys(names)
