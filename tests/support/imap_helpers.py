"""What the IMAP tests do with a client beyond what restore needs: append one message and
read a folder back whole, built on the client's public commands only."""

from __future__ import annotations

from collections.abc import Generator, Sequence

from popvault.errors import ProtocolError
from popvault.imap import AppendItem, ImapClient
from popvault.imap.attributes import parse_internaldate

Fetched = tuple[int, bytes, float, tuple[str, ...]]


def append(
    client: ImapClient,
    folder: str,
    data: bytes,
    flags: Sequence[str] = (),
    internaldate: float | None = None,
) -> int | None:
    """Append one message to ``folder``; its UID when the server says it (UIDPLUS).

    A ``[TRYCREATE]`` answer creates the folder and appends once more; any other refusal
    raises :class:`MessageRejected`, and the connection stays usable.
    """
    item = AppendItem(data, flags, internaldate)
    [outcome] = client.append_many(folder, [item])
    if outcome.error is not None and outcome.error.code == "TRYCREATE":
        client.create_folder(folder)
        [outcome] = client.append_many(folder, [item])
    if outcome.error is not None:
        raise outcome.error
    return outcome.uid


def uid_fetch_all(client: ImapClient, folder: str) -> Generator[Fetched, None, None]:
    """Yield (UID, exact bytes, INTERNALDATE, flags) of every message of ``folder``.

    Read-only (EXAMINE, ``BODY.PEEK[]``), one message at a time; FETCH data without a
    body (an unsolicited flag update) is skipped. Closing the iterator early is safe.
    """
    fetched = client.uid_fetch(folder, "UID FLAGS INTERNALDATE BODY.PEEK[]")
    try:
        for attrs in fetched:
            body, uid = attrs.get("BODY[]"), attrs.get("UID")
            if body is None or not isinstance(uid, str) or not uid.isdigit():
                continue
            if not isinstance(body, bytes):
                raise ProtocolError("FETCH BODY[] is not a string")
            when, flags = attrs.get("INTERNALDATE"), attrs.get("FLAGS")
            yield (
                int(uid),
                body,
                parse_internaldate(when.decode("ascii", "replace"))
                if isinstance(when, bytes)
                else 0.0,
                tuple(f for f in flags if isinstance(f, str)) if isinstance(flags, list) else (),
            )
    finally:
        fetched.close()
