"""Storage backends: where the vault's immutable named objects live (docs/format.md §3).

The vault talks to storage only through :class:`Backend`: put, get, list and delete of
write-once objects named by ``/``-separated paths such as ``packs/3f/3fa2...``. A put is
durable when it returns (local backend: temporary file, fsync, rename, directory fsync).
:class:`LocalBackend` is the default; :class:`MemoryBackend` serves unit tests. Every
backend passes ``tests/unit/vault/test_backend_conformance.py``.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from popvault.errors import IntegrityError, PopvaultError
from popvault.fsync import fsync_dir

TMP_PREFIX = ".tmp-"
#: No object popvault writes is near this size (packs are about 8 MiB, a commit's index
#: segment a few MiB): a larger one is damage or tampering, and is never read whole.
MAX_OBJECT = 256 << 20

#: Called before every durable step of a local put: (step, object name). Steps are
#: "write", "fsync", "rename", "fsync-dir". Fault-injection tests raise from it.
FaultHook = Callable[[str, str], None]


class ObjectNotFound(PopvaultError):
    """The named object does not exist in the backend."""


class DiskFull(PopvaultError):
    """The storage device is full; nothing was committed."""


class Backend(Protocol):
    """Immutable named objects. Names use ``/`` and never start with ``.``."""

    def put(self, name: str, data: bytes | bytearray) -> None:
        """Store ``data`` under ``name``; durable on return. Retry-safe."""

    def create_exclusive(self, name: str, data: bytes) -> bool:
        """Store ``data`` only if ``name`` does not exist; False if it does."""

    def get(self, name: str) -> bytes:
        """The whole object; raises ObjectNotFound."""

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (fewer only at the end of the object)."""

    def size(self, name: str) -> int:
        """The object's size in bytes; raises ObjectNotFound."""

    def exists(self, name: str) -> bool:
        """Whether the object exists."""

    def list(self, prefix: str) -> list[str]:
        """Names of all objects under the folder ``prefix`` (recursive), sorted."""

    def delete(self, name: str) -> None:
        """Remove the object; no error when it is already gone."""

    def cleanup_temporary(self) -> int:
        """Remove leftovers of interrupted puts; returns how many were removed."""


def _check_name(name: str) -> None:
    if not name or name.startswith("/") or ".." in name.split("/") or "\\" in name:
        raise ValueError(f"bad object name {name!r}")


def total_size(backend: Backend, prefix: str) -> int:
    """Bytes of every object under ``prefix``: from the listing where the backend gives
    sizes there (S3: no HEAD per object), else one size query an object."""
    sizes = getattr(backend, "sizes", None)
    if callable(sizes):
        return sum(int(v) for v in sizes(prefix).values())
    return sum(backend.size(n) for n in backend.list(prefix))


class LocalBackend:
    """A directory on a local file system. See docs/format.md §3.1 for durability."""

    def __init__(self, root: Path, *, fault_hook: FaultHook | None = None) -> None:
        self.root = Path(root)
        self.fault_hook = fault_hook

    def _hook(self, step: str, name: str) -> None:
        if self.fault_hook is not None:
            self.fault_hook(step, name)

    def _path(self, name: str) -> Path:
        _check_name(name)
        return self.root / name

    def _fsync_dir(self, path: Path, name: str) -> None:
        self._hook("fsync-dir", name)
        fsync_dir(path)

    def _ensure_dir(self, directory: Path, name: str) -> None:
        if directory.is_dir():
            return
        missing: list[Path] = []
        d = directory
        while not d.is_dir():
            missing.append(d)
            d = d.parent
        for m in reversed(missing):
            try:
                m.mkdir(mode=0o700)
            except FileExistsError:
                pass
            self._fsync_dir(m.parent, name)

    def _write_tmp(self, name: str, data: bytes | bytearray) -> Path:
        path = self._path(name)
        try:
            self._ensure_dir(path.parent, name)
        except OSError as exc:
            _raise_os(exc, name)
            raise
        tmp = path.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                self._hook("write", name)
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                self._hook("fsync", name)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            _raise_os(exc, name)
            raise
        return tmp

    def put(self, name: str, data: bytes | bytearray) -> None:
        path = self._path(name)
        tmp = self._write_tmp(name, data)
        try:
            self._hook("rename", name)
            os.replace(tmp, path)
        except BaseException as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            _raise_os(exc, name)
            raise
        try:
            self._fsync_dir(path.parent, name)
        except OSError as exc:
            _raise_os(exc, name)
            raise

    def create_exclusive(self, name: str, data: bytes) -> bool:
        path = self._path(name)
        tmp = self._write_tmp(name, data)
        try:
            self._hook("rename", name)
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            _raise_os(exc, name)
            raise
        finally:
            try:
                tmp.unlink()
            except OSError:
                pass
        try:
            self._fsync_dir(path.parent, name)
        except OSError as exc:
            _raise_os(exc, name)
            raise
        return True

    def _regular(self, name: str) -> Path:
        """The object's path, checked to be a regular file of a size popvault writes: a
        device, a FIFO or a symlink to one (``/dev/zero``), or a huge sparse file put in
        the vault must not make a reader block or read without end."""
        path = self._path(name)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"object {name} is missing") from None
        if stat.S_ISDIR(st.st_mode):
            raise ObjectNotFound(f"object {name} is not a file")
        if not stat.S_ISREG(st.st_mode):
            raise IntegrityError(f"object {name} is not a regular file")
        if st.st_size > MAX_OBJECT:
            raise IntegrityError(
                f"object {name} is {st.st_size} bytes, larger than any object popvault"
                f" writes ({MAX_OBJECT})"
            )
        return path

    def get(self, name: str) -> bytes:
        path = self._regular(name)
        try:
            with open(path, "rb") as f:
                return f.read(MAX_OBJECT + 1)
        except FileNotFoundError:
            raise ObjectNotFound(f"object {name} is missing") from None

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        path = self._regular(name)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError:
            raise ObjectNotFound(f"object {name} is missing") from None

    def size(self, name: str) -> int:
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFound(f"object {name} is missing") from None

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root)
            for fn in filenames:
                if not fn.startswith("."):
                    out.append((rel / fn).as_posix())
        return sorted(out)

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        self._fsync_dir(path.parent, name)

    def cleanup_temporary(self) -> int:
        """Remove ``.tmp-*`` files. At the top level (where lock attempts of other
        processes write theirs) only those older than ten minutes."""
        removed = 0
        old = time.time() - 600
        for dirpath, _dirs, filenames in os.walk(self.root):
            top = os.path.samefile(dirpath, self.root)
            for fn in filenames:
                path = os.path.join(dirpath, fn)
                if fn.startswith(TMP_PREFIX) and not (top and _mtime(path) > old):
                    try:
                        os.unlink(path)
                        removed += 1
                    except OSError:
                        pass
        return removed


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _raise_os(exc: BaseException, name: str) -> None:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFull(
            f"no space left on the device while writing {name}",
            hint="free some space and run the command again; nothing was committed",
        ) from exc
    if isinstance(exc, PermissionError):
        raise PopvaultError(f"permission denied writing {name}: {exc.strerror}") from exc


class MemoryBackend:
    """Objects in a dict; for unit tests. Thread-safe."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, name: str, data: bytes | bytearray) -> None:
        _check_name(name)
        with self._lock:
            self.objects[name] = bytes(data)

    def create_exclusive(self, name: str, data: bytes) -> bool:
        _check_name(name)
        with self._lock:
            if name in self.objects:
                return False
            self.objects[name] = bytes(data)
            return True

    def get(self, name: str) -> bytes:
        _check_name(name)
        with self._lock:
            try:
                return self.objects[name]
            except KeyError:
                raise ObjectNotFound(f"object {name} is missing") from None

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        return self.get(name)[offset : offset + length]

    def size(self, name: str) -> int:
        return len(self.get(name))

    def exists(self, name: str) -> bool:
        _check_name(name)
        with self._lock:
            return name in self.objects

    def list(self, prefix: str) -> list[str]:
        p = prefix.rstrip("/") + "/"
        with self._lock:
            return sorted(
                n
                for n in self.objects
                if n.startswith(p) and not n.rsplit("/", 1)[-1].startswith(".")
            )

    def delete(self, name: str) -> None:
        _check_name(name)
        with self._lock:
            self.objects.pop(name, None)

    def cleanup_temporary(self) -> int:
        return 0
