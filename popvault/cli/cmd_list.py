"""``popvault list``: the messages in the vault, one a line or as JSON lines."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from json.encoder import encode_basestring

import click

from popvault.cli.context import Context, pass_ctx
from popvault.cli.filters import filter_options
from popvault.vault import Filter, MessageRow


def _iso(t: float | None) -> str | None:
    """``t`` as ISO 8601 UTC with ``Z``: datetime's text (microseconds when not zero),
    made with integer arithmetic, the date of each day once and the hours, minutes and
    seconds from tables (a listing's three dates were a quarter of its time a row);
    datetime itself outside years 1970-9999."""
    if t is None:
        return None
    if not 0 <= t < _YEAR_10000:
        return _datetime_iso(t)
    whole = int(t)
    us = 0
    if t != whole:
        us = round((t - whole) * 1e6)  # half to even, as datetime rounds
        if us == 1_000_000:
            us, whole = 0, whole + 1
    days, secs = divmod(whole, 86400)
    day = _DAYS.get(days) or _day(days)
    minutes, secs = divmod(secs, 60)
    if us:
        return f"{day}T{_HOURS_MINUTES[minutes]}:{_TWO_DIGITS[secs]}.{us:06d}Z"
    return f"{day}T{_HOURS_MINUTES[minutes]}:{_TWO_DIGITS[secs]}Z"


_YEAR_10000 = 253_402_300_800.0
#: "HH:MM" of each minute of a day, and "00" to "59".
_HOURS_MINUTES = tuple(f"{h:02d}:{m:02d}" for h in range(24) for m in range(60))
_TWO_DIGITS = tuple(f"{n:02d}" for n in range(60))
#: Days since 1970 -> their ISO date, made once each (up to :data:`_DAYS_KEPT`).
_DAYS: dict[int, str] = {}
_DAYS_KEPT = 65_536


def _day(days: int) -> str:
    if len(_DAYS) >= _DAYS_KEPT:
        _DAYS.clear()
    text = _DAYS[days] = (dt.date(1970, 1, 1) + dt.timedelta(days=days)).isoformat()
    return text


def _datetime_iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def _times(row: MessageRow) -> tuple[str | None, str | None, str | None]:
    """The delivery, received and archived times as text; the delivery is one of the
    other two (or the file time, :attr:`MessageRow.delivered`): its text is made once."""
    received, archived = _iso(row.received), _iso(row.first_archived)
    if row.received is not None:
        return received, received, archived
    if row.file_time is None:
        return archived, received, archived
    return _iso(row.file_time), received, archived


def row_json(row: MessageRow) -> dict[str, object]:
    """The documented ``list --json`` object (docs/cli.md)."""
    shown, received, archived = _times(row)
    return {
        "id": row.id.hex(),
        "size": row.size,
        "delivered": shown,
        "date": _iso(row.date),
        "received": received,
        "archived": archived,
        "from": row.from_,
        "to": row.to,
        "cc": row.cc,
        "subject": row.subject,
        "message_id": row.message_id,
        "accounts": row.accounts,
        "uidls": row.uidls,
        "sources": row.sources,
        "flags": row.flags,
    }


def _clip(s: str, n: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


@click.command("list")
@filter_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line (see docs/cli.md).")
@pass_ctx
def command(
    ctx: Context,
    flt: Filter,
    as_json: bool,
) -> None:
    """List archived messages, oldest delivery first."""
    with ctx.open_vault() as vault:
        if as_json:
            echo_lines(map(_row_text, vault.messages(flt)), escapes=False)
        else:
            echo_lines(map(text_line, vault.messages(flt)))


def echo_lines(lines: Iterable[str], *, escapes: bool = True) -> None:
    """Print ``lines`` (list's and search's rows) about :data:`_CHARS` characters at a
    time.

    ``escapes`` False: the lines hold no escape character (JSON escapes every control
    character), so click is not asked to strip terminal colour codes from them when the
    output is no terminal (a search of each batch, 0.3 µs a row)."""
    color = None if escapes else True
    batch: list[str] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line)
        if size >= _CHARS:
            click.echo("\n".join(batch), color=color)
            batch.clear()
            size = 0
    if batch:
        click.echo("\n".join(batch), color=color)


#: Characters written at once: the rows stream out in batches, not one write (and flush)
#: a row; batches small enough that their text and its bytes stay in the allocator's heap
#: (a 500-line batch of ``list --json``, 300 KB, was mapped and unmapped each time: 0.5 s
#: of system time on 300,000 rows).
_CHARS = 32_768
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def json_line(row: MessageRow, **extra: object) -> str:
    """A row as ``list --json`` prints it, with ``extra`` keys after its own."""
    if extra:
        return _ENCODE({**row_json(row), **extra})
    return _row_text(row)


def _row_text(row: MessageRow) -> str:
    """``_ENCODE(row_json(row))``, the same text without the dict and the encoder's walk
    over it (7 of a listing's ~27 µs a row; tests compare the two)."""
    shown, received, archived = _times(row)
    enc = encode_basestring
    flags = row.flags
    return (
        f'{{"id": "{row.id.hex()}", "size": {int.__repr__(row.size)},'
        f' "delivered": {_text(shown)}, "date": {_text(_iso(row.date))},'
        f' "received": {_text(received)}, "archived": {_text(archived)},'
        f' "from": {enc(row.from_)}, "to": {enc(row.to)}, "cc": {enc(row.cc)},'
        f' "subject": {enc(row.subject)}, "message_id": {enc(row.message_id)},'
        f' "accounts": {_texts(row.accounts)}, "uidls": {_texts(row.uidls)},'
        f' "sources": {_texts(row.sources)},'
        f' "flags": {"null" if flags is None else enc(flags)}}}'
    )


def _text(s: str | None) -> str:
    """A date's JSON (its ISO text holds nothing to escape)."""
    return "null" if s is None else f'"{s}"'


def _texts(items: list[str]) -> str:
    if len(items) == 1:  # most lists of a listing: one account, one source
        return f"[{encode_basestring(items[0])}]"
    return f"[{', '.join(map(encode_basestring, items))}]"


def text_line(row: MessageRow) -> str:
    """A row as ``list`` prints it: id, delivery, size, sender, subject."""
    return (
        f"{row.id.hex()[:12]}  {_minute(row.delivered)}  {row.size:>9}  {_clip(row.from_, 28):<28}"
        f"  {_clip(row.subject, 60)}"
    )


def _minute(t: float) -> str:
    """``t`` as ``YYYY-MM-DD HH:MM`` UTC: datetime's ``strftime`` of it, from
    :func:`_iso`'s text in years 1970-9999 (rounded to microseconds as datetime does)."""
    if 0 <= t < _YEAR_10000:
        text = _iso(t)
        assert text is not None
        return f"{text[:10]} {text[11:16]}"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")
