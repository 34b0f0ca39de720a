"""The S3 retry policy and request kinds (popvault/vault/s3net.py), without a server."""

from __future__ import annotations

import pytest

from popvault.errors import UsageError
from popvault.vault.s3net import (
    BACKOFF_CAP,
    RetryPolicy,
    Traffic,
    body_size,
    kind_of,
    retryable,
)


def test_waits_grow_with_jitter_up_to_the_cap() -> None:
    p = RetryPolicy(backoff=0.5)
    for n in range(1, 12):
        step = min(BACKOFF_CAP, 0.5 * 2 ** (n - 1))
        waits = [p.delay(n) for _ in range(200)]
        assert all(step / 2 <= w <= step for w in waits), (n, min(waits), max(waits))
        assert len(set(waits)) > 150  # jittered, not one fixed value


def test_tries_and_seconds_both_bound_the_retries() -> None:
    p = RetryPolicy(tries=3, seconds=10.0)
    assert p.another(1, 0.0, 1.0) and p.another(2, 5.0, 1.0)
    assert not p.another(3, 0.0, 0.0)  # the third try was the last
    assert not p.another(1, 9.5, 1.0)  # the wait would end past the budget


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RetryPolicy.from_env() == RetryPolicy()
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "4")
    monkeypatch.setenv("POPVAULT_S3_RETRY_SECONDS", "30")
    monkeypatch.setenv("POPVAULT_S3_BACKOFF", "0.1")
    monkeypatch.setenv("POPVAULT_S3_READ_TIMEOUT", "5")
    assert RetryPolicy.from_env() == RetryPolicy(4, 30.0, 0.1, 5.0)
    monkeypatch.setenv("POPVAULT_S3_BACKOFF", "soon")
    with pytest.raises(UsageError, match="POPVAULT_S3_BACKOFF is not a number") as ei:
        RetryPolicy.from_env()
    assert ei.value.exit_code == 2
    monkeypatch.setenv("POPVAULT_S3_BACKOFF", "0.1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "0")
    with pytest.raises(UsageError, match="AWS_MAX_ATTEMPTS must be at least 1"):
        RetryPolicy.from_env()


def _client_error(status: int, code: str) -> Exception:
    from botocore.exceptions import ClientError

    err: Exception = ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"
    )
    return err


def test_what_is_retried() -> None:
    import botocore.exceptions as be

    for status, code in [(503, "SlowDown"), (500, "InternalError"), (502, ""), (429, ""),
                         (400, "RequestTimeout"), (200, "SlowDown")]:  # fmt: skip
        assert retryable(_client_error(status, code)), (status, code)
    for status, code in [(403, "AccessDenied"), (404, "NoSuchKey"), (412, "PreconditionFailed"),
                         (400, "BadDigest"), (501, "NotImplemented")]:  # fmt: skip
        assert not retryable(_client_error(status, code)), (status, code)
    assert retryable(be.EndpointConnectionError(endpoint_url="http://x"))
    assert retryable(be.ConnectionClosedError(endpoint_url="http://x"))
    assert retryable(be.ReadTimeoutError(endpoint_url="http://x"))
    assert retryable(be.ResponseStreamingError(error="cut"))
    assert not retryable(be.SSLError(endpoint_url="http://x", error="bad cert"))
    assert not retryable(be.NoCredentialsError())
    assert not retryable(ValueError("x"))


def test_request_kinds_and_traffic() -> None:
    base = "http://h/bucket"
    assert kind_of("GET", f"{base}?list-type=2&prefix=v%2Fpacks%2F", {}) == "list"
    assert kind_of("GET", f"{base}/v/packs/ab/abcd", {}) == "get"
    assert kind_of("GET", f"{base}/v/packs/ab/abcd", {"Range": "bytes=0-9"}) == "ranged_get"
    assert kind_of("put", f"{base}/v/config", {}) == "put"
    assert kind_of("HEAD", f"{base}/v/config", {}) == "head"
    assert kind_of("DELETE", f"{base}/v/lock", {}) == "delete"
    assert kind_of("POST", f"{base}?delete", {}) == "other"
    assert body_size(b"abc", {}) == 3
    assert body_size(None, {}) == 0
    assert body_size(object(), {"Content-Length": "12"}) == 12
    t = Traffic()
    t.request("put", 10)
    t.request("get", 0)
    t.got(7)
    assert t.requests == 2
    assert t.to_json() == {
        "requests": 2,
        "by_kind": {
            "get": 1,
            "ranged_get": 0,
            "put": 1,
            "list": 0,
            "delete": 0,
            "head": 0,
            "other": 0,
        },
        "bytes_sent": 10,
        "bytes_received": 7,
    }
