"""Invalid golden vectors: every vault in tests/vectors/invalid/ must be refused exactly.

Each case in ``cases.json`` is the golden vault ``tests/vectors/v1/`` with the objects it
lists removed and the files of its folder added (made once by
``tests/vectors/make_invalid.py``; see the README there). The case is materialised in
``tmp_path`` and every operation it names runs twice: through the library API (the
exception class and message) and through the ``popvault`` CLI in-process (exit code,
the one-line error, never an internal error or a traceback). ``check`` reports damage
instead of raising, so for it the expected text is one of the problems listed. No
operation may change the vault.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import popvault.errors
from popvault.errors import IntegrityError, PopvaultError
from popvault.vault.vault import Vault
from tests.cli.helpers import Result, run

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
INVALID = VECTORS / "invalid"
MANIFEST: dict[str, Any] = json.loads((INVALID / "cases.json").read_text())
GOLDEN = VECTORS / MANIFEST["base"]
PASSPHRASE: str = MANIFEST["passphrase"]
MESSAGES: list[str] = sorted(json.loads((GOLDEN / "expected.json").read_text())["messages"])
OPERATIONS = ("open", "read", "check", "check --read-data", "index rebuild --from-packs")


@dataclass(frozen=True)
class Expect:
    operation: str
    exit: int
    exception: str = ""
    error: str = ""


CASES: list[tuple[dict[str, Any], Expect]] = [
    (case, Expect(**e)) for case in MANIFEST["cases"] for e in case["expect"]
]


def _id(item: tuple[dict[str, Any], Expect]) -> str:
    case, e = item
    return f"{case['name']}:{e.operation.replace(' ', '_')}"


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def materialise(case: dict[str, Any], dst: Path) -> Path:
    """The golden vault with the case's objects removed and its files added."""
    shutil.copytree(GOLDEN, dst, ignore=shutil.ignore_patterns("expected.json"))
    for name in case["remove"]:
        (dst / name).unlink()
    for name in case["files"]:
        target = dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(INVALID / case["name"] / name, target)
    return dst


@pytest.fixture(autouse=True)
def state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private state folder (per-machine anchors): every case's vault has the golden
    vault's id, and what one case leaves there must not meet the next."""
    state = tmp_path / "state"
    monkeypatch.setenv("POPVAULT_STATE_DIR", str(state))
    return state


# --- the library --------------------------------------------------------------------


def run_library(vault: Path, operation: str) -> list[str]:
    """Run ``operation`` through the API; the problems ``check`` reports (else [])."""
    passphrase = PASSPHRASE.encode()
    if operation.startswith("check"):
        try:
            v = Vault.open(vault, passphrase)
        except IntegrityError:  # as the CLI does: a damaged commit stops the sync only
            v = Vault.open(vault, passphrase, sync=False)
        with v:
            return v.check(read_data=operation == "check --read-data").problems
    with Vault.open(vault, passphrase, sync=operation != "index rebuild --from-packs") as v:
        if operation == "read":
            for hexid in MESSAGES:
                v.read_message(bytes.fromhex(hexid))
        elif operation == "index rebuild --from-packs":
            v.rebuild_cache(from_packs=True)
    return []


@pytest.mark.parametrize(("case", "expect"), CASES, ids=[_id(c) for c in CASES])
def test_library(case: dict[str, Any], expect: Expect, tmp_path: Path) -> None:
    vault = materialise(case, tmp_path / "vault")
    before = _tree(vault)
    if expect.exit == 0:
        assert run_library(vault, expect.operation) == []
    elif expect.operation.startswith("check"):
        problems = run_library(vault, expect.operation)
        assert any(expect.error in p for p in problems), problems
    else:
        cls = getattr(popvault.errors, expect.exception)
        with pytest.raises(PopvaultError) as info:
            run_library(vault, expect.operation)
        assert type(info.value) is cls, info.value
        assert info.value.exit_code == expect.exit
        assert expect.error in info.value.message
    assert _tree(vault) == before  # reading never changes the vault


# --- the CLI ------------------------------------------------------------------------


def run_cli(vault: Path, operation: str, cache: Path) -> list[Result]:
    env = {
        "POPVAULT_PASSPHRASE": PASSPHRASE,
        "POPVAULT_CACHE_DIR": str(cache),
        "POPVAULT_STATE_DIR": str(cache.parent / "cli-state"),
    }
    if operation == "read":  # every message, one 'show' each
        return [run("--vault", vault, "show", mid, env=env) for mid in MESSAGES]
    args = {"open": ["list"], "check": ["check"]}.get(operation, operation.split())
    return [run("--vault", vault, *args, env=env)]


def error_lines(res: Result) -> list[str]:
    return [ln for ln in res.err.splitlines() if ln.startswith("popvault: error: ")]


@pytest.mark.parametrize(("case", "expect"), CASES, ids=[_id(c) for c in CASES])
def test_cli(case: dict[str, Any], expect: Expect, tmp_path: Path) -> None:
    vault = materialise(case, tmp_path / "vault")
    before = _tree(vault)
    results = run_cli(vault, expect.operation, tmp_path / "cli-cache")
    for res in results:
        assert "Traceback" not in res.err, str(res)
        assert "internal error" not in res.err, str(res)
    if expect.exit == 0:
        assert all(r.code == 0 for r in results), [str(r) for r in results]
    else:
        failed = [r for r in results if r.code != 0]
        assert failed, "no operation failed"
        for res in failed:
            assert res.code == expect.exit, str(res)
            errors = error_lines(res)
            assert len(errors) == 1, str(res)
            if expect.operation.startswith("check"):
                problems = [
                    ln for ln in res.err.splitlines() if ln.startswith("popvault: problem: ")
                ]
                assert any(expect.error in ln for ln in problems), str(res)
            else:
                assert expect.error in errors[0], str(res)
    assert _tree(vault) == before


# --- the manifest itself ------------------------------------------------------------


def test_manifest_is_complete() -> None:
    """Every case names a section, a rule and known operations; its folder holds
    exactly the files it lists; removals name golden objects."""
    names = [c["name"] for c in MANIFEST["cases"]]
    assert len(names) == len(set(names))
    golden = set(_tree(GOLDEN))
    for case in MANIFEST["cases"]:
        assert case["section"].startswith("§") and case["must"], case["name"]
        assert case["expect"], case["name"]
        for e in case["expect"]:
            assert e["operation"] in OPERATIONS, e
            if e["exit"] != 0:
                assert isinstance(getattr(popvault.errors, e["exception"]), type), e
                assert e["error"], e
        assert set(case["remove"]) <= golden, case["name"]
        folder = INVALID / case["name"]
        stored = set(_tree(folder)) if folder.exists() else set()
        assert stored == set(case["files"]), case["name"]
    assert {p.name for p in INVALID.iterdir() if p.is_dir()} <= set(names)
