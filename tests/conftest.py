"""Shared fixtures: a private Dovecot for integration tests, and test markers.

``dovecot`` (session) starts one private instance (tests/support/dovecot.py) and stops it
at the end; ``dovecot_user`` (function) gives each test a fresh, empty mailbox. Without
the Dovecot binaries these fixtures fail, never skip: CI installs them (.ci/run), and a
silently skipped integration suite would hide exactly the bugs it exists to catch.
Every test under tests/integration/ is marked ``integration``.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dovecot import Dovecot, DovecotError, UserInfo

_INTEGRATION_DIR = Path(__file__).parent / "integration"
_user_numbers = itertools.count(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _private_state_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test's own state folder (the per-machine anchors, format §8.6): what one
    test's vaults leave there never meets another's."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("POPVAULT_STATE_DIR", str(state))
    return state


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A private Dovecot on 127.0.0.1 (POP3, POP3S, IMAP, IMAPS), shared by the session."""
    try:
        instance = Dovecot.start()
    except DovecotError as exc:
        pytest.fail(f"cannot start the private Dovecot for integration tests: {exc}")
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def dovecot_user(dovecot: Dovecot) -> UserInfo:
    """A fresh user with an empty INBOX and a random password, unique in the session."""
    name = f"u{next(_user_numbers):04d}{secrets.token_hex(2)}"
    return dovecot.add_user(name, secrets.token_urlsafe(12))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A skipped test hides a missing feature: report every skip as a failure."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped tests are not allowed in popvault: {report.longrepr}"
