"""Run one command and write its wall time and peak RSS as JSON (used by run_child).

Usage: ``python3 -S measure.py RESULT_FILE USER -- COMMAND...`` (USER ``-`` keeps the
current user). Why a launcher: on Linux a child's ``ru_maxrss`` starts from the RSS
of the process that forked it (the high-water mark of the parent's memory survives
exec), so a command forked straight from a benchmark process holding hundreds of MB
would report at least that. Forked from this small process instead, the floor is its
RSS (about 8 MB). Only ``os``, ``sys``, ``time`` and ``json`` are imported, and
``-S`` skips site-packages, to keep that floor low.
"""

import json
import os
import sys
import time


def main() -> None:
    result_file, user = sys.argv[1], sys.argv[2]
    if sys.argv[3] != "--":
        raise SystemExit("usage: measure.py RESULT_FILE USER -- COMMAND...")
    argv = sys.argv[4:]
    uid = gid = -1
    if user != "-":
        import pwd

        pw = pwd.getpwnam(user)
        uid, gid = pw.pw_uid, pw.pw_gid
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            if uid >= 0:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
            os.execvp(argv[0], argv)  # noqa: S606 - the command to measure
        finally:
            os._exit(127)
    _pid, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    with open(result_file, "w") as f:
        json.dump(
            {
                "wall": wall,
                "maxrss_kb": usage.ru_maxrss,
                "returncode": os.waitstatus_to_exitcode(status),
            },
            f,
        )


if __name__ == "__main__":
    main()
