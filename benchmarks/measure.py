"""Run one command and write its wall time and peak RSS as JSON (used by run_child).

Usage: ``python3 -S measure.py RESULT_FILE USER -- COMMAND...`` (USER ``-`` keeps the
current user). Why a launcher: on Linux a child's ``ru_maxrss`` starts from the RSS
of the process that forked it (the high-water mark of the parent's memory survives
exec), so a command forked straight from a benchmark process holding hundreds of MB
would report at least that. Forked from this small process instead, the floor is its
RSS (about 8 MB). Only ``os``, ``sys``, ``time`` and ``json`` are imported, and
``-S`` skips site-packages, to keep that floor low. ``ru_maxrss`` is one process's peak;
a command that starts helpers (popvault backup does) is also measured as a whole: the
summed RSS of its process tree, sampled every SAMPLE seconds.
"""

import json
import os
import sys
import time

#: Seconds between samples of the process tree's RSS.
SAMPLE = 0.05


def _session_rss_kb(session: int) -> int:
    """Resident kB of every process in ``session`` but this one: the measured command
    and whatever it started (run_child gives the launcher a session of its own)."""
    total = 0
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # field 6, the session id
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024  # field 24, rss
    return total


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
    tree_kb = 0
    while True:  # poll, sampling the RSS of the command's whole process tree meanwhile
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        tree_kb = max(tree_kb, _session_rss_kb(os.getsid(0)))
        time.sleep(SAMPLE)
    wall = time.perf_counter() - t0
    with open(result_file, "w") as f:
        json.dump(
            {
                "wall": wall,
                "maxrss_kb": usage.ru_maxrss,
                # user + system CPU of the command and the children it waited for
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "tree_rss_kb": tree_kb,
                "returncode": os.waitstatus_to_exitcode(status),
            },
            f,
        )


if __name__ == "__main__":
    main()
