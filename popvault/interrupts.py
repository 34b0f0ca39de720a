"""Interrupts as a clean stop: SIGINT, SIGTERM and SIGHUP, at any instant.

The ``popvault`` command installs :func:`handlers`. A signal then raises
:class:`Interrupted` in the main thread (Python runs signal handlers there only), so a
blocking read or wait ends at once, and the ``finally`` blocks on the way out commit what
is whole, stop the helper process and release the writer lock. Code that must not be
torn in the middle (a vault's pending state between two consistent points: a blob queued
but its frame not yet in a pack, a pack written but not yet listed) runs inside
:func:`critical`: a signal arriving there is held and raised when the outermost section
ends, after the state is consistent again. Threads other than the main one never receive
the exception; they stop at their next :func:`checkpoint`.

:class:`Interrupted` derives from ``BaseException``, like ``KeyboardInterrupt``: the
``except Exception`` and ``except PopvaultError`` clauses that turn one account's or
one message's failure into a report must not turn an interrupt into "continue with the
next one". Its exit code is 128 + the signal number (130 SIGINT, 143 SIGTERM, 129
SIGHUP), as shells report a process killed by that signal.

A second signal while the first is being handled abandons what the first one finishes
(the commit in progress is atomic: it either happens whole or not at all); a third one
while a critical section holds a signal back ends the process by the signal's default
action (nothing in a critical section leaves the vault unreadable; a lock left by a dead
process is broken by the next writer on the same host).

Library users who install no handlers keep Python's defaults (``KeyboardInterrupt``,
which the vault also survives: a change torn by it marks the open vault broken, so it is
never committed); :func:`critical` then costs a counter.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

#: The signals that stop a run cleanly.
SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """The run was stopped by a signal; ``exit_code`` is 128 + its number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        try:
            self.signal_name = signal.Signals(signum).name
        except ValueError:
            self.signal_name = f"signal {signum}"
        super().__init__(f"interrupted by {self.signal_name}")


class _State:
    def __init__(self) -> None:
        self.depth = 0  # critical sections the main thread is in
        self.held: int | None = None  # a signal that arrived inside one
        self.requested: int | None = None  # the first signal of this run
        self.early: int | None = None  # a signal that arrived while starting up
        self.starting = False  # between hold_during_start() and handlers()
        self.retry: int | None = None  # a signal to raise again (it met a finalizer)


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    first = _state.requested is None
    if first:
        _state.requested = signum
    if _state.depth > 0:
        if _state.held is not None:
            # a third signal while one is held: the user insists; let the next one kill
            signal.signal(signum, signal.SIG_DFL)
        _state.held = signum
        return
    if frame is not None and _in_finalizer(frame):
        # Python ignores (and prints) an exception raised in a finalizer or a weakref
        # callback: the interrupt would be lost. Raise it a moment later instead.
        _state.retry = signum
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, RETRY_DELAY)
        return
    raise Interrupted(signum)


#: Seconds before an interrupt that landed in a finalizer is raised again.
RETRY_DELAY = 0.01
_FINALIZER_FILES = ("weakref.py", "_weakrefset.py")


def _in_finalizer(frame: FrameType) -> bool:
    """Whether ``frame`` runs code that Python calls from a finalizer or a weakref
    callback (``__del__``, the weakref module's callbacks), where an exception is lost."""
    code = frame.f_code
    return code.co_name == "__del__" or code.co_filename.endswith(_FINALIZER_FILES)


def _alarm(_signum: int, frame: FrameType | None) -> None:
    signum, _state.retry = _state.retry, None
    if signum is not None:
        _state.requested = None  # counted again by the handler
        _handler(signum, frame)


def _early(signum: int, _frame: FrameType | None) -> None:
    if _state.starting and _state.early is None:
        _state.early = signum


def hold_during_start() -> None:
    """Note SIGINT, SIGTERM and SIGHUP instead of acting on them until :func:`handlers`
    takes over (which then raises :class:`Interrupted` at once): called first thing by
    the command's entry point, so that a signal while the program's modules load ends
    it cleanly instead of with a traceback. After :func:`handlers` ends, this holder is
    back: a signal while the finished run exits changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    _state.starting = True
    for s in SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, _early)


def block_until_exit() -> None:
    """Block SIGINT, SIGTERM and SIGHUP for the rest of the process (its last step)."""
    if threading.current_thread() is threading.main_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


@contextlib.contextmanager
def handlers() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`Interrupted` while the block runs
    (main thread only); the previous handlers are restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (*SIGNALS, signal.SIGALRM)}
    _state.requested = None
    _state.held = None
    _state.retry = None
    try:
        for s in SIGNALS:
            # a signal the parent process chose to ignore (nohup) stays ignored
            if previous[s] is not signal.SIG_IGN:
                signal.signal(s, _handler)
        early, _state.early = _state.early, None
        _state.starting = False
        if early is not None:
            _state.requested = early
            raise Interrupted(early)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _state.retry = None
        _state.requested = None  # a later run in this process (a library) starts clean
        for s, h in previous.items():
            # the command's entry point keeps holding (and ignoring) a signal that comes
            # after the run, while it exits with the run's own code
            signal.signal(s, h)


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """Hold signals back while the block runs (see the module doc); re-entrant. Other
    threads run the block as it is: signals never interrupt them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0 and _state.held is not None:
            signum, _state.held = _state.held, None
            raise Interrupted(signum)


def requested() -> int | None:
    """The signal that asked this run to stop, if one did."""
    return _state.requested


def checkpoint() -> None:
    """Raise :class:`Interrupted` if a stop was requested; for threads, at safe points."""
    if _state.requested is not None:
        raise Interrupted(_state.requested)
