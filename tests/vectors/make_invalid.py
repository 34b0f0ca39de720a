"""Create the invalid golden vectors in ``tests/vectors/invalid/`` (format §13).

Run once, by hand, when a new vector set is wanted; never from a test::

    python tests/vectors/make_invalid.py            # writes tests/vectors/invalid/
    python tests/vectors/make_invalid.py --out DIR  # somewhere else

Every vector is the committed golden vault ``tests/vectors/v1/`` (passphrase
``popvault-golden``) with a few objects removed, replaced or added so that it breaks
exactly one rule a reader MUST check. Only the changed objects are stored: the folder
``<case>/`` holds the files to put into the vault (under their vault paths) and
``cases.json`` says, for each case, which section and rule it tests, which objects to
remove, which files to add, and what each operation must give (exit code, exception
class and a substring of the one-line error). ``tests/unit/vault/test_invalid_vectors.py``
reads them on every run.

Objects that must be validly sealed (a commit whose body ``seq`` differs from its name,
a frame with an unknown codec) are sealed here with the golden vault's own keys, under
salts derived from the case name (so the output is deterministic, and no two plaintexts
share a salt). zstd output is that of the installed zstandard library. The output folder
must not exist (or be empty): vectors are never regenerated in place.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from popvault.vault.backend import LocalBackend  # noqa: E402
from popvault.vault.config import read_config  # noqa: E402
from popvault.vault.crypto import MasterKeys, PackCipher, checksum_json, open_object  # noqa: E402
from popvault.vault.keys import unlock  # noqa: E402

GOLDEN = HERE / "v1"
PASSPHRASE = b"popvault-golden"
PACK_MAGIC = b"PVPACK01"
SEGMENT_MAGIC = b"PVINDX01"
COMMIT_MAGIC = b"PVCMIT01"
#: "Too new" versions: far above any version popvault will write, so that the vectors
#: stay invalid when versions 2, 3, … appear.
TOO_NEW = 1000

Expect = dict[str, Any]


def fail(operation: str, code: int, exception: str, error: str) -> Expect:
    """An expected failure: exit code, exception class, substring of the one-line error
    (for ``check``: of one of the problems it lists)."""
    return {"operation": operation, "exit": code, "exception": exception, "error": error}


def ok(operation: str) -> Expect:
    """An operation that must succeed (the damage is invisible to it)."""
    return {"operation": operation, "exit": 0}


def integrity(operation: str, error: str) -> Expect:
    return fail(operation, 20, "IntegrityError", error)


@dataclass
class Case:
    name: str
    section: str
    must: str
    expect: list[Expect]
    remove: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)

    def replace(self, old: str, new: str, data: bytes) -> None:
        """Remove ``old`` and add ``new`` with ``data`` (``old`` may equal ``new``)."""
        if old != new:
            self.remove.append(old)
        self.files[new] = data

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "section": self.section,
            "must": self.must,
            "remove": sorted(self.remove),
            "files": sorted(self.files),
            "expect": self.expect,
        }


def salt_for(case: str, purpose: str) -> bytes:
    """A fixed 32-byte salt, distinct for every object of every case."""
    return hashlib.sha256(f"popvault-invalid-vectors/{case}/{purpose}".encode()).digest()


def pack_path(name: str) -> str:
    return f"packs/{name[:2]}/{name}"


def flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :]


class Golden:
    """The golden vault, opened with its passphrase: its keys, objects and bodies."""

    def __init__(self) -> None:
        backend = LocalBackend(GOLDEN)
        self.vault_id = read_config(backend, str(GOLDEN))
        self.keys: MasterKeys = unlock(backend, self.vault_id, PASSPHRASE)
        self.objects = {
            p.relative_to(GOLDEN).as_posix(): p.read_bytes()
            for p in sorted(GOLDEN.rglob("*"))
            if p.is_file() and p.name != "expected.json"
        }
        self.commits = sorted(n for n in self.objects if n.startswith("commits/"))
        self.slot = next(n for n in self.objects if n.startswith("keys/"))
        self.bodies = [self.commit_body(n) for n in self.commits]

    def commit_body(self, name: str) -> dict[str, Any]:
        plain = open_object(self.keys, self.vault_id, COMMIT_MAGIC, self.objects[name], name)
        body: dict[str, Any] = json.loads(plain)
        return body

    def segment_json(self, seg: str) -> dict[str, Any]:
        data = self.objects[f"index/{seg}"]
        plain = open_object(self.keys, self.vault_id, SEGMENT_MAGIC, data, seg)
        body: dict[str, Any] = json.loads(zstandard.ZstdDecompressor().decompress(plain))
        return body

    def seal(self, magic: bytes, plaintext: bytes, salt: bytes) -> bytes:
        """A single-shot object (§5.3) under a given salt."""
        aead = self.keys.subkey(salt, b"popvault-object-v1\x00" + magic)
        ad = magic + self.vault_id.encode() + salt
        return magic + salt + aead.encrypt(b"\x00" * 12, plaintext, ad)

    def commit_object(self, body: dict[str, Any], salt: bytes) -> tuple[str, bytes]:
        """A sealed commit record and its object name (the name's seq from the body)."""
        data = self.seal(COMMIT_MAGIC, json.dumps(body).encode(), salt)
        return f"commits/{body['seq']:010d}-{hashlib.sha256(data).hexdigest()}", data

    def segment_object(self, body: dict[str, Any], salt: bytes) -> tuple[str, bytes]:
        plain = zstandard.ZstdCompressor(level=3).compress(json.dumps(body).encode())
        data = self.seal(SEGMENT_MAGIC, plain, salt)
        return hashlib.sha256(data).hexdigest(), data

    # --- the last commit (3): one pack, one segment; nothing names it ----------------

    @property
    def last(self) -> dict[str, Any]:
        return self.bodies[-1]

    @property
    def last_pack(self) -> str:
        pack: str = self.last["packs"][0]
        return pack

    @property
    def last_segment(self) -> str:
        seg: str = self.last["segments"][0]
        return seg

    def pack_parts(self, pack: str) -> tuple[list[bytes], list[list[Any]]]:
        """A golden pack's frame plaintexts and trailer blob entries."""
        data = self.objects[pack_path(pack)]
        cipher = PackCipher(self.keys, self.vault_id, PACK_MAGIC, data[8:40])
        (tlen,) = struct.unpack(">I", data[-4:])
        tplain = cipher.open_trailer(data[-4 - tlen : -4], pack)
        trailer = json.loads(zstandard.ZstdDecompressor().decompress(tplain))
        plains = [
            cipher.open_frame(i, data[s : s + n], pack)
            for i, (s, n) in enumerate(trailer["frames"])
        ]
        return plains, trailer["blobs"]

    def build_pack(
        self,
        salt: bytes,
        plains: list[bytes],
        blobs: list[list[Any]],
        nonces: list[int] | None = None,
    ) -> tuple[bytes, list[list[int]]]:
        """A pack of ``plains`` (frame ``i`` sealed with nonce ``nonces[i]``, default
        ``i``) with a valid trailer listing ``blobs``; returns (bytes, frames)."""
        cipher = PackCipher(self.keys, self.vault_id, PACK_MAGIC, salt)
        buf = bytearray(PACK_MAGIC + salt)
        frames: list[list[int]] = []
        for i, plain in enumerate(plains):
            ct = cipher.seal_frame(i if nonces is None else nonces[i], plain)
            buf += struct.pack(">I", len(ct))
            frames.append([len(buf), len(ct)])
            buf += ct
        trailer = {"version": 1, "frames": frames, "blobs": blobs}
        tplain = zstandard.ZstdCompressor(level=3).compress(json.dumps(trailer).encode())
        tct = cipher.seal_trailer(tplain)
        return bytes(buf + tct + struct.pack(">I", len(tct))), frames

    def frames_of(self, data: bytes) -> list[list[int]]:
        """The frames of a pack as its u32 prefixes lay them out (for golden bytes)."""
        (tlen,) = struct.unpack(">I", data[-4:])
        end, pos, frames = len(data) - 4 - tlen, 40, []
        while pos < end:
            (n,) = struct.unpack(">I", data[pos : pos + 4])
            frames.append([pos + 4, n])
            pos += 4 + n
        return frames

    def rewrite_last(
        self,
        case: Case,
        *,
        pack: bytes | None = None,
        pack_name: str | None = None,
        frames: list[list[int]] | None = None,
        blobs: list[list[Any]] | None = None,
        segment: dict[str, Any] | None = None,
        segment_data: bytes | None = None,
        commit: dict[str, Any] | None = None,
    ) -> None:
        """Replace the last commit's pack, segment and/or commit record consistently:
        a new pack is stored under its SHA-256 and the segment lists it (with the
        frames and blobs given, default the golden pack's), the segment under its
        SHA-256, and a re-sealed commit record names both. So the one thing wrong is
        what the case put into ``pack`` / ``segment`` / ``commit``."""
        seg_body = segment if segment is not None else self.segment_json(self.last_segment)
        if pack is None:
            pack_name = self.last_pack
        else:
            pack_name = pack_name or hashlib.sha256(pack).hexdigest()
            case.replace(pack_path(self.last_pack), pack_path(pack_name), pack)
            _, gblobs = self.pack_parts(self.last_pack)
            frames = frames if frames is not None else self.frames_of(pack)
            seg_body = dict(seg_body)
            seg_body["blobs"] = [
                [b, k, pack_name, f, frames[f][0], frames[f][1], o, n]
                for b, k, f, o, n in (blobs if blobs is not None else gblobs)
            ]
        if segment is None and pack is None and segment_data is None:
            seg_name = self.last_segment
        else:
            if segment_data is None:
                seg_name, seg_data = self.segment_object(seg_body, salt_for(case.name, "segment"))
            else:
                seg_name, seg_data = hashlib.sha256(segment_data).hexdigest(), segment_data
            case.replace(f"index/{self.last_segment}", f"index/{seg_name}", seg_data)
        body = dict(commit if commit is not None else self.last)
        body["packs"] = [pack_name]
        body["segments"] = [seg_name]
        name, data = self.commit_object(body, salt_for(case.name, "commit"))
        case.replace(self.commits[-1], name, data)


# --- config (§4) ---------------------------------------------------------------------


def config_cases(g: Golden) -> list[Case]:
    body = json.loads(g.objects["config"])["body"]

    def with_body(name: str, must: str, new: Any, expect: Expect) -> Case:
        c = Case(name, "§4", must, [expect])
        c.files["config"] = checksum_json(new)
        return c

    def version(v: Any) -> dict[str, Any]:
        return {**body, "version": v}

    garbage = Case(
        "config-garbage",
        "§4",
        "a config that is not checksummed JSON is an integrity error (exit 20)",
        [integrity("open", "vault config is damaged")],
    )
    garbage.files["config"] = b"\x00\xffnot json at all\n"

    def edited_file(name: str, must: str, edit: Callable[[dict[str, Any]], None]) -> Case:
        """The config file with its JSON edited and its checksum left as it was."""
        c = Case(
            name, "§1, §4", must, [integrity("open", "vault config is damaged (checksum mismatch)")]
        )
        outer = json.loads(g.objects["config"])
        edit(outer)
        c.files["config"] = json.dumps(outer, indent=1, sort_keys=True).encode() + b"\n"
        return c

    bad_sum = edited_file(
        "config-bad-checksum",
        "a checksummed JSON file whose checksum does not match is damaged (exit 20)",
        lambda outer: outer.update(sha256="0" * 64),
    )
    edited = edited_file(
        "config-edited-without-checksum",
        "the checksum covers the canonical body: a body edited without it is damaged",
        lambda outer: outer["body"].update(id="0" * 32),
    )
    missing = Case(
        "config-missing",
        "§4",
        "a reader fails with 'vault not found' (exit 10) if config is missing",
        [fail("open", 10, "VaultNotFound", "no vault at")],
        remove=["config"],
    )
    bad_version = "vault config has an invalid format version"
    return [
        missing,
        garbage,
        bad_sum,
        edited,
        with_body(
            "config-body-not-object",
            "a checksummed JSON file whose body is not an object is damaged",
            [body["format"], body["id"], 1],
            integrity("open", "vault config is damaged"),
        ),
        with_body(
            "config-version-0",
            "version must be a positive integer (exit 20 otherwise)",
            version(0),
            integrity("open", bad_version),
        ),
        with_body(
            "config-version-true",
            "version must be a positive integer; JSON true is not one (exit 20)",
            version(True),
            integrity("open", bad_version),
        ),
        with_body(
            "config-version-string",
            'version must be a positive integer; the string "1" is not one (exit 20)',
            version("1"),
            integrity("open", bad_version),
        ),
        with_body(
            "config-version-missing",
            "version must be a positive integer; a config without one is damaged",
            {k: v for k, v in body.items() if k != "version"},
            integrity("open", bad_version),
        ),
        with_body(
            "config-version-too-new",
            "a version above the reader's is refused naming both versions, vault unchanged"
            " (popvault: exit 1)",
            version(TOO_NEW),
            fail("open", 1, "PopvaultError", f"vault format version {TOO_NEW} is newer"),
        ),
        with_body(
            "config-format-missing",
            'format must be "popvault-vault"; otherwise it is not a vault (exit 10)',
            {k: v for k, v in body.items() if k != "format"},
            fail("open", 10, "VaultNotFound", "is not a popvault vault"),
        ),
        with_body(
            "config-format-other",
            'format must be "popvault-vault"; otherwise it is not a vault (exit 10)',
            {**body, "format": "popvault-vault2"},
            fail("open", 10, "VaultNotFound", "is not a popvault vault"),
        ),
        with_body(
            "config-id-uppercase",
            "id must match ^[0-9a-f]{32}$ (lowercase hex), exit 20 otherwise",
            {**body, "id": body["id"].upper()},
            integrity("open", "vault config has a malformed id"),
        ),
        with_body(
            "config-id-short",
            "id must be 32 hex digits, exit 20 otherwise",
            {**body, "id": body["id"][:30]},
            integrity("open", "vault config has a malformed id"),
        ),
    ]


# --- key slots (§4.2) ----------------------------------------------------------------


def slot_cases(g: Golden) -> list[Case]:
    outer = json.loads(g.objects[g.slot])
    body = outer["body"]
    out_of_range = "names Argon2id costs outside the accepted range"

    def with_kdf(case: str, must: str, error: str, **kdf: Any) -> Case:
        c = Case(case, "§4.2", must, [integrity("open", error)])
        c.files[g.slot] = checksum_json({**body, "kdf": {**body["kdf"], **kdf}})
        return c

    bad_sum = Case(
        "slot-bad-checksum",
        "§1, §4.2",
        "a slot whose checksum does not match is damaged; a lone damaged slot is exit 20",
        [integrity("open", "is damaged (checksum mismatch)")],
    )
    bad_sum.files[g.slot] = checksum_json(body).replace(
        outer["sha256"].encode(), hashlib.sha256(b"").hexdigest().encode()
    )
    nested = Case(
        "slot-nested-json",
        "§1, §4.2",
        "an unparsable slot (JSON nested 20,000 deep) is damaged, not a crash (exit 20)",
        [integrity("open", "is damaged")],
    )
    depth = 20_000
    nested.files[g.slot] = b'{"body": ' + b"[" * depth + b"]" * depth + b', "sha256": ""}\n'
    version = Case(
        "slot-version-2",
        "§4.2",
        "a slot whose version is not 1 is refused (integrity error)",
        [integrity("open", "has an unknown version")],
    )
    version.files[g.slot] = checksum_json({**body, "version": 2})
    aead = Case(
        "slot-unknown-aead",
        "§4.2",
        "aead other than chacha20-poly1305 is an integrity error (unknown algorithm)",
        [integrity("open", "names an unknown algorithm")],
    )
    aead.files[g.slot] = checksum_json({**body, "aead": "aes-256-gcm"})
    bad_b64 = Case(
        "slot-bad-base64",
        "§1, §4.2",
        "base64 with characters outside the alphabet is refused (fields not decodable)",
        [integrity("open", "is malformed")],
    )
    bad_b64.files[g.slot] = checksum_json({**body, "nonce": body["nonce"][:-2] + "!="})
    none = Case(
        "slot-none",
        "§4.2",
        "a vault without any key slot is an integrity error",
        [integrity("open", "the vault has no key slots")],
        remove=[g.slot],
    )
    return [
        bad_sum,
        nested,
        with_kdf(
            "slot-memory-too-big",
            "memory_kib above 1 GiB (1,048,576) is refused before any derivation",
            out_of_range,
            memory_kib=(1 << 20) + 1,
        ),
        with_kdf(
            "slot-passes-too-many",
            "iterations above 10 are refused before any derivation",
            out_of_range,
            iterations=11,
        ),
        with_kdf(
            "slot-lanes-too-many",
            "lanes above 16 are refused before any derivation",
            out_of_range,
            lanes=17,
            memory_kib=1024,
        ),
        with_kdf(
            "slot-memory-below-lanes",
            "memory_kib below 8 x lanes is refused",
            out_of_range,
            lanes=2,
            memory_kib=15,
        ),
        with_kdf(
            "slot-unknown-kdf",
            "kdf.name other than argon2id is an integrity error (unknown algorithm)",
            "names an unknown algorithm",
            **{"name": "scrypt"},
        ),
        version,
        aead,
        bad_b64,
        none,
    ]


# --- commit records (§3, §5.3, §8) ---------------------------------------------------


def commit_cases(g: Golden) -> list[Case]:
    last_name, last_data = g.commits[-1], g.objects[g.commits[-1]]
    seq3 = last_name.split("/")[1][:10]

    name_hash = Case(
        "commit-name-hash-mismatch",
        "§5.3, §8.1",
        "the SHA-256 of a commit record must equal the hex in its name",
        [
            integrity("open", "does not match its name"),
            integrity("check", "does not match its name"),
        ],
    )
    wrong = last_name[:-1] + ("0" if last_name[-1] != "0" else "1")
    name_hash.replace(last_name, wrong, last_data)

    seq = Case(
        "commit-seq-mismatch",
        "§8.1",
        "the body's seq must equal the number in the object's name",
        [
            integrity("open", "carries the wrong sequence number"),
            integrity("check", "carries the wrong sequence number"),
        ],
    )
    data = g.seal(COMMIT_MAGIC, json.dumps({**g.last, "seq": 4}).encode(), salt_for(seq.name, "c"))
    seq.replace(last_name, f"commits/{seq3}-{hashlib.sha256(data).hexdigest()}", data)

    reused = Case(
        "commit-reused-seq",
        "§8.1, §11",
        "sequence numbers are exactly 1, 2, …, n and each parent names the previous commit"
        " (two records with the same seq)",
        [integrity("check", "does not follow its predecessor")],
    )
    name, data = g.commit_object(
        {**g.last, "packs": [], "segments": [], "host": "other"}, salt_for(reused.name, "c")
    )
    reused.files[name] = data

    gap = Case(
        "commit-gap",
        "§8.1, §11",
        "sequence numbers are exactly 1, 2, …, n and each parent names the previous commit"
        " (a middle commit record removed)",
        [integrity("check", "does not follow its predecessor")],
        remove=[g.commits[1]],
    )
    parent = Case(
        "commit-wrong-parent",
        "§8.1, §11",
        "each parent names the previous commit record",
        [integrity("check", "does not follow its predecessor")],
    )
    g.rewrite_last(parent, commit={**g.last, "parent": g.commits[0].split("/")[1]})

    first = Case(
        "commit-first-has-parent",
        "§8.1, §11",
        "the first commit's parent is null",
        [integrity("check", "does not follow its predecessor")],
        remove=list(g.commits[:2]),
    )
    # the first commit re-sealed with a parent; then 2 and 3 re-chained onto it
    name, data = g.commit_object(
        {**g.bodies[0], "parent": "0000000000-" + "0" * 64}, salt_for(first.name, "c1")
    )
    first.files[name] = data
    name2, data2 = g.commit_object(
        {**g.bodies[1], "parent": name.split("/")[1]}, salt_for(first.name, "c2")
    )
    first.files[name2] = data2
    first.remove.append(last_name)
    name3, data3 = g.commit_object(
        {**g.bodies[2], "parent": name2.split("/")[1]}, salt_for(first.name, "c3")
    )
    first.files[name3] = data3

    bad_name = Case(
        "commit-bad-object-name",
        "§3, §11",
        "names under commits/ must match ^commits/[0-9]{10}-[0-9a-f]{64}$ (hex is"
        " case-sensitive); readers ignore others, check reports them",
        [integrity("check", "unexpected object commits/0000000004-"), ok("read")],
    )
    bad_name.files["commits/0000000004-" + last_name.split("-")[1].upper()] = last_data

    def sealed(name: str, must: str, data: bytes, error: str) -> Case:
        c = Case(name, "§5.3", must, [integrity("open", error), integrity("check", error)])
        c.replace(last_name, f"commits/{seq3}-{hashlib.sha256(data).hexdigest()}", data)
        return c

    too_new = Case(
        "commit-version-too-new",
        "§5.3",
        "a commit record of a version above 1 is refused as newer (popvault: exit 1)",
        [fail("open", 1, "PopvaultError", f"format version {TOO_NEW}, newer than")],
    )
    g.rewrite_last(too_new, commit={**g.last, "version": TOO_NEW})
    version_str = Case(
        "commit-version-string",
        "§5.3",
        "an object version that is not an integer is an integrity error",
        [integrity("open", "has an invalid format version")],
    )
    g.rewrite_last(version_str, commit={**g.last, "version": "1"})
    version_true = Case(
        "commit-version-true",
        "§5.3",
        "an object version must be the integer 1: JSON true is not (integrity error)",
        [integrity("open", "has an invalid format version")],
    )
    g.rewrite_last(version_true, commit={**g.last, "version": True})
    digits = Case(
        "commit-name-unicode-digits",
        "§3, §11",
        "the seq of a commit name is 10 ASCII digits ([0-9], not other scripts' digits):"
        " readers ignore other names, check reports them",
        [integrity("check", "unexpected object commits/"), ok("read")],
    )
    digits.files["commits/" + "\u0660" * 9 + "\u0664-" + last_name.split("-")[1]] = last_data
    return [
        name_hash,
        seq,
        reused,
        gap,
        parent,
        first,
        bad_name,
        sealed(
            "commit-bad-tag",
            "authentication of a commit record must succeed (flipped ciphertext byte)",
            flip(last_data, 60),
            "failed authentication",
        ),
        sealed(
            "commit-truncated",
            "an object shorter than 56 bytes is refused",
            last_data[:55],
            "is truncated or not a popvault object",
        ),
        sealed(
            "commit-bad-magic",
            "an object whose magic differs is refused",
            b"PVCMIT02" + last_data[8:],
            "is truncated or not a popvault object",
        ),
        too_new,
        version_str,
        version_true,
        digits,
    ]


# --- index segments (§5.3, §9) -------------------------------------------------------


def segment_cases(g: Golden) -> list[Case]:
    seg = g.last_segment
    data = g.objects[f"index/{seg}"]
    name_mismatch = Case(
        "segment-name-mismatch",
        "§5.3, §9",
        "the SHA-256 of a segment must equal its name (altered in place)",
        [
            integrity("open", "does not match its name"),
            integrity("check", "does not match its name"),
        ],
    )
    name_mismatch.files[f"index/{seg}"] = flip(data, 70)
    bad_tag = Case(
        "segment-bad-tag",
        "§5.3",
        "authentication of a segment must succeed (altered, stored under its new hash)",
        [integrity("open", "failed authentication"), integrity("check", "failed authentication")],
    )
    g.rewrite_last(bad_tag, segment_data=flip(data, 70))
    missing = Case(
        "segment-missing",
        "§8.5, §11",
        "a segment a commit names must exist",
        [integrity("open", "is missing"), integrity("check", "is missing")],
        remove=[f"index/{seg}"],
    )
    not_zstd = Case(
        "segment-not-zstd",
        "§9",
        "a segment's plaintext must be a zstd frame of its JSON",
        [integrity("open", "does not decompress")],
    )
    g.rewrite_last(
        not_zstd,
        segment_data=g.seal(
            SEGMENT_MAGIC,
            json.dumps(g.segment_json(seg)).encode(),
            salt_for(not_zstd.name, "segment"),
        ),
    )
    too_new = Case(
        "segment-version-too-new",
        "§5.3",
        "a segment of a version above 1 is refused as newer (popvault: exit 1)",
        [fail("open", 1, "PopvaultError", f"format version {TOO_NEW}, newer than")],
    )
    g.rewrite_last(too_new, segment={**g.segment_json(seg), "version": TOO_NEW})
    size = Case(
        "message-size-mismatch",
        "§7.3",
        "a rebuilt message must have exactly `size` bytes and hash to its id",
        [
            integrity("read", "does not rebuild to its id"),
            integrity("check --read-data", "does not rebuild to its id"),
        ],
    )
    body = g.segment_json(seg)
    records = [{**r, "size": r["size"] + 1} if r.get("t") == "msg" else r for r in body["records"]]
    g.rewrite_last(size, segment={**body, "records": records})
    blob = Case(
        "blob-offset-wrong",
        "§6.6, §9.1",
        "a blob read must hash to its keyed id; the segment entry must agree with the trailer",
        [
            integrity("read", "does not match its id"),
            integrity("check --read-data", "index and pack disagree"),
        ],
    )
    blobs = [list(b) for b in body["blobs"]]
    txt = next(b for b in blobs if b[1] == "txt")
    txt[6] += 1
    g.rewrite_last(blob, segment={**body, "blobs": blobs})
    version_float = Case(
        "segment-version-float",
        "§5.3",
        "an object version must be the integer 1: 1.0 is not (integrity error)",
        [integrity("open", "has an invalid format version")],
    )
    g.rewrite_last(version_float, segment={**body, "version": 1.0})
    entries = []
    for label, index, value, must in [
        ("offset-string", 6, "0", "a blob entry's offsets are integers"),
        ("length-huge", 5, 1 << 40, "a blob entry's frame length lies within one object"),
        ("negative", 3, -1, "a blob entry's frame index is not negative"),
    ]:
        blobs = [list(b) for b in body["blobs"]]
        blobs[1][index] = value
        c = Case(
            f"segment-blob-entry-{label}",
            "§9.1",
            f"{must} (a forged entry is damage, not a crash)",
            [integrity("open", "has a malformed blob entry")],
        )
        g.rewrite_last(c, segment={**body, "blobs": blobs})
        entries.append(c)
    return [name_mismatch, bad_tag, missing, not_zstd, too_new, version_float, size, blob, *entries]


# --- packs (§6) ----------------------------------------------------------------------


def pack_cases(g: Golden) -> list[Case]:
    golden = g.objects[pack_path(g.last_pack)]
    plains, blobs = g.pack_parts(g.last_pack)
    frames = g.frames_of(golden)
    (tlen,) = struct.unpack(">I", golden[-4:])
    tstart = len(golden) - 4 - tlen
    cases: list[Case] = []

    def add(
        name: str,
        section: str,
        must: str,
        expect: list[Expect],
        make: Callable[[Case], None],
    ) -> None:
        c = Case(name, section, must, expect)
        make(c)
        cases.append(c)

    def mutated(data: bytes) -> Callable[[Case], None]:
        return lambda c: g.rewrite_last(c, pack=data, frames=frames)

    def rebuilt(
        frame_plains: list[bytes], frame_blobs: list[list[Any]], nonces: list[int] | None = None
    ) -> Callable[[Case], None]:
        def make(c: Case) -> None:
            data, fr = g.build_pack(salt_for(c.name, "pack"), frame_plains, frame_blobs, nonces)
            g.rewrite_last(c, pack=data, frames=fr, blobs=frame_blobs)

        return make

    parse_ops = ("check --read-data", "index rebuild --from-packs")

    def on_parse(error: str) -> list[Expect]:
        return [integrity(op, error) for op in parse_ops]

    add(
        "frame-bad-tag",
        "§6.1",
        "every frame must authenticate (one ciphertext byte flipped)",
        [
            integrity("read", "frame 1 failed authentication"),
            integrity("check --read-data", "frame 1 failed authentication"),
        ],
        mutated(flip(golden, frames[1][0] + 3)),
    )
    swapped = [[b, k, 1 - f if f < 2 else f, o, n] for b, k, f, o, n in blobs]
    add(
        "frames-swapped",
        "§6.1",
        "frame i must be sealed with nonce i (frames 0 and 1 swapped, trailer and index"
        " rewritten to match)",
        [
            integrity("read", "failed authentication"),
            integrity("check --read-data", "frame 0 failed authentication"),
        ],
        rebuilt([plains[1], plains[0], plains[2]], swapped, nonces=[1, 0, 2]),
    )
    add(
        "pack-bad-magic",
        "§6.1",
        "a pack whose first 8 bytes are not PVPACK01 is refused",
        [
            integrity("read", "has a damaged header"),
            integrity("check --read-data", "has a damaged header"),
            integrity("index rebuild --from-packs", "has a damaged header"),
        ],
        mutated(b"PVPAKC01" + golden[8:]),
    )
    add(
        "pack-salt-altered",
        "§5.2, §6.1",
        "the salt is bound into every frame's key and AD (one salt byte flipped)",
        [
            integrity("read", "failed authentication"),
            integrity("check --read-data", "trailer failed authentication"),
        ],
        mutated(flip(golden, 20)),
    )
    add(
        "pack-truncated",
        "§6.3",
        "a pack cut off inside its trailer is refused (the last 4 bytes are no length)",
        on_parse("bad trailer length"),
        mutated(golden[: tstart + tlen // 2]),
    )
    add(
        "trailer-length-too-big",
        "§6.3",
        "the trailer must start at or after byte 40 (u32 length 1 too big for that)",
        on_parse("bad trailer length"),
        mutated(golden[:-4] + struct.pack(">I", len(golden) - 4 - 39)),
    )
    add(
        "trailer-length-too-small",
        "§6.3",
        "len(trailer_ct) must be at least 16",
        on_parse("bad trailer length"),
        mutated(golden[:-4] + struct.pack(">I", 15)),
    )
    add(
        "trailer-length-off-by-one",
        "§6.3",
        "the trailer must authenticate (u32 length one less than the trailer)",
        on_parse("trailer failed authentication"),
        mutated(golden[:-4] + struct.pack(">I", tlen - 1)),
    )
    add(
        "frames-gap",
        "§6.3",
        "the frames must tile the bytes between header and trailer (4 stray bytes before"
        " the trailer)",
        on_parse("has bytes outside its frames"),
        mutated(golden[:tstart] + b"\x00" * 4 + golden[tstart:]),
    )
    pos = frames[1][0] - 4
    add(
        "frames-length-prefix-wrong",
        "§6.3",
        "each frame's u32 length prefix must equal its trailer length",
        on_parse("frame layout does not match its trailer"),
        mutated(golden[:pos] + struct.pack(">I", frames[1][1] - 1) + golden[pos + 4 :]),
    )
    add(
        "frame-unknown-codec",
        "§6.2",
        "a frame naming an unknown codec is refused",
        [
            integrity("read", "names unknown codec 7"),
            integrity("check --read-data", "names unknown codec 7"),
        ],
        rebuilt([plains[0], b"\x07" + plains[1][1:], plains[2]], blobs),
    )
    add(
        "frame-empty-plaintext",
        "§6.2",
        "an empty frame plaintext (no codec byte) is refused",
        [
            integrity("read", "frame 1 is empty"),
            integrity("check --read-data", "frame 1 is empty"),
        ],
        rebuilt([plains[0], b"", plains[2]], blobs),
    )
    add(
        "frame-zstd-garbage",
        "§6.2",
        "a zstd body that does not decompress is refused",
        [
            integrity("read", "does not decompress"),
            integrity("check --read-data", "does not decompress"),
        ],
        rebuilt([plains[0], b"\x01" + b"\x28\xb5\x2f\xfd garbage", plains[2]], blobs),
    )
    payload = zstandard.ZstdDecompressor().decompress(plains[1][1:])
    bomb = payload + bytes((64 << 20) + 1 - len(payload))
    cctx = zstandard.ZstdCompressor(level=19, write_content_size=False)
    add(
        "frame-zstd-bomb",
        "§6.2",
        "a zstd body decompressing to more than 64 MiB is refused (64 MiB + 1 byte, no"
        " content size in the frame header)",
        [
            integrity("read", "does not decompress"),
            integrity("check --read-data", "does not decompress"),
        ],
        rebuilt([plains[0], b"\x01" + cctx.compress(bomb), plains[2]], blobs),
    )
    wrong = g.last_pack[:-1] + ("0" if g.last_pack[-1] != "0" else "1")
    add(
        "pack-name-mismatch",
        "§6.4, §11",
        "a pack's name is the SHA-256 of its bytes (a valid pack stored, and named by its"
        " commit and segment, under another name): only check --read-data hashes packs",
        [
            ok("read"),
            ok("check"),
            integrity("check --read-data", "does not match its name"),
        ],
        lambda c: g.rewrite_last(c, pack=golden, pack_name=wrong),
    )
    return cases


def make(out: Path) -> list[dict[str, Any]]:
    g = Golden()
    cases = config_cases(g) + slot_cases(g) + commit_cases(g) + segment_cases(g) + pack_cases(g)
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    for c in cases:
        for path, data in c.files.items():
            dst = out / c.name / path
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
    return [c.manifest() for c in cases]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "invalid")
    args = parser.parse_args()
    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        print(f"{out} exists and is not empty; vectors are never regenerated", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    cases = make(out)
    doc = {
        "base": "v1",
        "passphrase": PASSPHRASE.decode(),
        "cases": cases,
    }
    (out / "cases.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
