"""The S3 backend under scripted faults (tests/support/s3relay.py in front of SeaweedFS).

503 SlowDown, requests and answers cut off mid-body and stalled connections are retried
within the retry policy, and the data comes through whole; when the policy's tries or
seconds run out the error is temporary (exit 75) and names the endpoint and the
operation; a 403 or 404 is never retried. The relay's append-only policy refuses
deletions outside the lock objects with a clear error. Traffic is counted by kind.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest

from popvault.errors import AuthenticationFailed, NetworkError, TemporaryFailure
from popvault.vault.backend import ObjectNotFound
from popvault.vault.config import as_backend
from popvault.vault.s3 import S3Backend
from tests.support.s3relay import Fault, S3Relay
from tests.support.seaweedfs import Seaweed

DATA = secrets.token_bytes(3 << 20)


@pytest.fixture
def relay(seaweed: Seaweed) -> Iterator[S3Relay]:
    with S3Relay(seaweed.port) as r:
        yield r


@pytest.fixture
def backend(s3_vault: str, relay: S3Relay, monkeypatch: pytest.MonkeyPatch) -> S3Backend:
    """A backend that talks to SeaweedFS through the relay, with quick backoff."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", relay.endpoint)
    monkeypatch.setenv("POPVAULT_S3_BACKOFF", "0.02")
    # long enough that a loaded machine's slow answer is no timeout (a retry would add
    # requests the tests count); the stall test sets its own 1 s
    monkeypatch.setenv("POPVAULT_S3_READ_TIMEOUT", "15")
    return fresh(f"{s3_vault}/v")


def fresh(url: str) -> S3Backend:
    b, _ = as_backend(url)
    assert isinstance(b, S3Backend)
    return b


def outcomes(relay: S3Relay, method: str) -> list[str]:
    return [o for m, _p, o in relay.log if m == method]


def test_slowdown_is_retried(backend: S3Backend, relay: S3Relay) -> None:
    relay.add(Fault("slowdown", times=3, method="PUT"))
    backend.put("packs/00/p", DATA)
    assert outcomes(relay, "PUT") == ["slowdown"] * 3 + ["200"]
    relay.add(Fault("slowdown", times=2, method="GET"))
    assert backend.get("packs/00/p") == DATA
    assert relay.pending() == 0
    assert backend.traffic.counts["put"] == 4
    assert backend.traffic.counts["get"] == 3


def test_put_cut_mid_body_is_retried(backend: S3Backend, relay: S3Relay) -> None:
    relay.add(Fault("cut_request", times=2, method="PUT"))
    backend.put("packs/00/p", DATA)
    assert outcomes(relay, "PUT") == ["cut_request", "cut_request", "200"]
    assert fresh(backend.label).get("packs/00/p") == DATA


def test_get_cut_mid_body_is_retried(backend: S3Backend, relay: S3Relay) -> None:
    backend.put("packs/00/p", DATA)
    relay.add(Fault("cut_response", times=2, method="GET"))
    assert backend.get("packs/00/p") == DATA
    relay.add(Fault("cut_response", times=1, method="GET"))
    assert backend.get_range("packs/00/p", 4096, 1 << 20) == DATA[4096 : 4096 + (1 << 20)]
    assert outcomes(relay, "GET").count("cut_response") == 3


def test_conditional_put_whose_answer_was_lost_is_read_back(
    backend: S3Backend, relay: S3Relay
) -> None:
    """The first PUT is stored but its answer cut off; the retry meets its own object
    (412), reads it back and counts it as created. Another writer's is not ours."""
    assert backend.exclusive_create  # probed before the faults
    relay.add(Fault("cut_response", times=1, method="PUT", key="/lock"))
    assert backend.create_exclusive("lock", b"token-1") is True
    assert outcomes(relay, "PUT")[-2:] == ["cut_response", "412"]
    assert outcomes(relay, "GET")[-1] == "200"
    relay.add(Fault("cut_response", times=1, method="PUT", key="/lock"))
    assert backend.create_exclusive("lock", b"token-2") is False
    assert backend.get("lock") == b"token-1"


def test_stalled_answer_times_out_and_is_retried(
    backend: S3Backend, relay: S3Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POPVAULT_S3_READ_TIMEOUT", "1")
    b = fresh(backend.label)
    b.put("packs/00/p", DATA)
    relay.add(Fault("stall", times=1, method="GET", seconds=4))
    started = time.monotonic()
    assert b.get("packs/00/p") == DATA
    assert time.monotonic() - started < 3.5  # the read timeout (1 s) ended the stall
    relay.add(Fault("stall", times=1, method="PUT", seconds=4))
    b.put("packs/00/q", b"q")
    assert b.get("packs/00/q") == b"q"
    assert relay.injected("stall") == 2


def test_listing_pages_are_retried(backend: S3Backend, relay: S3Relay) -> None:
    for i in range(3):
        backend.put(f"index/{i}", b"")
    relay.add(Fault("slowdown", times=2, method="GET", key="/"))
    assert backend.list("index") == ["index/0", "index/1", "index/2"]
    assert backend.traffic.counts["list"] == 3


def test_budget_of_tries_ends_with_exit_75(
    backend: S3Backend, relay: S3Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "4")
    b = fresh(backend.label)
    relay.add(Fault("slowdown", times=100, method="PUT"))
    with pytest.raises(TemporaryFailure) as ei:
        b.put("packs/00/p", DATA)
    assert ei.value.exit_code == 75
    msg = ei.value.message
    assert "upload of packs/00/p" in msg and relay.endpoint in msg, msg
    assert "SlowDown; 4 tries in" in msg, msg
    assert outcomes(relay, "PUT") == ["slowdown"] * 4
    relay.faults.clear()
    relay.add(Fault("cut_response", times=100, method="GET"))
    b.put("packs/00/p", DATA)
    with pytest.raises(NetworkError) as ne:
        b.get("packs/00/p")
    assert f"cannot reach {relay.endpoint} for the download of packs/00/p" in ne.value.message
    assert "4 tries in" in ne.value.message


def test_budget_of_seconds_ends_retries(
    backend: S3Backend, relay: S3Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POPVAULT_S3_RETRY_SECONDS", "1.5")
    monkeypatch.setenv("POPVAULT_S3_BACKOFF", "0.2")
    b = fresh(backend.label)
    relay.add(Fault("slowdown", times=1000, method="HEAD"))
    started = time.monotonic()
    with pytest.raises(TemporaryFailure) as ei:
        b.size("config")
    assert time.monotonic() - started < 3
    tries = len(outcomes(relay, "HEAD"))
    assert 2 <= tries < 10, tries  # the 10 tries were not reached: the seconds ran out
    assert f"{tries} tries in" in ei.value.message


def test_403_and_404_are_not_retried(backend: S3Backend, relay: S3Relay) -> None:
    with pytest.raises(ObjectNotFound):
        backend.get("packs/00/missing")
    assert outcomes(relay, "GET") == ["404"]
    relay.deny_delete = True
    backend.put("packs/00/p", b"p")
    with pytest.raises(AuthenticationFailed) as ei:
        backend.delete("packs/00/p")
    assert ei.value.exit_code == 77
    assert "refused the deletion of packs/00/p" in ei.value.message
    assert "append-only" in ei.value.message
    assert outcomes(relay, "DELETE") == ["denied"]
    assert backend.get("packs/00/p") == b"p"


def test_append_only_still_allows_locks_and_the_probe(backend: S3Backend, relay: S3Relay) -> None:
    relay.deny_delete = True
    assert backend.exclusive_create is True  # the probe's deletion under locks/ passes
    assert backend.create_exclusive("lock", b"t")
    backend.delete("lock")
    backend.put("locks/" + "a" * 32, b"{}")
    backend.delete("locks/" + "a" * 32)
    assert backend.list("") == []
    assert "denied" not in outcomes(relay, "DELETE")


def test_traffic_by_kind(backend: S3Backend) -> None:
    backend.put("packs/00/p", DATA)
    backend.get("packs/00/p")
    backend.get_range("packs/00/p", 10, 100)
    backend.list("packs")
    backend.size("packs/00/p")
    backend.delete("packs/00/p")
    t = backend.traffic.to_json()
    assert t["by_kind"] == {
        "get": 1,
        "ranged_get": 1,
        "put": 1,
        "list": 1,
        "delete": 1,
        "head": 1,
        "other": 0,
    }
    assert t["requests"] == 6
    assert t["bytes_sent"] == len(DATA)
    assert len(DATA) + 100 < t["bytes_received"] < len(DATA) + 100 + 4096  # + the listing
