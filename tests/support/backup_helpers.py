"""Shared pieces of the backup tests: vaults, CLI runs, config files, and the invariants.

The invariants are guarantee 2 and 3 of DESIGN.md, stated on what a test can observe:
every original message is on the server or in the vault (never neither), the vault holds
each arrival once and each distinct message once, everything in it reads back byte-exact,
and ``check --read-data`` finds nothing wrong. Vaults made here use ``TEST_KDF`` (fast to
open, also for CLI subprocesses: the KDF cost is stored in the key slot).
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from popvault.app.config import AccountConfig
from popvault.cli.main import main
from popvault.demo.server import ScriptedPop3Server
from popvault.vault.crypto import TEST_KDF
from popvault.vault.vault import Vault
from tests.support.generate import vocabulary
from tests.support.vaults import cached_message_ids

PASSPHRASE = "backup-test-passphrase"
REPO = Path(__file__).resolve().parents[2]

#: Fields every account entry of ``popvault backup --json`` has (AccountReport.to_json).
REPORT_FIELDS = frozenset(
    {
        "account",
        "host",
        "status",
        "exit_code",
        "listed",
        "fetched",
        "new",
        "duplicates",
        "bytes",
        "deleted",
        "would_fetch",
        "would_delete",
        "seconds",
        "warnings",
        "error",
    }
)


def create_vault(path: Path, cache_dir: Path) -> None:
    """A new, empty vault at ``path`` (fast KDF), closed again."""
    Vault.init(path, PASSPHRASE.encode(), kdf=TEST_KDF, cache_dir=cache_dir).close()


@contextlib.contextmanager
def open_vault(path: Path, cache_dir: Path, *, write: bool = False) -> Iterator[Vault]:
    """Open the vault at ``path`` (writable: with the writer lock), close on exit."""
    v = Vault.open(path, PASSPHRASE.encode(), write=write, cache_dir=cache_dir)
    try:
        yield v
    finally:
        v.close()


def scripted_account(
    server: ScriptedPop3Server, name: str = "scripted", **options: object
) -> AccountConfig:
    """An account on our scripted server (plain POP3 on loopback, small timeouts)."""
    values: dict[str, object] = {
        "name": name,
        "host": "127.0.0.1",
        "port": server.port,
        "user": server.user,
        "tls": "none",
        "timeout": 5.0,
        "connect_timeout": 5.0,
    }
    values.update(options)
    return AccountConfig(**values)  # type: ignore[arg-type]


def small_messages(n: int, seed: int) -> list[tuple[str, bytes]]:
    """``n`` small, distinct CRLF messages (about 0.3 to 2 KB) with UIDLs ``m00001``..."""
    rng = random.Random(seed)
    words = vocabulary()
    out: list[tuple[str, bytes]] = []
    for i in range(1, n + 1):
        body_lines = [
            " ".join(rng.choices(words[:600], k=rng.randrange(4, 12)))
            for _ in range(rng.randrange(3, 25))
        ]
        if i % 7 == 0:
            body_lines.insert(1, ".a line starting with a dot")
        head = [
            f"From: sender{i % 13}@example.org",
            "To: owner@example.net",
            f"Date: Mon, 04 Mar 2019 {i % 24:02d}:{i % 60:02d}:00 +0000",
            f"Subject: message {i} " + " ".join(rng.choices(words[:200], k=3)),
            f"Message-ID: <m{i}.{seed}@example.org>",
        ]
        data = ("\r\n".join([*head, "", *body_lines]) + "\r\n").encode()
        out.append((f"m{i:05d}", data))
    return out


# ------------------------------------------------------------------------ the CLI


def cli_env(cache_dir: Path, pop3_password: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a ``popvault`` subprocess: passphrase, cache dir, POP3 password."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("POPVAULT_") and k not in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME")
    }
    env["POPVAULT_PASSPHRASE"] = PASSPHRASE
    env["POPVAULT_CACHE_DIR"] = str(cache_dir)
    # the anchors (format §8.6) beside the cache: a fresh cache is a fresh machine, as
    # these tests mean it (a trial on a copy of a template vault is not a rollback)
    env["POPVAULT_STATE_DIR"] = f"{cache_dir}.state"
    env["PYTHONPATH"] = str(REPO)
    if pop3_password is not None:
        env["POPVAULT_POP3_PASSWORD"] = pop3_password
    env.update(extra)
    return env


def cli_command(vault: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "popvault", "--vault", str(vault), *args]


def run_cli(
    vault: Path, args: Sequence[str], env: Mapping[str, str], *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m popvault --vault VAULT ARGS...`` to completion, capturing output."""
    return subprocess.run(
        cli_command(vault, *args),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def run_main(argv: Sequence[str]) -> int:
    """Run the CLI's ``main`` in this process (so tests can monkeypatch); its exit code."""
    try:
        main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    raise AssertionError("popvault main() returned without sys.exit")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot write {value!r} as TOML here")


def write_config(
    path: Path, accounts: Mapping[str, Mapping[str, object]], *, vault: Path | None = None
) -> Path:
    """A config file with one ``[accounts.NAME]`` table per account, mode 0600."""
    lines: list[str] = []
    if vault is not None:
        lines.append(f"vault = {_toml_value(str(vault))}")
    for name, table in accounts.items():
        lines.append(f"\n[accounts.{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


# ------------------------------------------------------------------------ invariants


def archived(vault: Vault, account: str) -> dict[str, bytes]:
    """UIDL -> the exact bytes the vault holds for it (read back and verified)."""
    return {u: vault.read_message(m) for u, m in vault.known_uidls(account).items()}


def arrivals_per_uidl(vault: Vault, account: str) -> collections.Counter[str]:
    """How many arrival (``src``) records the vault holds for each UIDL of ``account``."""
    rows = vault.cache.db.execute(
        "SELECT uidl FROM sources WHERE account=? AND uidl IS NOT NULL", (account,)
    )
    return collections.Counter(r[0] for r in rows)


def message_count(vault: Vault) -> int:
    return sum(1 for _ in vault.messages())


def assert_vault_sound(vault: Vault) -> None:
    """``check --read-data`` passes and nothing was archived twice."""
    report = vault.check(read_data=True)
    assert report.ok, report.problems
    ids = cached_message_ids(vault)
    assert len(ids) == len(set(ids)) == report.messages


def assert_nothing_lost(
    original: Sequence[tuple[str, bytes]],
    on_server: Sequence[tuple[str, bytes]],
    vault: Vault,
    account: str,
    *,
    expected: Mapping[str, bytes] | None = None,
) -> dict[str, bytes]:
    """Every original message is on the server or in the vault (byte-exact), never neither;
    no UIDL was archived twice; nothing foreign is in the vault. Returns the vault's view.

    ``expected`` maps a UIDL to the bytes the vault must hold when they differ from the
    original (what the server sends, e.g. Dovecot's CRLF). Messages gone from the server
    must be in the vault: that is also "nothing DELE'd that was not archived".
    """
    stored = archived(vault, account)
    server_ids = {u for u, _ in on_server}
    for uidl, data in original:
        want = (expected or {}).get(uidl, data)
        if uidl in stored:
            assert stored[uidl] == want, f"{uidl}: vault bytes differ from the server's"
        else:
            assert uidl in server_ids, f"{uidl} is neither on the server nor in the vault"
    assert set(stored) <= {u for u, _ in original}
    counts = arrivals_per_uidl(vault, account)
    assert all(c == 1 for c in counts.values()), counts.most_common(3)
    assert message_count(vault) == len(set(stored.values()))
    return stored


__all__ = [
    "PASSPHRASE",
    "REPORT_FIELDS",
    "archived",
    "arrivals_per_uidl",
    "assert_nothing_lost",
    "assert_vault_sound",
    "cli_command",
    "cli_env",
    "create_vault",
    "message_count",
    "open_vault",
    "run_cli",
    "run_main",
    "scripted_account",
    "small_messages",
    "write_config",
]
