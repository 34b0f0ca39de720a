"""Shared fixtures: a private Dovecot for integration tests, and test markers.

``dovecot`` (session) starts one private instance (tests/support/dovecot.py) and stops it
at the end; ``dovecot_user`` (function) gives each test a fresh, empty mailbox. Without
the Dovecot binaries these fixtures fail, never skip: CI installs them (.ci/run), and a
silently skipped integration suite would hide exactly the bugs it exists to catch.
Every test under tests/integration/ is marked ``integration``.

``seaweed`` (session) is a private SeaweedFS S3 server (tests/support/seaweedfs.py) that
accepts any credentials; ``seaweed_signed`` (session) one that checks signatures.
``s3_vault`` (function) gives a test a fresh, empty bucket on ``seaweed`` with the AWS
variables set to reach it, and returns its ``s3://`` URL. Like Dovecot, a missing
``weed`` binary fails these fixtures, never skips them.
"""

from __future__ import annotations

import itertools
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dovecot import Dovecot, DovecotError, UserInfo
from tests.support.seaweedfs import Seaweed, SeaweedError

_INTEGRATION_DIR = Path(__file__).parent / "integration"

# A suite started in the background by a script (``cmd &``) inherits SIGINT ignored, and
# so would every popvault the tests start: the Ctrl-C tests would then test the shell,
# not popvault. Python's own handler here (a handler is reset to the default on exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
_user_numbers = itertools.count(1)
_bucket_numbers = itertools.count(1)


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


def _start_seaweed(identities: dict[str, str] | None = None) -> Seaweed:
    try:
        return Seaweed.start(identities)
    except SeaweedError as exc:
        pytest.fail(f"cannot start the private SeaweedFS for S3 tests: {exc}")


@pytest.fixture(scope="session")
def seaweed() -> Iterator[Seaweed]:
    """A private SeaweedFS S3 server on 127.0.0.1 (any credentials), shared by the session."""
    instance = _start_seaweed()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def seaweed_signed() -> Iterator[Seaweed]:
    """A private SeaweedFS that checks signatures (one identity, see ``identities``)."""
    instance = _start_seaweed({"PVTESTKEY": "pv-test-secret-key-1234"})
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def s3_vault(seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty bucket on ``seaweed`` and the AWS variables to reach it: its URL.
    The bucket is deleted afterwards."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    bucket = f"pv-{next(_bucket_numbers):04d}-{secrets.token_hex(3)}"
    seaweed.create_bucket(bucket)
    yield f"s3://{bucket}"
    seaweed.delete_bucket(bucket)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A skipped test hides a missing feature: report every skip as a failure."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped tests are not allowed in popvault: {report.longrepr}"
