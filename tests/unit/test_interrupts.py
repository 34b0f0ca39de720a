"""Signals as a clean stop (popvault.interrupts), with real signals sent to this process.

Outside a critical section a signal raises Interrupted at once; inside one it is held and
raised when the outermost section ends; a signal during start-up is raised as soon as the
handlers take over; the handlers that were there before come back afterwards.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from popvault import interrupts
from popvault.interrupts import Interrupted


def _signal(signum: int = signal.SIGINT) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # the handler runs at the next bytecode boundary of this thread


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_a_signal_raises_interrupted_with_its_exit_code(signum: int, code: int) -> None:
    with pytest.raises(Interrupted) as info, interrupts.handlers():
        _signal(signum)
        pytest.fail("the signal did not interrupt")
    assert info.value.exit_code == code
    assert info.value.signal_name == signal.Signals(signum).name


def test_interrupted_is_not_an_exception() -> None:
    """`except Exception` (one account's or one message's failure) must not swallow it."""
    assert not issubclass(Interrupted, Exception)


def test_a_critical_section_holds_the_signal_until_it_ends() -> None:
    steps: list[str] = []
    with pytest.raises(Interrupted), interrupts.handlers():
        with interrupts.critical():
            _signal()
            steps.append("after the signal, inside")
            assert interrupts.requested() == signal.SIGINT
            with interrupts.critical():  # nested: still held at the inner end
                steps.append("inner")
            steps.append("after the inner section")
        steps.append("never")
    assert steps == ["after the signal, inside", "inner", "after the inner section"]
    assert interrupts.requested() is None  # cleared with the handlers


def test_a_section_that_fails_still_raises_the_held_signal() -> None:
    with pytest.raises(Interrupted) as info, interrupts.handlers():
        with interrupts.critical():
            _signal()
            raise ValueError("torn")
    assert isinstance(info.value.__context__, ValueError)


def test_a_third_signal_in_a_critical_section_is_left_to_the_default_action() -> None:
    """The user insists: the second held signal resets the handler, so the next one
    would end the process (checked on the disposition, not by dying here)."""
    with pytest.raises(Interrupted), interrupts.handlers():
        with interrupts.critical():
            _signal()
            assert signal.getsignal(signal.SIGINT) is not signal.SIG_DFL
            _signal()
            assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL


def test_the_previous_handlers_come_back() -> None:
    before = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    with interrupts.handlers():
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in interrupts.SIGNALS} == before


def test_an_ignored_signal_stays_ignored() -> None:
    """``nohup popvault backup``: SIGHUP was ignored by the caller and must stay so."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with interrupts.handlers():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            _signal(signal.SIGHUP)  # nothing happens
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_signal_during_start_up_is_raised_when_the_handlers_take_over() -> None:
    before = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    try:
        interrupts.hold_during_start()
        _signal(signal.SIGTERM)  # held: loading modules goes on
        with pytest.raises(Interrupted) as info, interrupts.handlers():
            pytest.fail("the held signal was not raised")
        assert info.value.exit_code == 143
        # after the run the holder is back: a late signal cannot change the exit code
        assert signal.getsignal(signal.SIGTERM) is interrupts._early
        _signal(signal.SIGTERM)
        assert interrupts.requested() is None  # ignored: a next run here starts clean
        interrupts.checkpoint()  # does not raise
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def test_other_threads_stop_at_their_checkpoint() -> None:
    seen: list[BaseException] = []

    def worker() -> None:
        try:
            while True:
                interrupts.checkpoint()
                time.sleep(0.01)
        except Interrupted as exc:
            seen.append(exc)

    with pytest.raises(Interrupted), interrupts.handlers():
        t = threading.Thread(target=worker)
        t.start()
        try:
            with interrupts.critical():
                _signal()
        finally:
            t.join(5)
    assert not t.is_alive()
    assert len(seen) == 1 and isinstance(seen[0], Interrupted)


def test_critical_is_a_no_op_outside_the_main_thread() -> None:
    """Signals never interrupt other threads; their sections must not hold the main
    thread's signal back."""
    done = threading.Event()

    def worker() -> None:
        with interrupts.critical():
            done.wait(5)

    with pytest.raises(Interrupted), interrupts.handlers():
        t = threading.Thread(target=worker)
        t.start()
        try:
            time.sleep(0.05)
            _signal()
        finally:
            done.set()
            t.join(5)


class _Finalized:
    """Calls the handler from ``__del__``, as a signal landing in a finalizer would."""

    def __del__(self) -> None:
        interrupts._handler(signal.SIGINT, sys._getframe())


def test_a_signal_in_a_finalizer_is_raised_a_moment_later() -> None:
    """An exception in ``__del__`` or a weakref callback is printed and lost ("Exception
    ignored in ..."): the interrupt must not be. It comes a moment later, outside."""
    steps: list[str] = []
    with pytest.raises(Interrupted) as info, interrupts.handlers():
        _Finalized()  # collected at once: the signal "arrives" in its __del__
        steps.append("the finalizer returned")
        time.sleep(1.0)  # the retry lands here
        steps.append("never")
    assert steps == ["the finalizer returned"]
    assert info.value.exit_code == 130
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL  # put back
