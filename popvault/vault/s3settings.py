"""The few popvault-specific settings of an S3 vault (docs/storage.md): the storage
class of packs, how many packs are uploaded at once, and the addressing style.

Each comes from an environment variable; the configuration file's ``[s3]`` table sets
the same variables for its own vault (``popvault.app.config.s3_environment``) unless
they are set already. Checked here once for both, without importing boto3.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from popvault.errors import UsageError

STORAGE_CLASS_ENV = "POPVAULT_S3_STORAGE_CLASS"
CONCURRENCY_ENV = "POPVAULT_S3_UPLOAD_CONCURRENCY"
ADDRESSING_ENV = "POPVAULT_S3_ADDRESSING"
#: Packs uploaded at once unless set: enough to fill a home uplink, bounded memory
#: (each pack in flight is held whole, up to the pack size).
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 32
ADDRESSING = ("path", "virtual", "auto")
#: Classes whose objects cannot be read without a restore request first: a vault must
#: be readable at any time (check, restore, and every backup's read-back).
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
_CLASS = re.compile(r"[A-Z][A-Z0-9_]{0,39}")


def check_s3_setting(key: str, value: object) -> str | None:
    """What is wrong with ``value`` for setting ``key`` (None: nothing)."""
    if key == "storage_class":
        if not isinstance(value, str) or not _CLASS.fullmatch(value):
            return "storage_class must be a storage class name such as STANDARD_IA"
        if value in ARCHIVE_CLASSES:
            return (
                f"storage_class {value} cannot be read back without a restore request;"
                " use STANDARD, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING or GLACIER_IR"
            )
        return None
    if key == "upload_concurrency":
        if isinstance(value, bool) or not isinstance(value, int):
            return "upload_concurrency must be an integer"
        if not 1 <= value <= MAX_CONCURRENCY:
            return f"upload_concurrency must be between 1 and {MAX_CONCURRENCY}"
        return None
    if key == "addressing":
        if value not in ADDRESSING:
            return "addressing must be path, virtual or auto"
        return None
    return f"unknown setting {key}"


@dataclass(frozen=True)
class S3Settings:
    """The settings in effect (from the environment)."""

    #: For packs only; None: the bucket's default. Everything else is read on every
    #: open and stays in the default class.
    storage_class: str | None = None
    upload_concurrency: int = DEFAULT_CONCURRENCY
    #: None: path-style for a custom endpoint, botocore's choice on AWS.
    addressing: str | None = None

    @classmethod
    def from_env(cls) -> S3Settings:
        """UsageError (exit 2) naming the variable for a bad value."""
        storage = _env(STORAGE_CLASS_ENV)
        concurrency = _env(CONCURRENCY_ENV)
        addressing = _env(ADDRESSING_ENV)
        number = DEFAULT_CONCURRENCY
        if concurrency is not None:
            try:
                number = int(concurrency)
            except ValueError:
                raise UsageError(f"{CONCURRENCY_ENV} must be an integer") from None
        for var, key, value in (
            (STORAGE_CLASS_ENV, "storage_class", storage),
            (CONCURRENCY_ENV, "upload_concurrency", number),
            (ADDRESSING_ENV, "addressing", addressing.lower() if addressing else None),
        ):
            if value is not None and (problem := check_s3_setting(key, value)):
                raise UsageError(f"{var}: {problem}")
        return cls(storage, number, addressing.lower() if addressing else None)


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None
