"""``restore`` into IMAP on the private Dovecot: bytes, INTERNALDATE, flags, idempotency,
folder names, refusals, quota, and the CLI's options, report and exit codes.

Every restored message is fetched back (``BODY.PEEK[]``) and compared with the vault's
bytes through `dovecot_imap_view`, the one documented normalisation of what Dovecot does
to APPENDed mail; nothing else may differ.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from popvault.app import restore as restore_mod
from popvault.app.export import STREAM_ABOVE
from popvault.app.restore import DateFrom, restore
from popvault.errors import AuthenticationFailed, IntegrityError
from popvault.imap import AppendItem, ImapClient, maildir_flags_to_imap
from popvault.vault import Filter, Vault
from tests.support.backup_helpers import run_cli
from tests.support.dovecot import Dovecot, DovecotError, UserInfo
from tests.support.generate import adversarial, big_message, realistic
from tests.support.restore_helpers import (
    PASSPHRASE,
    Fetched,
    Seed,
    Stored,
    add_to_vault,
    cli_env,
    dated_message,
    dovecot_imap_view,
    fetch_folder,
    imap_settings,
    imaps_url,
    json_report,
    make_vault,
    multiset,
    starttls_url,
)

UTC = dt.UTC
CEST = dt.timezone(dt.timedelta(hours=2))


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, sec, tzinfo=UTC).timestamp()


# Times of the dated messages; every fallback of INTERNALDATE picks a different one.
R1 = dt.datetime(2021, 5, 6, 7, 8, 9, tzinfo=UTC)  # topmost (newest) Received
R1_OLD = dt.datetime(2021, 5, 6, 7, 0, 1, tzinfo=UTC)  # an older hop below it
D1 = dt.datetime(2021, 5, 6, 8, 59, 30, tzinfo=CEST)
F1 = ts(2022, 1, 2, 3, 4, 5)
R2 = dt.datetime(2020, 2, 29, 23, 59, 58, tzinfo=UTC)
D2 = dt.datetime(2020, 2, 29, 10, 0, 0, tzinfo=UTC)
D3 = dt.datetime(2019, 12, 31, 22, 30, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
F3 = ts(2020, 1, 1, 12, 0, 0)
D4 = dt.datetime(2018, 7, 14, 9, 15, 0, tzinfo=UTC)
F6 = ts(2017, 3, 3, 3, 3, 3)


def dated_seeds() -> dict[str, Seed]:
    """Messages whose INTERNALDATE fallbacks (received, file time, Date, archived) differ."""
    return {
        "rcv": Seed(dated_message("rcv", date=D1, received=[R1, R1_OLD]), flags="S", file_time=F1),
        "rcv-nofile": Seed(dated_message("rcv-nofile", date=D2, received=[R2])),
        "file": Seed(dated_message("file", date=D3), flags="RS", file_time=F3),
        "date": Seed(dated_message("date", date=D4), flags=""),
        "none": Seed(dated_message("none", date=None), flags="F"),
        "none-file": Seed(dated_message("none-file", date=None), flags="FS", file_time=F6),
    }


#: Expected INTERNALDATE per --date-from; None means "the time it was first archived".
EXPECTED_DATES: dict[str, dict[str, float | None]] = {
    "auto": {
        "rcv": R1.timestamp(),
        "rcv-nofile": R2.timestamp(),
        "file": F3,
        "date": D4.timestamp(),
        "none": None,
        "none-file": F6,
    },
    "header": {
        "rcv": D1.timestamp(),
        "rcv-nofile": D2.timestamp(),
        "file": D3.timestamp(),
        "date": D4.timestamp(),
        "none": None,
        "none-file": F6,
    },
    "archived": dict.fromkeys(("rcv", "rcv-nofile", "file", "date", "none", "none-file")),
}
EXPECTED_DATES["received"] = EXPECTED_DATES["auto"]


def all_seeds() -> tuple[dict[str, Seed], list[Seed]]:
    """The dated messages, every adversarial case Dovecot can store, and realistic mail.

    ``empty`` is left out here: Dovecot refuses a zero-byte APPEND ("Can't save a zero
    byte message"); the refusal tests cover that kind of outcome.
    """
    dated = dated_seeds()
    adv = [
        Seed(data, flags="S" if i % 2 else None)
        for i, (name, data) in enumerate(adversarial())
        if name != "empty"
    ]
    real = [
        Seed(data, flags="S" if i % 3 == 0 else "", file_time=ts(2023, 1, 1) + i)
        for i, data in enumerate(realistic(12, seed=4242, avg_size=8 * 1024))
    ]
    return dated, [*dated.values(), *adv, *real]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    d.mkdir()
    monkeypatch.setenv("POPVAULT_CACHE_DIR", str(d))
    return d


@pytest.fixture
def stocked(tmp_path: Path, cache_dir: Path) -> tuple[Path, dict[str, Stored], list[Stored]]:
    """A vault with `all_seeds`; returns (path, dated messages by name, all messages)."""
    dated, seeds = all_seeds()
    stored = make_vault(tmp_path / "vault", seeds)
    by_name = dict(zip(dated, stored[: len(dated)], strict=True))
    return tmp_path / "vault", by_name, stored


def run_restore(
    vault_path: Path,
    target: str,
    dc: Dovecot,
    password: str,
    *,
    date_from: DateFrom = "auto",
    flt: Filter | None = None,
    dry_run: bool = False,
) -> tuple[int, int, list[str]]:
    """Restore in-process; return (restored, already, failed)."""
    with Vault.open(vault_path, PASSPHRASE.encode(), write=not dry_run) as vault:
        rep = restore(
            vault,
            target,
            flt,
            password=lambda: password,
            tls_ca_file=str(dc.ca_file),
            date_from=date_from,
            dry_run=dry_run,
        )
    return rep.restored, rep.already, rep.failed


def first_archived(vault_path: Path) -> dict[bytes, float]:
    with Vault.open(vault_path, PASSPHRASE.encode()) as vault:
        return {row.id: row.first_archived for row in vault.messages()}


def vault_bytes(vault_path: Path) -> dict[bytes, bytes]:
    """Every message's bytes as the vault returns them (verified against its id)."""
    with Vault.open(vault_path, PASSPHRASE.encode()) as vault:
        return {row.id: vault.read_message(row.id) for row in vault.messages()}


def match_by_bytes(
    fetched: list[Fetched], stored: list[Stored], from_vault: dict[bytes, bytes]
) -> dict[bytes, Fetched]:
    """Pair each fetched message with the stored one whose normalised bytes it equals.

    Fails unless the multisets of normalised vault bytes and fetched bytes are equal.
    """
    expected = {dovecot_imap_view(from_vault[s.msg_id]): s for s in stored}
    assert len(expected) == len(stored), "test data: normalised messages must be distinct"
    assert multiset(f.data for f in fetched) == multiset(list(expected))
    return {expected[f.data].msg_id: f for f in fetched}


def check_folder(
    dc: Dovecot,
    user: UserInfo,
    folder: str,
    vault_path: Path,
    dated: dict[str, Stored],
    stored: list[Stored],
    date_from: str,
) -> None:
    """Bytes, \\Seen and the other flags, and INTERNALDATE of every restored message."""
    fetched = fetch_folder(dc, user, folder)
    assert len(fetched) == len(stored)
    got = match_by_bytes(fetched, stored, vault_bytes(vault_path))
    archived = first_archived(vault_path)
    for s in stored:
        f = got[s.msg_id]
        assert ("\\Seen" in f.flags) == ("S" in (s.flags or ""))
        assert f.flags == frozenset(maildir_flags_to_imap(s.flags))
    for name, want in EXPECTED_DATES[date_from].items():
        mid = dated[name].msg_id
        when = want if want is not None else archived[mid]
        assert got[mid].internaldate == float(int(when)), (name, date_from)


# ---------------------------------------------------------------------- transports


def test_restore_over_imaps_bytes_flags_internaldate(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    stocked: tuple[Path, dict[str, Stored], list[Stored]],
) -> None:
    path, dated, stored = stocked
    restored, already, failed = run_restore(
        path, imaps_url(dovecot, dovecot_user), dovecot, dovecot_user.password
    )
    assert (restored, already, failed) == (len(stored), 0, [])
    check_folder(dovecot, dovecot_user, "Restored", path, dated, stored, "auto")


@pytest.mark.parametrize("date_from", ["header", "archived", "received"])
def test_restore_over_starttls_with_date_from(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    stocked: tuple[Path, dict[str, Stored], list[Stored]],
    date_from: DateFrom,
) -> None:
    path, dated, stored = stocked
    target = starttls_url(dovecot, dovecot_user, f"By-{date_from}")
    restored, _, failed = run_restore(
        path, target, dovecot, dovecot_user.password, date_from=date_from
    )
    assert (restored, failed) == (len(stored), [])
    check_folder(dovecot, dovecot_user, f"By-{date_from}", path, dated, stored, date_from)


def test_starttls_with_an_untrusted_certificate_stops_the_restore(
    dovecot: Dovecot, dovecot_user: UserInfo, tmp_path: Path, cache_dir: Path
) -> None:
    """imap:// means STARTTLS, verified: an untrusted certificate stops the restore."""
    path = tmp_path / "vault"
    make_vault(path, [Seed(dated_message("tls", date=D4))])
    env = cli_env(cache_dir, imap_password=dovecot_user.password)
    proc = run_cli(
        path,
        [
            "restore",
            "--to",
            starttls_url(dovecot, dovecot_user),
            "--tls-ca-file",
            str(dovecot.wrong_ca_file),
        ],
        env,
    )
    assert proc.returncode == 1, proc.stderr
    assert "not trusted" in proc.stderr
    assert fetch_folder(dovecot, dovecot_user, "Restored") == []


# --------------------------------------------------------------------- idempotency


def test_restore_twice_appends_nothing_new(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    stocked: tuple[Path, dict[str, Stored], list[Stored]],
) -> None:
    path, _, stored = stocked
    target = imaps_url(dovecot, dovecot_user)
    assert run_restore(path, target, dovecot, dovecot_user.password)[0] == len(stored)
    before = multiset(f.data for f in fetch_folder(dovecot, dovecot_user, "Restored"))
    assert run_restore(path, target, dovecot, dovecot_user.password) == (0, len(stored), [])
    after = multiset(f.data for f in fetch_folder(dovecot, dovecot_user, "Restored"))
    assert after == before
    assert sum(after.values()) == len(stored)


def test_messages_already_on_the_target_are_recognised_without_restore_records(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    stocked: tuple[Path, dict[str, Stored], list[Stored]],
    tmp_path: Path,
) -> None:
    """The header/size scan of the target alone must prevent duplicates.

    That scan is what makes a restore killed between its APPENDs and the commit of its
    ``rst`` records finish without duplicates. Here a second vault holding the same
    messages (so no ``rst`` records for this target) restores into the same folder:
    every message is already there, including the ones Dovecot stores a little
    differently (a CR before CRLF, NUL in the header section).
    """
    path, _, stored = stocked
    target = imaps_url(dovecot, dovecot_user)
    assert run_restore(path, target, dovecot, dovecot_user.password)[0] == len(stored)
    twin = tmp_path / "twin"
    _, seeds = all_seeds()
    make_vault(twin, seeds, source="twin")
    restored, already, failed = run_restore(twin, target, dovecot, dovecot_user.password)
    fetched = fetch_folder(dovecot, dovecot_user, "Restored")
    dups = [f.data[:60] for f in fetched if multiset(g.data for g in fetched)[f.data] > 1]
    assert dups == []
    assert (restored, already, failed) == (0, len(stored), [])
    assert len(fetched) == len(stored)


# ------------------------------------------------------------- large messages stream


def test_streamed_restore_gives_the_same_folder_and_keys(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    stocked: tuple[Path, dict[str, Stored], list[Stored]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With every message above the streaming threshold, each goes to the server in
    pieces read twice from the vault: bytes, flags and dates are what the whole-message
    path gives, and the streamed target-scan keys recognise every message the server
    holds (a twin vault restores nothing new)."""
    monkeypatch.setattr(restore_mod, "STREAM_ABOVE", 0)
    path, dated, stored = stocked
    target = imaps_url(dovecot, dovecot_user)
    restored, already, failed = run_restore(path, target, dovecot, dovecot_user.password)
    assert (restored, already, failed) == (len(stored), 0, [])
    check_folder(dovecot, dovecot_user, "Restored", path, dated, stored, "auto")
    twin = tmp_path / "twin"
    _, seeds = all_seeds()
    make_vault(twin, seeds, source="twin")
    assert run_restore(twin, target, dovecot, dovecot_user.password) == (0, len(stored), [])
    assert len(fetch_folder(dovecot, dovecot_user, "Restored")) == len(stored)


def test_a_20_mib_message_is_restored_byte_exact(
    dovecot: Dovecot, dovecot_user: UserInfo, tmp_path: Path, cache_dir: Path
) -> None:
    data = b"".join(big_message(20 << 20, seed=7))
    assert len(data) > STREAM_ABOVE
    path = tmp_path / "big"
    [s] = make_vault(path, [Seed(data, flags="S")])
    target = imaps_url(dovecot, dovecot_user, "Big")
    assert run_restore(path, target, dovecot, dovecot_user.password) == (1, 0, [])
    [f] = fetch_folder(dovecot, dovecot_user, "Big")
    assert f.data == dovecot_imap_view(vault_bytes(path)[s.msg_id])
    assert f.flags == frozenset({"\\Seen"})
    assert run_restore(path, target, dovecot, dovecot_user.password) == (0, 1, [])


@pytest.mark.parametrize("how", ["raises", "short", "long"])
@pytest.mark.parametrize("method", ["append_many", "append_batches"])
def test_a_stream_that_fails_or_lies_stores_nothing(
    dovecot: Dovecot, dovecot_user: UserInfo, how: str, method: str
) -> None:
    """A streamed message whose pieces fail, or give fewer or more bytes than announced,
    is never completed on the server: the APPEND is abandoned with the connection, and
    the messages sent with it in the same command are not stored either."""
    head = b"Subject: streamed\r\n\r\n"

    def pieces() -> Iterator[bytes]:
        yield head
        if how == "raises":
            raise IntegrityError("a frame failed authentication")
        yield b"x" * (100 if how == "short" else 2000)

    folder = f"Broken-{how}-{method}"
    with ImapClient.connect(imap_settings(dovecot, dovecot_user)) as client:
        client.create_folder(folder)
        good = AppendItem(b"Subject: fine\r\n\r\nbody\r\n")
        bad = AppendItem(b"", stream=pieces, stream_size=len(head) + 1000)
        with pytest.raises(IntegrityError):
            list(getattr(client, method)(folder, [good, bad]))
    stored = [f.data for f in fetch_folder(dovecot, dovecot_user, folder)]
    assert not any(b"streamed" in d for d in stored)
    if method == "append_batches":
        assert stored == []  # one MULTIAPPEND command: all or nothing
    else:
        assert stored == [good.data]  # pipelined: the one before was complete


# ---------------------------------------------------------------------- folder names


def test_non_ascii_nested_folder(
    dovecot: Dovecot, dovecot_user: UserInfo, tmp_path: Path, cache_dir: Path
) -> None:
    """'/' in the URL becomes Dovecot's '.' delimiter; the name goes out in modified
    UTF-7 (RFC 3501 5.1.3), so Dovecot's Maildir++ folder is ``.Archiv.Entw&APw-rfe``."""
    path = tmp_path / "vault"
    seeds = [Seed(dated_message(f"fold{i}", date=D4), flags="S") for i in range(3)]
    stored = make_vault(path, seeds)
    target = imaps_url(dovecot, dovecot_user, quote("Archiv/Entwürfe"))
    assert run_restore(path, target, dovecot, dovecot_user.password) == (3, 0, [])
    assert (dovecot_user.maildir / ".Archiv.Entw&APw-rfe" / "cur").is_dir()
    assert not (dovecot_user.maildir / ".Archiv&AC8-Entw&APw-rfe").exists()
    fetched = fetch_folder(dovecot, dovecot_user, "Archiv.Entwürfe")
    assert multiset(f.data for f in fetched) == multiset(dovecot_imap_view(s.data) for s in stored)
    assert run_restore(path, target, dovecot, dovecot_user.password) == (0, 3, [])
    assert len(fetch_folder(dovecot, dovecot_user, "Archiv.Entwürfe")) == 3


# -------------------------------------------------------------------- credentials


def test_wrong_password_in_process_and_cli(
    dovecot: Dovecot, dovecot_user: UserInfo, tmp_path: Path, cache_dir: Path
) -> None:
    path = tmp_path / "vault"
    make_vault(path, [Seed(dated_message("pw", date=D4))])
    wrong = "not-" + dovecot_user.password
    with pytest.raises(AuthenticationFailed) as info:
        run_restore(path, imaps_url(dovecot, dovecot_user), dovecot, wrong)
    assert wrong not in str(info.value) + (info.value.hint or "")
    env = cli_env(cache_dir, imap_password=wrong)
    proc = run_cli(path, restore_args(dovecot, dovecot_user), env)
    assert proc.returncode == 77, proc.stderr
    assert "refused login" in proc.stderr
    assert wrong not in proc.stdout + proc.stderr
    assert fetch_folder(dovecot, dovecot_user, "Restored") == []


# ------------------------------------------------------------------- CLI options


def restore_args(dc: Dovecot, user: UserInfo, *extra: str, folder: str = "Restored") -> list[str]:
    return [
        "restore",
        "--to",
        imaps_url(dc, user, folder),
        "--tls-ca-file",
        str(dc.ca_file),
        *extra,
    ]


def test_cli_dry_run_appends_nothing_and_json_report(
    dovecot: Dovecot, dovecot_user: UserInfo, tmp_path: Path, cache_dir: Path
) -> None:
    path = tmp_path / "vault"
    stored = make_vault(path, [Seed(dated_message(f"dry{i}", date=D4)) for i in range(5)])
    env = cli_env(cache_dir, imap_password=dovecot_user.password)
    proc = run_cli(path, restore_args(dovecot, dovecot_user, "--dry-run", "--json"), env)
    assert proc.returncode == 0, proc.stderr
    rep = json_report(proc)
    assert (rep["selected"], rep["would_restore"], rep["restored"]) == (5, 5, 0)
    assert "dry run" in proc.stderr
    assert fetch_folder(dovecot, dovecot_user, "Restored") == []

    proc = run_cli(path, restore_args(dovecot, dovecot_user, "--json"), env)
    assert proc.returncode == 0, proc.stderr
    rep = json_report(proc)
    assert rep["target"] == (f"imap://{dovecot_user.name}@127.0.0.1:{dovecot.imaps_port}/Restored")
    assert (rep["selected"], rep["restored"], rep["already"], rep["failed"]) == (5, 5, 0, [])
    assert rep["bytes"] == sum(len(s.data) for s in stored)
    assert len(fetch_folder(dovecot, dovecot_user, "Restored")) == 5

    # A dry run after a complete restore would restore nothing, and appends nothing.
    proc = run_cli(path, restore_args(dovecot, dovecot_user, "--dry-run", "--json"), env)
    assert proc.returncode == 0, proc.stderr
    rep = json_report(proc)
    assert (rep["would_restore"], rep["already"]) == (0, 5)
    assert len(fetch_folder(dovecot, dovecot_user, "Restored")) == 5


def test_cli_ids_file_from_list_json(
    dovecot: Dovecot, dovecot_user: UserInfo, tmp_path: Path, cache_dir: Path
) -> None:
    path = tmp_path / "vault"
    seeds = [Seed(dated_message(f"pick{i}", date=D4)) for i in range(3)]
    seeds += [Seed(dated_message(f"skip{i}", date=D4)) for i in range(4)]
    stored = make_vault(path, seeds)
    env = cli_env(cache_dir, imap_password=dovecot_user.password)
    listing = run_cli(path, ["list", "--json", "--subject", "restore test pick"], env)
    assert listing.returncode == 0, listing.stderr
    assert len(listing.stdout.splitlines()) == 3
    ids_file = tmp_path / "ids.jsonl"
    ids_file.write_text(listing.stdout)
    proc = run_cli(path, restore_args(dovecot, dovecot_user, "--ids", str(ids_file), "--json"), env)
    assert proc.returncode == 0, proc.stderr
    rep = json_report(proc)
    assert (rep["selected"], rep["restored"]) == (3, 3)
    fetched = fetch_folder(dovecot, dovecot_user, "Restored")
    assert multiset(f.data for f in fetched) == multiset(
        dovecot_imap_view(s.data) for s in stored[:3]
    )


# ------------------------------------------------------------ refusals and quota

QUOTA_STORAGE_KB = 300
MAX_MAIL_KB = 64


@pytest.fixture(scope="module")
def quota_dovecot() -> Iterator[Dovecot]:
    """A second private Dovecot with the quota plugin: every user may store at most
    300 KiB, and one message at most 64 KiB (``quota_max_mail_size``)."""
    try:
        dc = Dovecot.start(
            extra_config=f"""
mail_plugins = $mail_plugins quota
plugin {{
  quota = maildir:User quota
  quota_rule = *:storage={QUOTA_STORAGE_KB}K
  quota_max_mail_size = {MAX_MAIL_KB}K
}}
"""
        )
    except DovecotError as exc:
        pytest.fail(f"cannot start the quota Dovecot: {exc}")
    try:
        yield dc
    finally:
        dc.stop()


def quota_user(dc: Dovecot) -> UserInfo:
    return dc.add_user(f"q{secrets.token_hex(4)}", secrets.token_urlsafe(12))


def padded_message(tag: str, size: int) -> bytes:
    head = dated_message(tag, date=D4, body_lines=1)
    line = b"x" * 98 + b"\r\n"
    return head + line * max(0, (size - len(head)) // len(line))


def test_cli_refused_message_is_reported_and_the_others_continue(
    quota_dovecot: Dovecot, tmp_path: Path, cache_dir: Path
) -> None:
    user = quota_user(quota_dovecot)
    path = tmp_path / "vault"
    seeds = [Seed(dated_message(f"ok{i}", date=D4)) for i in range(3)]
    seeds.append(Seed(padded_message("too-big", 100 * 1024)))
    seeds += [Seed(dated_message(f"ok{i}", date=D4)) for i in range(3, 6)]
    stored = make_vault(path, seeds)
    big = stored[3]
    env = cli_env(cache_dir, imap_password=user.password)
    args = restore_args(quota_dovecot, user, "--json")
    proc = run_cli(path, args, env)
    assert proc.returncode == 3, proc.stderr
    rep = json_report(proc)
    assert (rep["selected"], rep["restored"]) == (7, 6)
    failed = rep["failed"]
    assert isinstance(failed, list) and len(failed) == 1
    assert failed[0].startswith(big.msg_id.hex()[:16])
    assert "maximum size" in failed[0]
    assert f"popvault: error: {big.msg_id.hex()[:16]}" in proc.stderr
    ok = [s for s in stored if s is not big]
    fetched = fetch_folder(quota_dovecot, user, "Restored")
    assert multiset(f.data for f in fetched) == multiset(dovecot_imap_view(s.data) for s in ok)

    # Again: the refused one is tried and refused again; nothing is duplicated.
    proc = run_cli(path, args, env)
    assert proc.returncode == 3, proc.stderr
    rep = json_report(proc)
    failed = rep["failed"]
    assert isinstance(failed, list)
    assert (rep["restored"], rep["already"], len(failed)) == (0, 6, 1)
    assert len(fetch_folder(quota_dovecot, user, "Restored")) == 6


def test_cli_target_full_is_reported_with_exit_3(
    quota_dovecot: Dovecot, tmp_path: Path, cache_dir: Path
) -> None:
    user = quota_user(quota_dovecot)
    path = tmp_path / "vault"
    count = 40  # 40 x 10 KiB: about a third does not fit in 300 KiB
    stored = make_vault(path, [Seed(padded_message(f"fill{i}", 10 * 1024)) for i in range(count)])
    env = cli_env(cache_dir, imap_password=user.password)
    args = restore_args(quota_dovecot, user, "--json")
    proc = run_cli(path, args, env)
    assert proc.returncode == 3, proc.stderr
    assert "the target is full" in proc.stderr
    rep = json_report(proc)
    restored, failed = rep["restored"], rep["failed"]
    assert isinstance(restored, int) and isinstance(failed, list)
    assert 0 < restored < count
    assert restored + len(failed) == count
    assert all("Quota exceeded" in f for f in failed)
    fetched = fetch_folder(quota_dovecot, user, "Restored")
    assert len(fetched) == restored
    expected = {dovecot_imap_view(s.data) for s in stored}
    assert all(f.data in expected for f in fetched)
    assert len({f.data for f in fetched}) == restored

    # Still full: the rest fail again, nothing is appended twice.
    proc = run_cli(path, args, env)
    assert proc.returncode == 3, proc.stderr
    rep = json_report(proc)
    assert (rep["restored"], rep["already"]) == (0, restored)
    assert len(fetch_folder(quota_dovecot, user, "Restored")) == restored


def test_more_messages_added_later_are_restored_incrementally(
    dovecot: Dovecot, dovecot_user: UserInfo, tmp_path: Path, cache_dir: Path
) -> None:
    path = tmp_path / "vault"
    first = make_vault(path, [Seed(dated_message(f"inc{i}", date=D4)) for i in range(4)])
    target = imaps_url(dovecot, dovecot_user)
    assert run_restore(path, target, dovecot, dovecot_user.password) == (4, 0, [])
    later = add_to_vault(path, [Seed(dated_message(f"inc{i}", date=D2)) for i in range(4, 7)])
    assert run_restore(path, target, dovecot, dovecot_user.password) == (3, 4, [])
    fetched = fetch_folder(dovecot, dovecot_user, "Restored")
    assert multiset(f.data for f in fetched) == multiset(
        dovecot_imap_view(s.data) for s in [*first, *later]
    )


def test_dry_run_counts_messages_already_on_the_target(
    dovecot: Dovecot, dovecot_user: UserInfo, tmp_path: Path, cache_dir: Path
) -> None:
    """A dry run says what a real run would append: messages the header/size scan finds
    in the folder (here put there from another vault, so no restore records) are
    "already there", not "would restore"."""
    lone_cr = dict(adversarial())["lone-cr"]
    seeds = [Seed(dated_message(f"dry-scan{i}", date=D4)) for i in range(4)] + [Seed(lone_cr)]
    first = make_vault(tmp_path / "a", seeds, source="a")
    target = imaps_url(dovecot, dovecot_user)
    assert run_restore(tmp_path / "a", target, dovecot, dovecot_user.password)[0] == len(first)
    extra = Seed(dated_message("dry-scan-new", date=D2))
    make_vault(tmp_path / "b", [*seeds, extra], source="b")
    with Vault.open(tmp_path / "b", PASSPHRASE.encode()) as vault:
        rep = restore(
            vault,
            target,
            password=lambda: dovecot_user.password,
            tls_ca_file=str(dovecot.ca_file),
            dry_run=True,
        )
    assert (rep.selected, rep.would_restore, rep.already, rep.restored) == (6, 1, 5, 0)
    assert len(fetch_folder(dovecot, dovecot_user, "Restored")) == len(first)
