"""The S3 backend: a vault's objects in a bucket of S3-compatible storage (format §3.2).

A vault at ``s3://BUCKET[/PREFIX]`` keeps object ``name`` under the key
``PREFIX/name``. boto3 does the talking (signing, the AWS credential and endpoint chain);
it is imported only when an S3 vault is opened, so local runs and ``--help`` never load
it. Retries (5xx, SlowDown, timeouts, dropped connections, bodies cut off) are popvault's
own, within a bounded budget (s3net.py); :attr:`S3Backend.traffic` counts requests and
bytes. Every
botocore error becomes a popvault error with its documented exit code (docs/storage.md):
a missing bucket VaultNotFound (10), refused credentials AuthenticationFailed (77), an
unreachable endpoint or exhausted retries TemporaryFailure (75); secrets are never shown.

``create_exclusive`` is a PutObject with ``If-None-Match: *``. Whether the server honours
that header is probed once, when a writer first asks (:attr:`S3Backend.exclusive_create`,
read by the writer lock): a probe object under ``locks/`` (where an append-only bucket
still allows deletions) put twice, the second must be refused. Where it
is not honoured (some gateways overwrite, B2 answers 501) ``exclusive_create`` is false
and the writer lock uses leases instead (format §10.1); ``create_exclusive`` itself then
refuses (exit 1) rather than overwrite.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from popvault.errors import (
    AuthenticationFailed,
    IntegrityError,
    NetworkError,
    PopvaultError,
    TemporaryFailure,
    UsageError,
    VaultNotFound,
)
from popvault.vault.backend import MAX_OBJECT, ObjectNotFound, _check_name
from popvault.vault.s3net import (
    CONNECT_TIMEOUT,
    RetryPolicy,
    Traffic,
    retryable,
)
from popvault.vault.s3settings import S3Settings

SCHEME = "s3://"
_AUTH_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
    "AllAccessDisabled",
    "AccountProblem",
}
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
#: Where the conditional-write probe goes: beside the leases, the one folder whose
#: objects an append-only bucket lets popvault delete (docs/storage.md).
PROBE_FOLDER = "locks"

T = TypeVar("T")
#: Object names (``list`` is a method name inside the backend).
Names = list[str]


class ConditionalWritesUnsupported(PopvaultError):
    """The server ignores ``If-None-Match: *`` (or refuses it): no exclusive create."""


def is_s3_url(where: str) -> bool:
    return where[:5].lower() == SCHEME


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing "/"; "" for the bucket's root

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"


def parse_s3_url(url: str) -> S3Location:
    """``s3://BUCKET[/PREFIX]`` checked; UsageError (2) otherwise. Credentials never go
    into the URL (they come from the AWS chain), so a URL with ``user@`` is refused
    without being shown."""
    rest = url[len(SCHEME) :]
    netloc = rest.split("/", 1)[0]
    if "@" in netloc or ":" in netloc:
        raise UsageError(
            "an s3:// vault URL holds no credentials, host or port",
            hint="give credentials and the endpoint by the AWS variables (docs/storage.md)",
        )
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise UsageError("an s3:// vault URL has no query or fragment: s3://BUCKET[/PREFIX]")
    bucket = netloc
    if not 3 <= len(bucket) <= 63 or not all(c.isalnum() or c in "-._" for c in bucket):
        raise UsageError(
            f"bad bucket name {bucket!r} in the vault URL",
            hint="s3://BUCKET[/PREFIX]; bucket names have 3-63 letters, digits, '-', '.'",
        )
    prefix = rest[len(netloc) :].strip("/")
    if prefix:
        try:
            _check_name(prefix)
        except ValueError:
            raise UsageError(f"bad prefix {prefix!r} in the vault URL") from None
        if "//" in prefix or any(p.startswith(".") for p in prefix.split("/")):
            raise UsageError(f"bad prefix {prefix!r} in the vault URL")
    return S3Location(bucket.lower(), prefix)


def _is_aws(endpoint: str) -> bool:
    host = (urlsplit(endpoint).hostname or "").lower()
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")


#: The data loader all sessions of this process share: each new session would load
#: the S3 service model and endpoint data again (about 0.3 s a client, and a run makes
#: several). Sessions stay one a client: credentials and profile are read each time.
_LOADER: Any = None
_LOADER_LOCK = threading.Lock()


def _session() -> Any:
    import boto3
    import botocore.session

    global _LOADER
    core = botocore.session.get_session()
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _LOADER)
    return boto3.session.Session(botocore_session=core)


class S3Backend:
    """A vault under ``s3://BUCKET/PREFIX``; see the module docstring and format §3.2."""

    def __init__(self, location: S3Location) -> None:
        self.location = location
        self.label = location.url
        #: HTTP requests sent and bytes each way (retries included): what a run costs.
        self.traffic = Traffic()
        self._client_obj: Any = None
        self._client_lock = threading.Lock()
        self._conditional: bool | None = None
        self._policy: RetryPolicy | None = None
        #: Whether :meth:`prepare_init` created the bucket (``init`` says so).
        self.bucket_created = False
        #: Packs a writer uploads at once (vault/writer.py PackStore; the setting
        #: POPVAULT_S3_UPLOAD_CONCURRENCY or the config's [s3] upload_concurrency).
        self.settings = S3Settings.from_env()
        self.upload_concurrency = self.settings.upload_concurrency
        self.endpoint = "?"

    @property
    def requests(self) -> int:
        """HTTP requests sent so far, retries included."""
        return self.traffic.requests

    # ------------------------------------------------------------------ the client

    @property
    def _client(self) -> Any:
        with self._client_lock:
            if self._client_obj is None:
                self._client_obj = self._make_client()
            return self._client_obj

    @property
    def policy(self) -> RetryPolicy:
        if self._policy is None:
            self._policy = RetryPolicy.from_env()
        return self._policy

    def _make_client(self) -> Any:
        import botocore.exceptions
        from botocore.config import Config

        policy = self.policy
        style = self.settings.addressing

        def make(addressing: str | None) -> Any:
            config = Config(
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=policy.read_timeout,
                # one attempt per call: retries are ours (s3net.py), with a time budget
                retries={"mode": "standard", "total_max_attempts": 1},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                max_pool_connections=16,
                s3={"addressing_style": addressing} if addressing else None,
            )
            try:
                return _session().client("s3", config=config)
            except botocore.exceptions.ProfileNotFound as exc:
                raise UsageError(f"AWS profile {exc.kwargs.get('profile')!r} not found") from None
            except botocore.exceptions.BotoCoreError as exc:
                raise UsageError(f"cannot set up the S3 client: {type(exc).__name__}") from None

        client = make(style)
        if style is None and not _is_aws(client.meta.endpoint_url):
            client = make("path")
        self.endpoint = client.meta.endpoint_url
        client.meta.events.register("before-send.s3", self.traffic.on_send)
        client.meta.events.register("before-parse.s3", self.traffic.on_answer)
        return client

    def _key(self, name: str) -> str:
        _check_name(name)
        return f"{self.location.prefix}/{name}" if self.location.prefix else name

    def _call(self, op: str, name: str, fn: Callable[[Any], T]) -> T:
        """``fn(client)``, tried again on a retryable failure within the retry policy
        (s3net.py); every other failure, and the last, translated (module doc)."""
        client = self._client
        policy = self.policy
        started = time.monotonic()
        failures = 0
        while True:
            try:
                return fn(client)
            except Exception as exc:
                if not retryable(exc):
                    self._translate(exc, op, name)
                failures += 1
                wait = policy.delay(failures)
                if not policy.another(failures, time.monotonic() - started, wait):
                    self._translate(exc, op, name, (failures, time.monotonic() - started))
                time.sleep(wait)

    def _translate(
        self, exc: Exception, op: str, name: str, tried: tuple[int, float] | None = None
    ) -> NoReturn:
        import botocore.exceptions as be

        what = f"{op} of {name}" if name else op
        where = f"{self.label} at {self.endpoint}"
        after = f"; {tried[0]} tries in {tried[1]:.0f} s" if tried else ""
        if isinstance(exc, be.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in _NOT_FOUND:
                raise ObjectNotFound(f"object {name} is missing") from None
            if code == "NoSuchBucket":
                raise VaultNotFound(
                    f"no vault at {self.label}: the bucket {self.location.bucket} does not"
                    f" exist at {self.endpoint}",
                    hint="check --vault and AWS_ENDPOINT_URL, or create it with 'popvault init'",
                ) from None
            if op == "deletion" and (status == 403 or code == "AccessDenied"):
                raise AuthenticationFailed(
                    f"{self.endpoint} refused the deletion of {name} in {self.label}"
                    f" ({code or status}): the bucket is append-only for these credentials",
                    hint="backup and import never delete; prune, repair and 'key passwd'"
                    " need credentials that may delete (docs/storage.md)",
                ) from None
            if status in (401, 403) or code in _AUTH_CODES:
                raise AuthenticationFailed(
                    f"{self.endpoint} refused the credentials for the {what} in"
                    f" {self.label} ({code or status})",
                    hint="check AWS_ACCESS_KEY_ID / AWS_PROFILE and the bucket's permissions"
                    " (docs/storage.md)",
                ) from None
            if retryable(exc):
                raise TemporaryFailure(
                    f"the {what} in {where} failed ({code or status}{after})",
                    hint="the storage is busy or down; run the command again later",
                ) from None
            raise PopvaultError(f"the {what} in {where} was refused ({code or status})") from None
        if isinstance(exc, (be.NoCredentialsError, be.PartialCredentialsError)):
            raise AuthenticationFailed(
                f"no AWS credentials for {self.label}",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
                " (docs/storage.md)",
            ) from None
        if isinstance(exc, be.NoRegionError):
            raise UsageError(f"no AWS region for {self.label}", hint="set AWS_REGION") from None
        if isinstance(exc, be.SSLError):
            raise NetworkError(
                f"TLS with {self.endpoint} failed for the {what} in {self.label}",
                hint="check AWS_ENDPOINT_URL and AWS_CA_BUNDLE",
            ) from None
        if retryable(exc):
            raise NetworkError(
                f"cannot reach {self.endpoint} for the {what} in {self.label}"
                f" ({type(exc).__name__}{after})",
                hint="check the network and AWS_ENDPOINT_URL; run the command again later",
            ) from None
        if isinstance(exc, be.BotoCoreError):
            raise PopvaultError(f"the {what} in {where} failed ({type(exc).__name__})") from None
        raise exc

    # ------------------------------------------------------------------ objects

    def put(self, name: str, data: bytes | bytearray) -> None:
        key = self._key(name)
        body = bytes(data)
        _check_size(name, len(body))
        extra: dict[str, str] = {}
        if self.settings.storage_class and name.startswith("packs/"):
            # packs only: the rest is read on every open and stays in the default class
            extra["StorageClass"] = self.settings.storage_class
        self._call(
            "upload",
            name,
            lambda c: c.put_object(
                Bucket=self.location.bucket, Key=key, Body=body, ContentMD5=_md5(body), **extra
            ),
        )

    def create_exclusive(self, name: str, data: bytes) -> bool:
        key = self._key(name)
        _check_size(name, len(data))
        if not self.exclusive_create:
            self._refuse_unconditional()
        return self._put_if_absent(name, key, bytes(data))

    @property
    def exclusive_create(self) -> bool:
        """Whether the server honours ``If-None-Match: *`` (probed on first use). The
        writer lock takes a lease instead of the ``lock`` object when it does not."""
        if self._conditional is None:
            self._conditional = self.probe_conditional_writes()
        return self._conditional

    @property
    def conditional_writes(self) -> bool | None:
        """The probe's answer, once it ran (None before)."""
        return self._conditional

    def _put_if_absent(self, name: str, key: str, body: bytes) -> bool:
        """True if this call created the object. A 412 after a retry that may have
        written the object already is told apart by reading it back (a 412 to the
        first try is someone else's object: no read)."""
        import botocore.exceptions as be

        tries = 0

        def attempt(c: Any) -> bool:
            nonlocal tries
            tries += 1
            try:
                c.put_object(
                    Bucket=self.location.bucket,
                    Key=key,
                    Body=body,
                    ContentMD5=_md5(body),
                    IfNoneMatch="*",
                )
                return True
            except be.ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                if status == 412 or code == "PreconditionFailed":
                    return False
                if status == 501 or code == "NotImplemented":
                    raise _Unconditional from None
                raise

        if self._call("conditional upload", name, attempt):
            return True
        if tries == 1:
            return False
        try:
            return self.get(name) == body  # ours, from an earlier attempt
        except ObjectNotFound:
            return False

    def probe_conditional_writes(self) -> bool:
        """Whether the server refuses a second ``If-None-Match: *`` put of one key (a
        probe object under ``locks/``, deleted afterwards: an append-only bucket allows
        that). False also when it answers 501."""
        name = f"{PROBE_FOLDER}/.popvault-probe-{secrets.token_hex(8)}"
        key = self._key(name)
        try:
            if not self._put_if_absent(name, key, b"1"):
                raise PopvaultError(f"the probe object {name} in {self.label} already exists")
            second = self._put_if_absent(name, key, b"2")
        except _Unconditional:
            return False
        finally:
            self.delete(name)
        self._conditional = not second
        return self._conditional

    def _refuse_unconditional(self) -> NoReturn:
        raise ConditionalWritesUnsupported(
            f"the storage at {self.endpoint} ignores conditional writes (If-None-Match),"
            f" and cannot create an object in {self.label} exclusively",
            hint="the writer lock uses leases on such storage (docs/storage.md)",
        )

    def get(self, name: str) -> bytes:
        key = self._key(name)
        return self._read(name, lambda c: c.get_object(Bucket=self.location.bucket, Key=key))

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        key = self._key(name)
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")
        if length == 0:
            self.size(name)  # a missing object is still ObjectNotFound
            return b""
        rng = f"bytes={offset}-{offset + length - 1}"
        try:
            data = self._read(
                name,
                lambda c: c.get_object(Bucket=self.location.bucket, Key=key, Range=rng),
                ranged=True,
            )
        except _RangePastEnd:
            return b""
        return data[:length]

    def _read(self, name: str, request: Callable[[Any], Any], *, ranged: bool = False) -> bytes:
        """One GET, its body read in full; a body cut off mid-read or stalled is a failed
        try like any other (the retry policy's). Objects over MAX_OBJECT are refused
        unread."""
        import botocore.exceptions as be

        def attempt(c: Any) -> bytes:
            try:
                resp = request(c)
            except be.ClientError as exc:
                if ranged and exc.response.get("Error", {}).get("Code") == "InvalidRange":
                    raise _RangePastEnd from None
                raise
            body = resp["Body"]
            try:
                total = _total_size(resp)
                if total > MAX_OBJECT:
                    raise IntegrityError(
                        f"object {name} is {total} bytes, larger than any object popvault"
                        f" writes ({MAX_OBJECT})"
                    )
                data = bytes(body.read())
            finally:
                body.close()
            self.traffic.got(len(data))
            return data

        return self._call("download", name, attempt)

    def _head(self, name: str) -> dict[str, Any]:
        key = self._key(name)
        head: dict[str, Any] = self._call(
            "look-up", name, lambda c: c.head_object(Bucket=self.location.bucket, Key=key)
        )
        return head

    def size(self, name: str) -> int:
        return int(self._head(name)["ContentLength"])

    def exists(self, name: str) -> bool:
        try:
            self._head(name)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str) -> Names:
        return sorted(self.sizes(prefix))

    def sizes(self, prefix: str) -> dict[str, int]:
        """Name -> size of every object under ``prefix``, from the listing itself (no
        HEAD per object: ``stats`` and ``check --read-data`` count bytes this way)."""
        folder = prefix.strip("/")
        start = f"{self.location.prefix}/" if self.location.prefix else ""
        found = self._list_keys(start + (f"{folder}/" if folder else ""), start)
        return {n: v for n, v in found.items() if not n.rsplit("/", 1)[-1].startswith(".")}

    def _list_keys(self, key_prefix: str, strip: str, limit: int | None = None) -> dict[str, int]:
        """Every key under ``key_prefix`` (``strip`` cut off) with its size, one
        ListObjectsV2 page at a time, each page tried again on its own (a long listing
        is not restarted)."""
        out: dict[str, int] = {}
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": key_prefix}
            if token:
                args["ContinuationToken"] = token
            page: dict[str, Any] = self._call(
                "listing", key_prefix or "/", functools.partial(_list_page, args=args)
            )
            for item in page.get("Contents", ()):
                key = str(item["Key"])
                if key.startswith(strip) and not key.endswith("/"):
                    out[key[len(strip) :]] = int(item.get("Size", 0))
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            if not token or (limit is not None and len(out) >= limit):
                return out

    def delete(self, name: str) -> None:
        key = self._key(name)
        try:
            self._call(
                "deletion", name, lambda c: c.delete_object(Bucket=self.location.bucket, Key=key)
            )
        except ObjectNotFound:
            return

    def cleanup_temporary(self) -> int:
        return 0  # a PutObject is atomic: nothing half-written is ever visible

    # ------------------------------------------------------------------ init

    def prepare_init(self) -> bool:
        """Before ``init``: create the bucket if it is missing (True if it was created;
        AuthenticationFailed if the credentials may not), refuse a prefix that already
        holds objects (a vault or anything else: UsageError, nothing written), and
        probe conditional writes."""
        import botocore.exceptions as be

        bucket = self.location.bucket

        def missing(c: Any) -> bool:
            try:
                c.head_bucket(Bucket=bucket)
            except be.ClientError as exc:
                meta = exc.response.get("ResponseMetadata", {})
                if int(meta.get("HTTPStatusCode") or 0) == 404:
                    return True
                raise
            return False

        created = self._call("look-up of the bucket", "", missing)
        if created:
            self._call("creation of the bucket", "", lambda c: c.create_bucket(Bucket=bucket))
        start = f"{self.location.prefix}/" if self.location.prefix else ""
        found = [
            n
            for n in self._list_keys(start, start, limit=1)
            if not n.rsplit("/", 1)[-1].startswith(".")
        ]
        if found:
            held = "a vault" if self.exists("config") else "objects that are not a vault"
            raise UsageError(
                f"{self.label} already holds {held}; nothing was written",
                hint="choose a new bucket or an empty prefix: s3://BUCKET/PREFIX",
            )
        self._conditional = self.probe_conditional_writes()
        self.bucket_created = created
        return created


class _Unconditional(Exception):
    """The server refused a conditional put as not implemented (501)."""


class _RangePastEnd(Exception):
    """A ranged GET starting at or past the end (416)."""


def _list_page(client: Any, args: dict[str, Any]) -> dict[str, Any]:
    page: dict[str, Any] = client.list_objects_v2(**args)
    return page


def _check_size(name: str, size: int) -> None:
    if size > MAX_OBJECT:
        raise PopvaultError(
            f"object {name} is {size} bytes, larger than any object popvault writes ({MAX_OBJECT})"
        )


def _total_size(resp: dict[str, Any]) -> int:
    """The whole object's size: from Content-Range (``bytes 0-9/1234``) of a ranged
    answer, else Content-Length."""
    crange = str(resp.get("ContentRange") or "")
    if "/" in crange:
        tail = crange.rsplit("/", 1)[1]
        if tail.isdigit():
            return int(tail)
    return int(resp.get("ContentLength") or 0)


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
