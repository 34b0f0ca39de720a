"""Shared machinery of the benchmarks: results, child processes, tools, data sets, vaults.

Every benchmark module has ``run(bench: Bench) -> None`` and adds `Result` rows to
``bench.results``. Expensive steps that several benchmarks share (generating a mailbox,
importing it into a vault, a restic backup of it) are memoised on the `Bench`, so one
command runs each at most once and every ratio compares runs of that same command.

Scratch data lives in ``bench.work`` (default ``/var/tmp/popvault-bench``, a regular
file system); generated Maildirs are kept there between commands (with a stamp of the
parameters that made them) because generating them is slow and deterministic. Nothing
timed is ever reused from an earlier command.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("POPVAULT_BENCH_CORPUS", str(REPO.parent / "shared" / "corpus")))
PASSPHRASE = "benchmark passphrase, not a secret"
MAIL_PASSWORD = "bench-mail-password"
MB = 1 << 20
MEASURE = Path(__file__).resolve().parent / "measure.py"

T = TypeVar("T")


class BenchError(RuntimeError):
    """A benchmark could not run (missing tool, failed child, ...)."""


@dataclass
class Result:
    """One number of the report."""

    benchmark: str
    name: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if math.isnan(self.value):
            d["value"] = None
        return d


@dataclass
class ChildRun:
    """A finished child process: wall time, its own peak RSS, exit code, stderr tail."""

    argv: list[str]
    wall: float
    maxrss_mb: float
    returncode: int
    stderr: str
    #: Peak summed RSS of the child and every process it started (sampled).
    tree_rss_mb: float = 0.0
    #: CPU seconds (user + system) of the child and the children it waited for.
    cpu_s: float = 0.0

    @property
    def peak_mb(self) -> float:
        """The memory it took: its own peak, or its process tree's if that is higher."""
        return max(self.maxrss_mb, self.tree_rss_mb)


def _check(value: float, target: str) -> bool | None:
    """Evaluate a target like ``<= 1.25`` or ``< 20``; None when there is none."""
    if not target:
        return None
    op, _, num = target.partition(" ")
    limit = float(num)
    return {"<=": value <= limit, "<": value < limit, ">=": value >= limit, ">": value > limit}[op]


class Bench:
    """The state of one benchmark command: options, results and memoised steps."""

    def __init__(self, *, quick: bool, work: Path, out: Path) -> None:
        self.quick = quick
        self.work = work
        self.out = out
        self.results: list[Result] = []
        self._memo: dict[str, Any] = {}
        self.work.mkdir(parents=True, exist_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        self.cache_dir = self.work / "popvault-cache"
        self.cache_dir.mkdir(exist_ok=True)

    def memo(self, key: str, make: Callable[[], T]) -> T:
        if key not in self._memo:
            self._memo[key] = make()
        value: T = self._memo[key]
        return value

    def add(
        self,
        benchmark: str,
        name: str,
        value: float,
        unit: str,
        *,
        target: str = "",
        **details: Any,
    ) -> Result:
        r = Result(benchmark, name, value, unit, target, _check(value, target), details)
        self.results.append(r)
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        verdict = "" if r.ok is None else ("  ok" if r.ok else "  MISS")
        log(f"  {name}: {shown} {unit} {target}{verdict}")
        return r

    def fail(self, benchmark: str, name: str, why: str) -> Result:
        """A measurement that could not be made (tool failed or hung)."""
        r = Result(benchmark, name, math.nan, "", "", None, {"error": why})
        self.results.append(r)
        log(f"  {name}: FAILED: {why}")
        return r

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for popvault children: passphrase, private cache directory."""
        env = dict(os.environ)
        env["POPVAULT_PASSPHRASE"] = PASSPHRASE
        env["POPVAULT_CACHE_DIR"] = str(self.cache_dir)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.update(extra)
        return env

    def fresh_dir(self, *parts: str) -> Path:
        """An empty directory under the work directory (removed first if present)."""
        d = self.work.joinpath(*parts)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return d


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------- processes


def run_child(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    user: str | None = None,
    timeout: float | None = None,
) -> ChildRun:
    """Run ``argv`` to completion (as ``user`` if given) through ``measure.py``.

    Wall time and the child's own peak RSS are measured by the launcher around fork and
    wait4 (see measure.py for why a launcher is needed); stdout is discarded.
    """
    fd, result = tempfile.mkstemp(prefix="measure-", suffix=".json")
    os.close(fd)
    try:
        launcher = [sys.executable, "-S", str(MEASURE), result, user or "-", "--"]
        proc = subprocess.Popen(
            [*launcher, *argv],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _out, err_bytes = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise BenchError(
                f"{' '.join(argv[:2])} ... hung: killed after {timeout:.0f} s"
            ) from None
        text = Path(result).read_text()
    finally:
        os.unlink(result)
    err = err_bytes.decode("utf-8", "replace")
    if not text:
        raise BenchError(f"launcher failed for {' '.join(argv[:4])}: {err.strip()[-2000:]}")
    m = json.loads(text)
    run = ChildRun(
        list(argv),
        m["wall"],
        m["maxrss_kb"] / 1024,
        m["returncode"],
        err,
        m.get("tree_rss_kb", 0) / 1024,
        m.get("cpu_s", 0.0),
    )
    if check and run.returncode != 0:
        raise BenchError(
            f"{' '.join(argv[:4])} ... exited {run.returncode}: {run.stderr.strip()[-2000:]}"
        )
    return run


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]


def popvault_argv(vault: Path, *args: str) -> list[str]:
    return python_argv("-m", "popvault", "--vault", str(vault), "--quiet", *args)


# ------------------------------------------------------------------------- tools

_apt_updated = False


def ensure_tool(binary: str, package: str) -> str:
    """The path of ``binary`` (name on PATH or absolute path), apt-get installing ``package``.

    Raises BenchError with a clear message when it cannot be had.
    """
    global _apt_updated

    def look() -> str | None:
        if os.sep in binary:
            return binary if os.access(binary, os.X_OK) else None
        return shutil.which(binary)

    found = look()
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise BenchError(
            f"{binary} is not installed and cannot be installed here (needs root and apt-get):"
            f" install the Debian package {package}"
        )
    log(f"installing {package} (for {binary}) with apt-get ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        subprocess.run([apt, "update", "-q"], env=env, check=False, capture_output=True)
        _apt_updated = True
    res = subprocess.run(
        [apt, "install", "-y", "-q", "--no-install-recommends", package],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    found = look()
    if found is None:
        raise BenchError(
            f"{binary} is missing and 'apt-get install {package}' failed:"
            f" {res.stderr.strip()[-500:]}"
        )
    return found


def tool_version(argv: Sequence[str]) -> str:
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)
    except OSError:
        return "?"
    text = (res.stdout or res.stderr).strip().splitlines()
    return text[0] if text else "?"


# ------------------------------------------------------------------------ files


def tree_size(path: Path) -> int:
    """Apparent bytes of every regular file below ``path``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def check_regular_fs(path: Path) -> str:
    """The file system type of ``path``; BenchError when it is a RAM file system."""
    best = ""
    fstype = "?"
    real = str(path.resolve())
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mnt = parts[1]
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fstype = mnt, parts[2]
    if fstype in ("tmpfs", "ramfs"):
        raise BenchError(f"{path} is on {fstype}: benchmarks need a regular file system")
    return fstype


# --------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class Dataset:
    """A Maildir on disk (messages in ``new/``, one file each, in generation order)."""

    name: str
    maildir: Path
    count: int
    size: int

    def files(self) -> list[Path]:
        return sorted((self.maildir / "new").iterdir())

    def messages(self) -> Iterator[bytes]:
        for p in self.files():
            yield p.read_bytes()


def write_maildir(path: Path, messages: Iterable[bytes]) -> tuple[int, int]:
    """A fresh Maildir at ``path`` holding ``messages`` in ``new/``; (count, bytes)."""
    if path.exists():
        shutil.rmtree(path)
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True)
    n = total = 0
    for n, data in enumerate(messages, start=1):
        name = f"{n:07d}.M{n}.popvault-bench"
        (path / "new" / name).write_bytes(data)
        total += len(data)
    return n, total


def stamped_maildir(
    bench: Bench, name: str, params: dict[str, Any], make: Callable[[], Iterable[bytes]]
) -> Dataset:
    """A generated Maildir, regenerated only when ``params`` changed since last time."""

    def build() -> Dataset:
        root = bench.work / "data" / name
        stamp = root / "stamp.json"
        if stamp.exists():
            saved = json.loads(stamp.read_text())
            if saved.get("params") == params:
                return Dataset(name, root / "Maildir", saved["count"], saved["bytes"])
        log(f"generating mailbox {name} {params} ...")
        t0 = time.perf_counter()
        root.mkdir(parents=True, exist_ok=True)
        if stamp.exists():
            stamp.unlink()
        count, nbytes = write_maildir(root / "Maildir", make())
        stamp.write_text(json.dumps({"params": params, "count": count, "bytes": nbytes}))
        log(f"  {count} messages, {nbytes / MB:.1f} MiB in {time.perf_counter() - t0:.1f} s")
        return Dataset(name, root / "Maildir", count, nbytes)

    return bench.memo(f"dataset:{name}", build)


def realistic_dataset(bench: Bench) -> Dataset:
    from tests.support.generate import realistic

    n = 1000 if bench.quick else 5000
    return stamped_maildir(
        bench,
        "realistic",
        {"n": n, "seed": 20240501, "avg": 50 * 1024, "v": 1},
        lambda: realistic(n, 20240501, avg_size=50 * 1024),
    )


def attachment_dataset(bench: Bench) -> Dataset:
    """The attachment-heavy mailbox (``tests.support.attachment_mail``): 1,600 messages,
    about 450 MB (400, about 110 MB, with --quick)."""
    from tests.support.attachment_mail import attachment_heavy

    n = 400 if bench.quick else 1600
    return stamped_maildir(
        bench, "attachments", {"n": n, "seed": 12, "v": 1}, lambda: attachment_heavy(n, 12)
    )


def redundant_dataset(bench: Bench) -> Dataset:
    from tests.support.generate import redundant

    n = 200 if bench.quick else 1000
    return stamped_maildir(bench, "redundant", {"n": n, "seed": 7, "v": 1}, lambda: redundant(n, 7))


def small_messages(n: int, seed: int) -> Iterator[bytes]:
    """``n`` small realistic messages (about 1 to 12 KB, mean near 3 KB)."""
    import random

    from tests.support.generate import _compose, _Forge

    forge = _Forge.create(seed)
    rng = random.Random(seed)
    for _ in range(n):
        yield _compose(forge, rng.randrange(1024, 4096))


def corpus_dataset(bench: Bench) -> Dataset | None:
    """The real-world corpus as a Maildir in the work directory (never in the repo)."""
    if not CORPUS.is_dir():
        return None
    files = sorted(p for p in CORPUS.rglob("*.eml") if p.is_file())
    if not files:
        return None
    digest = hashlib.sha256()
    for p in files:
        digest.update(f"{p.relative_to(CORPUS)}:{p.stat().st_size}\n".encode())
    return stamped_maildir(
        bench,
        "corpus",
        {"source": str(CORPUS), "files": len(files), "digest": digest.hexdigest()},
        lambda: (p.read_bytes() for p in files),
    )


def datasets(bench: Bench) -> list[Dataset]:
    out = [realistic_dataset(bench), redundant_dataset(bench)]
    corpus = corpus_dataset(bench)
    if corpus is None:
        log(f"corpus {CORPUS} not found: skipped")
    else:
        out.append(corpus)
    return out


# ------------------------------------------------------------------------ vaults


def init_vault(bench: Bench, path: Path) -> Path:
    """A new, empty vault at ``path`` with the default (production) key derivation."""
    from popvault.vault.vault import Vault

    if path.exists():
        shutil.rmtree(path)
    Vault.init(path, PASSPHRASE.encode(), cache_dir=bench.cache_dir).close()
    return path


@dataclass(frozen=True)
class ImportRun:
    vault: Path
    run: ChildRun
    vault_bytes: int


def popvault_import(bench: Bench, ds: Dataset) -> ImportRun:
    """``popvault import`` of the data set into a fresh vault (memoised per command)."""

    def do() -> ImportRun:
        vault = init_vault(bench, bench.work / "vaults" / ds.name)
        log(f"popvault import {ds.name} ...")
        run = run_child(popvault_argv(vault, "import", str(ds.maildir)), env=bench.env())
        return ImportRun(vault, run, tree_size(vault))

    return bench.memo(f"import:{ds.name}", do)


@dataclass(frozen=True)
class RepoRun:
    repo: Path
    run: ChildRun
    repo_bytes: int


def restic_backup(bench: Bench, ds: Dataset) -> RepoRun:
    """``restic backup --compression max`` of the Maildir into a fresh repository."""

    def do() -> RepoRun:
        restic = ensure_tool("restic", "restic")
        base = bench.fresh_dir("restic", ds.name)
        repo = base / "repo"
        env = dict(os.environ, RESTIC_PASSWORD=PASSPHRASE, RESTIC_CACHE_DIR=str(base / "cache"))
        run_child([restic, "init", "--repo", str(repo)], env=env)
        log(f"restic backup {ds.name} ...")
        run = run_child(
            [restic, "backup", "--quiet", "--compression", "max", "--repo", str(repo), "."],
            env=env,
            cwd=ds.maildir,
        )
        return RepoRun(repo, run, tree_size(repo))

    return bench.memo(f"restic:{ds.name}", do)


def borg_create(bench: Bench, ds: Dataset) -> RepoRun:
    """``borg create --compression zstd,19`` of the Maildir into a fresh repository."""

    def do() -> RepoRun:
        borg = ensure_tool("borg", "borgbackup")
        base = bench.fresh_dir("borg", ds.name)
        repo = base / "repo"
        env = dict(
            os.environ,
            BORG_PASSPHRASE=PASSPHRASE,
            BORG_BASE_DIR=str(base / "home"),
            BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
        )
        run_child([borg, "init", "--encryption", "repokey-blake2", str(repo)], env=env)
        log(f"borg create {ds.name} ...")
        run = run_child(
            [borg, "create", "--compression", "zstd,19", f"{repo}::bench", "."],
            env=env,
            cwd=ds.maildir,
        )
        return RepoRun(repo, run, tree_size(repo))

    return bench.memo(f"borg:{ds.name}", do)


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]
