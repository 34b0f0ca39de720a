"""The helper process that prepares messages for a backup (popvault.app.helper).

A real spawned helper: results come back in submission order with their tags, equal to
preparing in this process; and when the helper fails (it raises, or it is killed) every
message still comes back, without a result, so the caller adds it directly.
"""

from __future__ import annotations

import array
import fcntl
import os
import signal
import termios
import time
from pathlib import Path

import pytest

from popvault.app.helper import Preparer, slices
from popvault.app.indexing import indexed_document, prepare_indexed
from popvault.app.metadata import parse_metadata
from popvault.vault.ids import prepare_message
from tests.support.vaults import attachment_message, random_bytes, text_message

MAC = bytes(range(32))
MESSAGES = [
    attachment_message(random_bytes(20_000 + i, i), n=i) if i % 5 == 0 else text_message(i)
    for i in range(60)
]


def test_results_in_order_and_equal_to_preparing_here() -> None:
    got = []
    with Preparer[int](MAC, batch_count=7, batch_bytes=50_000) as prep:
        for i, data in enumerate(MESSAGES):
            prep.submit(data, i)
            got += list(prep.ready())
        got += list(prep.ready(wait=True))
        assert prep.failed is None
    assert [tag for _, tag, _ in got] == list(range(len(MESSAGES)))
    for data, tag, result in got:
        assert data == MESSAGES[tag]
        assert result == (prepare_message(MAC, data), parse_metadata(data), None)


def test_slices_give_every_result_in_order_a_bounded_number_at_a_time() -> None:
    with Preparer[int](MAC, batch_count=7) as prep:
        for i, data in enumerate(MESSAGES):
            prep.submit(data, i)
        got = list(slices(prep.ready(wait=True), 25))
    assert [len(s) for s in got] == [25, 25, 10]
    assert [tag for s in got for _, tag, _ in s] == list(range(len(MESSAGES)))


def test_two_helpers_in_turn_with_documents_give_results_in_order() -> None:
    """Batches go to two helpers in turn; what comes back is in submission order and
    equal to preparing here, with each message's index document (a run that indexes)."""
    got = []
    with Preparer[int](MAC, batch_count=3, work=prepare_indexed, processes=2) as prep:
        for i, data in enumerate(MESSAGES):
            prep.submit(data, i)
            got += list(prep.ready())
        got += list(prep.ready(wait=True))
        assert prep.failed is None
        assert len(set(prep.helper_pids)) == 2
    assert [tag for _, tag, _ in got] == list(range(len(MESSAGES)))
    for data, tag, result in got:
        assert data == MESSAGES[tag]
        want = (prepare_message(MAC, data), parse_metadata(data), indexed_document(data))
        assert result == want
        assert result is not None and result[2] is not None and result[2][0].ready


def test_a_failing_helper_gives_every_message_back_without_result() -> None:
    with Preparer[int](None, batch_count=4) as prep:  # type: ignore[arg-type]
        for i, data in enumerate(MESSAGES[:10]):
            prep.submit(data, i)
        got = list(prep.ready(wait=True))
        assert isinstance(prep.failed, TypeError)
    assert [(data, tag, result) for data, tag, result in got] == [
        (data, i, None) for i, data in enumerate(MESSAGES[:10])
    ]


def test_a_killed_helper_gives_the_rest_back_without_result() -> None:
    with Preparer[int](MAC, batch_count=5) as prep:
        for i, data in enumerate(MESSAGES[:5]):
            prep.submit(data, i)
        first = list(prep.ready(wait=True))
        assert all(result is not None for _, _, result in first)
        pid = prep.helper_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        for i, data in enumerate(MESSAGES[5:20], 5):
            prep.submit(data, i)
        rest = list(prep.ready(wait=True))
        assert prep.failed is not None
    assert [tag for _, tag, _ in rest] == list(range(5, 20))
    assert all(result is None for _, _, result in rest)


def test_at_most_max_pending_bytes_are_out() -> None:
    """ready() waits once more than max_pending bytes are out, so memory is bounded."""
    with Preparer[int](MAC, batch_count=1, max_pending=100_000) as prep:
        returned = 0
        for i, data in enumerate(MESSAGES):
            prep.submit(data, i)
            returned += len(list(prep.ready()))
            assert prep._pending <= 100_000 + len(data)
        returned += len(list(prep.ready(wait=True)))
    assert returned == len(MESSAGES)


def test_a_helper_goes_on_while_its_writer_reads_nothing() -> None:
    """Answers of several batches wait in the pipe while the writer is busy elsewhere (a
    commit): more than the 64 KiB a pipe holds by default, where a helper stood still."""
    with Preparer[int](MAC, batch_count=8, max_pending=1 << 30) as prep:
        for i in range(6):
            for j, data in enumerate(MESSAGES):
                prep.submit(data, i * 100 + j)
        prep._send()
        pipe = prep._helpers[0].answers
        assert pipe is not None
        waiting = array.array("i", [0])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            fcntl.ioctl(pipe.fileno(), termios.FIONREAD, waiting)
            if waiting[0] > 64 << 10:
                break
            time.sleep(0.05)
        assert waiting[0] > 64 << 10
        assert len(list(prep.ready(wait=True))) == 6 * len(MESSAGES)
        assert prep.failed is None


def _children() -> set[int]:
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            kids.add(int(stat.parent.name))
    return kids


def test_the_helpers_are_the_only_processes_started() -> None:
    """No other process comes with them (multiprocessing's spawn started a resource
    tracker too: 15 MB of a backup's memory for nothing)."""
    before = _children()
    with Preparer[int](MAC, batch_count=3, processes=2) as prep:
        for i, data in enumerate(MESSAGES):
            prep.submit(data, i)
        assert len(list(prep.ready(wait=True))) == len(MESSAGES)
        assert prep.failed is None
        assert _children() - before == set(prep.helper_pids)
        assert len(prep.helper_pids) == 2


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("when", ["after its first result", "while it starts"])
def test_helper_exits_when_its_writer_is_killed(when: str) -> None:
    """kill -9 of the writer must not leave its helper running (holding its pipes), even
    when the writer dies before the helper has finished starting."""
    import subprocess
    import sys
    import time

    wait = "assert list(p.ready(wait=True))[0][2] is not None\n" if when.startswith("after") else ""
    code = (
        "import sys, time\n"
        "from popvault.app.helper import Preparer\n"
        "p = Preparer(bytes(32), batch_count=1)\n"
        "p.submit(b'Subject: x\\r\\n\\r\\nbody\\r\\n', 0)\n"
        f"{wait}"
        "print(p.helper_pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) as writer:
        assert writer.stdout is not None
        helpers = [int(pid) for pid in writer.stdout.readline().split()]
        assert helpers and not any(_gone(pid) for pid in helpers)
        writer.kill()
        writer.wait()
        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in helpers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_gone(pid) for pid in helpers)
        assert writer.stdout.read() == b""  # and nothing holds the writer's output open


def test_helper_does_not_import_the_main_script(tmp_path: Path) -> None:
    """spawn would import the program's script in the helper (the ``popvault`` console
    script imports the whole CLI): the helper starts without it."""
    import subprocess
    import sys

    marker = tmp_path / "imported"
    script = tmp_path / "prog.py"
    script.write_text(
        "import sys\n"
        f"if __name__ != '__main__':\n    open({str(marker)!r}, 'w').close()\n"
        "from popvault.app.helper import Preparer\n"
        "if __name__ == '__main__':\n"
        "    with Preparer(bytes(32), batch_count=1) as p:\n"
        "        p.submit(b'Subject: x\\r\\n\\r\\nbody\\r\\n', 0)\n"
        "        assert list(p.ready(wait=True))[0][2] is not None\n"
        "    assert __file__.endswith('prog.py')  # given back after the helper started\n"
    )
    subprocess.run([sys.executable, str(script)], check=True, timeout=60)
    assert not marker.exists()
