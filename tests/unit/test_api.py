"""The library API (docs/api.md): the example in the docs runs as written, and the
names promised there exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import popvault

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert blocks, "docs/api.md has no python example"
    return str(blocks[0])


def test_the_docs_example_runs(tmp_path: Path) -> None:
    env = {"POPVAULT_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", _example()],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(DOC.parents[1]), "HOME": str(tmp_path)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "1 new message(s)"
    assert lines[1].endswith("the contract, signed 138 bytes"), lines


def test_every_promised_name_exists() -> None:
    for name in popvault.__all__:
        assert getattr(popvault, name) is not None, name
    table = DOC.read_text(encoding="utf-8").split("## The names", 1)[1]
    for name in re.findall(r"^\| `(\w+)", table, re.M):
        assert name in popvault.__all__, name


def test_importing_popvault_loads_nothing_else() -> None:
    code = "import sys, popvault; print(sorted(m for m in sys.modules if m.startswith('popvault')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['popvault']"
