"""The S3 backend's network policy: which failures are retried, how long, and what a run
costs in requests and bytes (format §3.2, docs/storage.md "Retries").

botocore's own retries are switched off (one attempt per call) because they cannot do
what a backup needs: a time budget for the whole request, the same budget for a GET whose
body is cut off mid-read (botocore never retries a body read), and one count of tries in
the error that ends it. :class:`RetryPolicy` retries 500/502/503/504, ``SlowDown`` and
other throttling answers, timeouts (also a stalled connection: the read timeout) and
dropped connections (also mid-body, on a PUT or a GET), with exponential backoff and
jitter, up to ``tries`` tries and ``seconds`` after the first; a 4xx answer (403, 404,
bad credentials, a refused precondition) is never retried. Every object popvault puts is
content-named or its own (a lock, a lease), so repeating a PUT is always safe; a
conditional PUT retried after an ambiguous failure is told apart by reading it back
(s3.py).

:class:`Traffic` counts what was sent: requests by kind (GET, ranged GET, PUT, LIST,
DELETE, HEAD, other), retries included, and bytes sent (request bodies) and received
(response bodies).
"""

from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from popvault.errors import UsageError

#: Tries of one request, retries included (``AWS_MAX_ATTEMPTS`` overrides).
MAX_ATTEMPTS = 10
#: No retry starts later than this after a request's first try (``POPVAULT_S3_RETRY_SECONDS``).
RETRY_SECONDS = 300.0
#: The first wait before a retry; each later one doubles, up to BACKOFF_CAP
#: (``POPVAULT_S3_BACKOFF``).
BACKOFF = 0.5
BACKOFF_CAP = 30.0
CONNECT_TIMEOUT = 10.0
#: Seconds a read may wait for the server's next bytes (``POPVAULT_S3_READ_TIMEOUT``):
#: a stalled connection ends after this and is retried.
READ_TIMEOUT = 60.0

TRIES_ENV = "AWS_MAX_ATTEMPTS"
SECONDS_ENV = "POPVAULT_S3_RETRY_SECONDS"
BACKOFF_ENV = "POPVAULT_S3_BACKOFF"
READ_TIMEOUT_ENV = "POPVAULT_S3_READ_TIMEOUT"

#: Error codes worth another try whatever their status.
RETRY_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
    "InternalError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
    "TooManyRequestsException",
}
RETRY_STATUS = {429, 500, 502, 503, 504}

KINDS = ("get", "ranged_get", "put", "list", "delete", "head", "other")


def _env_number(name: str, default: float, low: float) -> float:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name} is not a number: {raw!r}") from None
    if value < low:
        raise UsageError(f"{name} must be at least {low:g}")
    return value


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one request is tried."""

    tries: int = MAX_ATTEMPTS
    seconds: float = RETRY_SECONDS
    backoff: float = BACKOFF
    read_timeout: float = READ_TIMEOUT

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """The defaults, overridden by the variables of docs/storage.md; UsageError (2)
        for a value that is not a number or out of range."""
        return cls(
            tries=int(_env_number(TRIES_ENV, MAX_ATTEMPTS, 1)),
            seconds=_env_number(SECONDS_ENV, RETRY_SECONDS, 0),
            backoff=_env_number(BACKOFF_ENV, BACKOFF, 0),
            read_timeout=_env_number(READ_TIMEOUT_ENV, READ_TIMEOUT, 0.1),
        )

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failed try: exponential with "equal
        jitter" (half fixed, half random), so waits always grow and racing clients
        spread out."""
        step = min(BACKOFF_CAP, self.backoff * 2.0 ** (failures - 1))
        return step / 2 + random.uniform(0, step / 2)

    def another(self, failures: int, elapsed: float, wait: float) -> bool:
        """Whether a further try starts after ``failures`` failed ones, ``elapsed``
        seconds after the first began, waiting ``wait`` first."""
        return failures < self.tries and elapsed + wait <= self.seconds


def retryable(exc: BaseException) -> bool:
    """Whether a failed try is worth repeating (see the module docstring)."""
    import botocore.exceptions as be

    if isinstance(exc, be.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status in RETRY_STATUS or code in RETRY_CODES
    if isinstance(exc, be.SSLError):
        return False  # a refused certificate stays refused
    return isinstance(
        exc,
        (
            be.HTTPClientError,  # connection refused, reset, closed; timeouts
            be.ConnectionError,  # no connection at all: EndpointConnectionError, connect timeout
            be.ResponseStreamingError,  # a body cut off mid-read
            be.IncompleteReadError,
        ),
    )


def kind_of(method: str, url: str, headers: Any) -> str:
    """The kind of one HTTP request, for :class:`Traffic`."""
    method = method.upper()
    if method == "GET":
        query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        if "list-type" in query or (urlsplit(url).path.count("/") <= 1 and "prefix" in query):
            return "list"
        return "ranged_get" if "Range" in headers else "get"
    return {"PUT": "put", "DELETE": "delete", "HEAD": "head"}.get(method, "other")


class Traffic:
    """Requests by kind and bytes each way, safe to count from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(KINDS, 0)
        self.sent = 0
        self.received = 0

    def request(self, kind: str, body_bytes: int) -> None:
        with self._lock:
            self.counts[kind] += 1
            self.sent += body_bytes

    def got(self, n: int) -> None:
        with self._lock:
            self.received += n

    def on_send(self, request: Any = None, **_kwargs: Any) -> None:
        """botocore's ``before-send`` event: one request, of its kind and body size."""
        if request is None:
            self.request("other", 0)
            return
        kind = kind_of(str(request.method), str(request.url), request.headers)
        self.request(kind, body_size(request.body, request.headers))

    def on_answer(self, response_dict: Any = None, **_kwargs: Any) -> None:
        """botocore's ``before-parse`` event: bodies it parses (listings, errors); object
        bodies are counted by the reader (:meth:`got`)."""
        body = (response_dict or {}).get("body")
        if isinstance(body, (bytes, bytearray)):
            self.got(len(body))

    @property
    def requests(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        """``{"requests": N, "by_kind": {...}, "bytes_sent": N, "bytes_received": N}``."""
        with self._lock:
            return {
                "requests": sum(self.counts.values()),
                "by_kind": dict(self.counts),
                "bytes_sent": self.sent,
                "bytes_received": self.received,
            }


def body_size(body: Any, headers: Any) -> int:
    """Bytes of a request body as sent (bytes, a file-like, or Content-Length)."""
    if body is None:
        return 0
    if isinstance(body, (bytes, bytearray, memoryview)):
        return len(body)
    try:
        return int(headers.get("Content-Length") or 0)
    except (TypeError, ValueError):
        return 0


def storage_traffic(vault: object) -> dict[str, Any] | None:
    """What a Vault's storage requests cost so far: for an S3 vault its
    :class:`Traffic` as JSON (docs/cli.md, "storage in reports"); None for a folder."""
    traffic = getattr(getattr(vault, "backend", None), "traffic", None)
    return traffic.to_json() if isinstance(traffic, Traffic) else None
