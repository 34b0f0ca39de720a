"""Two revisions of popvault side by side: is the newer one slower?

``python3 -m benchmarks.compare_revisions --base REV [--rounds N] [--quick]`` checks out
REV in a git worktree and runs, alternating between REV and the working tree (so that
both meet the same machine noise), N rounds of:

- ``popvault import`` of an attachment-heavy Maildir (realistic mail: text and HTML
  bodies, PDFs, images, forwards) into a fresh vault;
- ``popvault import`` of a Maildir of small messages into a fresh vault;
- ``popvault backup`` of the attachment-heavy mail from a private Dovecot over POP3S
  (needs root, like the other POP3 benchmarks).

It prints the median wall time and peak RSS of each, and the ratio working tree / REV
(below 1.0: faster). Both revisions write the same vault format, so one vault creation
(the fast test KDF) serves both. Scratch data goes to --work (a regular file system).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import MB, ChildRun, median, run_child, write_maildir

REPO = Path(__file__).resolve().parents[1]
PASSPHRASE = "compare-revisions"


def _worktree(rev: str, work: Path) -> Path:
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", rev], capture_output=True, text=True, check=True
    ).stdout.strip()
    path = work / f"rev-{sha[:12]}"
    if not path.exists():
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), sha],
            check=True,
            capture_output=True,
        )
    return path


def _vault(path: Path, cache: Path) -> Path:
    from popvault.vault import Vault
    from popvault.vault.crypto import TEST_KDF

    if path.exists():
        shutil.rmtree(path)
    if cache.exists():
        shutil.rmtree(cache)
    Vault.init(path, PASSPHRASE.encode(), kdf=TEST_KDF, cache_dir=cache).close()
    return path


def _env(code: Path, cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POPVAULT_")}
    env.update(
        PYTHONPATH=str(code),
        POPVAULT_PASSPHRASE=PASSPHRASE,
        POPVAULT_CACHE_DIR=str(cache),
        **extra,
    )
    return env


def _popvault(code: Path, vault: Path, cache: Path, args: list[str], **env: str) -> ChildRun:
    argv = [sys.executable, "-m", "popvault", "--vault", str(vault), "--quiet", *args]
    return run_child(argv, env=_env(code, cache, **env), cwd=code)


def _datasets(work: Path, quick: bool) -> dict[str, tuple[Path, list[bytes]]]:
    sys.path.insert(0, str(REPO))
    from benchmarks.common import small_messages
    from tests.support.generate import realistic

    rich = list(realistic(600 if quick else 3000, 20240501, avg_size=50 * 1024))
    small = list(small_messages(5000 if quick else 20000, 11))
    out = {}
    for name, msgs in (("attachment-heavy", rich), ("small", small)):
        path = work / "data" / name
        write_maildir(path, msgs)
        out[name] = (path, msgs)
    return out


def _round(
    label: str, revs: dict[str, Path], work: Path, measure: Callable[[Path, Path], ChildRun]
) -> dict[str, ChildRun]:
    runs = {}
    for name, code in revs.items():
        runs[name] = measure(code, work / "vaults" / f"{label}-{name}")
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the revision to compare against")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smaller mailboxes")
    ap.add_argument("--work", default="/var/tmp/popvault-compare", help="scratch directory")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base = _worktree(args.base, work)
    data = _datasets(work, args.quick)
    results: dict[str, dict[str, list[ChildRun]]] = {}

    def record(label: str, runs: dict[str, ChildRun]) -> None:
        for name, run in runs.items():
            results.setdefault(label, {}).setdefault(name, []).append(run)

    from tests.support.dovecot import Dovecot

    with Dovecot.start() as dc:
        user = dc.add_user("compare", "compare-pw")
        dc.deliver(user, data["attachment-heavy"][1])
        config = work / "config.toml"
        config.write_text(
            "[accounts.dc]\n"
            f'host = "{dc.host}"\nport = {dc.pop3s_port}\nuser = "{user.name}"\n'
            f'tls = "implicit"\ntls_ca_file = "{dc.ca_file}"\n'
            'password_env = "COMPARE_POP3_PASSWORD"\n'
        )
        for i in range(args.rounds):
            # alternate which revision goes first, so neither always meets a warmer cache
            order = {"base": base, "new": REPO} if i % 2 == 0 else {"new": REPO, "base": base}
            for label, (maildir, _msgs) in data.items():

                def imp(code: Path, v: Path, md: Path = maildir) -> ChildRun:
                    cache = v.with_name(v.name + "-cache")
                    return _popvault(code, _vault(v, cache), cache, ["import", str(md)])

                record(f"import {label}", _round(f"import-{label}", order, work, imp))

            def backup(code: Path, v: Path) -> ChildRun:
                cache = v.with_name(v.name + "-cache")
                return _popvault(
                    code,
                    _vault(v, cache),
                    cache,
                    ["--config", str(config), "backup"],
                    COMPARE_POP3_PASSWORD="compare-pw",
                )

            record("POP3S backup attachment-heavy", _round("backup", order, work, backup))
            print(f"round {i + 1} of {args.rounds} done", file=sys.stderr, flush=True)

    print(f"base {args.base} ({base.name}) against the working tree, {args.rounds} rounds")
    sizes = {k: sum(len(m) for m in v[1]) / MB for k, v in data.items()}
    print(f"mail: {', '.join(f'{k} {len(v[1])} msgs {sizes[k]:.0f} MiB' for k, v in data.items())}")
    print(f"{'measure':34} {'base s':>8} {'new s':>8} {'new/base':>9} {'base MB':>8} {'new MB':>8}")
    for label, by_rev in results.items():
        b = median([r.wall for r in by_rev["base"]])
        n = median([r.wall for r in by_rev["new"]])
        bm = max(r.peak_mb for r in by_rev["base"])
        nm = max(r.peak_mb for r in by_rev["new"])
        print(f"{label:34} {b:8.2f} {n:8.2f} {n / b:9.3f} {bm:8.0f} {nm:8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
