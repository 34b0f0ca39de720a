"""The C allocator's thresholds, fixed for a process that handles messages of megabytes.

glibc's ``malloc`` serves a block of 128 KiB or more with its own ``mmap`` (given back
to the system when freed), but raises that threshold to the size of each such block
freed, up to 32 MiB: after the first few large messages, every later one (its bytes,
its decoded attachments, the pack being filled) comes from the heap, whose freed space
stays in the process as long as anything above it lives. A backup of 100,000 small
messages peaked at 193 MB in its main process; with the threshold fixed at 1 MiB and
the heap trimmed once 8 MiB at its top are free, at 175 MB in the same time
(docs/performance.md). Other C libraries, and a value the user set in the
environment (glibc's ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``), are left
as they are.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: ``mallopt`` parameters (glibc's ``malloc.h``), their values and environment names.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
SETTINGS = (
    (M_MMAP_THRESHOLD, 1 << 20, "MALLOC_MMAP_THRESHOLD_"),
    (M_TRIM_THRESHOLD, 8 << 20, "MALLOC_TRIM_THRESHOLD_"),
)


def tune() -> list[int]:
    """Fix the thresholds (on glibc, where the environment does not set them); the
    parameters set."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return []
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return [
        param
        for param, value, env in SETTINGS
        if env not in os.environ and mallopt(param, value) == 1
    ]
