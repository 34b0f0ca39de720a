"""The pages of ``popvault serve``: the message list (filters, search, paging), the
message page, and the list's mbox download; HTML made by Jinja2 templates that escape
everything they are given (``popvault/web/templates``).

The list without a query, newest first, is :func:`popvault.app.search.search` without
words in date order (the cache walked newest first in its delivery index; ``?page=N``;
with a sender filter, a part of the From header as ``list --from``, the rows that hold
it, ``?skip=N``); oldest first it pages through the cache listing by a cursor in the
URL (:mod:`popvault.web.listing`).
With a query (``/?q=``, the query language of docs/search.md) it pages through
:func:`~popvault.app.search.search` by offset, by relevance or newest first. The filter
fields (account, sender, since, until) apply to both: with a query they become its
``account:``, ``from:``, ``after:`` and ``before:``.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parseaddr
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup

from popvault.app.common import parse_when
from popvault.errors import UsageError
from popvault.vault import Filter, MessageRow
from popvault.web import mime
from popvault.web.download import mbox_stream, size_text
from popvault.web.listing import Cursor, rows_after, rows_before

if TYPE_CHECKING:
    from popvault.web.viewer import Response, Viewer

#: Rows on a page.
PAGE = 50
#: Rows one page of the list filtered by sender reads at most (newest first).
SCAN = 20_000
#: Characters that mark a hit in a search snippet (never in mail text we show).
_MARKS = ("\x02", "\x03")
_SORTS = {
    "list": [("newest", "newest first"), ("oldest", "oldest first")],
    "search": [("rank", "best match first"), ("newest", "newest first")],
}


@dataclass(frozen=True)
class Form:
    """The list's filter fields as typed."""

    account: str = ""
    sender: str = ""
    since: str = ""
    until: str = ""

    @classmethod
    def of(cls, params: dict[str, str]) -> Form:
        return cls(
            params.get("account", "").strip(),
            params.get("from", "").strip(),
            params.get("since", "").strip(),
            params.get("until", "").strip(),
        )

    def params(self) -> dict[str, str]:
        pairs = {"account": self.account, "from": self.sender}
        pairs |= {"since": self.since, "until": self.until}
        return {k: v for k, v in pairs.items() if v}

    def filter(self) -> Filter:
        return Filter(
            account=self.account or None,
            since=parse_when(self.since, option="since") if self.since else None,
            until=parse_when(self.until, option="until") if self.until else None,
            from_=self.sender or None,
        )

    def query_terms(self) -> str:
        """The fields as search query terms."""
        terms = []
        for name, value in (("account", self.account), ("from", self.sender)):
            if value:
                terms.append(f'{name}:"{value.replace(chr(34), " ")}"')
        for name, value in (("after", self.since), ("before", self.until)):
            if value:
                terms.append(f"{name}:{value}")
        return " ".join(terms)


def when_text(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _snippet(text: str) -> Markup:
    """A search snippet with its hits in ``<mark>`` (everything else escaped)."""
    out: list[str] = []
    rest = text
    while True:
        start = rest.find(_MARKS[0])
        end = rest.find(_MARKS[1], start + 1)
        if start < 0 or end < 0:
            out.append(html.escape(rest.replace(_MARKS[0], "").replace(_MARKS[1], "")))
            break
        out.append(html.escape(rest[:start].replace(_MARKS[1], "")))
        out.append(f"<mark>{html.escape(rest[start + 1 : end])}</mark>")
        rest = rest[end + 1 :]
    return Markup("".join(out))  # noqa: S704 (every piece is escaped above)


def _row(row: MessageRow, snippet: str = "") -> dict[str, Any]:
    name, addr = parseaddr(row.from_)
    return {
        "id": row.id.hex(),
        "when": when_text(row.delivered),
        "from_": name or addr or row.from_,
        "from_full": row.from_,
        "subject": row.subject,
        "size": size_text(row.size),
        "accounts": ", ".join(row.accounts),
        "snippet": _snippet(snippet) if snippet else "",
    }


class Pages:
    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("popvault.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def render(self, template: str, **values: Any) -> bytes:
        values.setdefault("q", "")
        return self.env.get_template(template).render(**values).encode("utf-8")

    def _page(self, template: str, status: int = HTTPStatus.OK, **values: Any) -> Response:
        from popvault.web.viewer import Response

        return Response(status, body=self.render(template, **values))

    # ------------------------------------------------------------------ the list

    def listing(self, params: dict[str, str]) -> Response:
        q = params.get("q", "").strip()
        form = Form.of(params)
        base = {"q": q, "form": form, "filtered": bool(q or form.params())}
        try:
            if q:
                return self._search(q, form, params, base)
            return self._list(form, params, base)
        except UsageError as exc:
            return self._page(
                "list.html",
                HTTPStatus.BAD_REQUEST,
                **base,
                sort=params.get("sort", ""),
                sorts=_SORTS["search" if q else "list"],
                rows=[],
                summary="",
                error=exc.message,
                hint=exc.hint,
                mbox_url="",
                first_url="",
                prev_url="",
                next_url="",
                prev_label="",
                next_label="",
            )

    def _list(self, form: Form, params: dict[str, str], base: dict[str, Any]) -> Response:
        v = self.viewer
        flt = form.filter()
        sort = params.get("sort", "newest")
        if sort not in ("newest", "oldest"):
            raise UsageError(f"sort: {sort!r} is not one of newest, oldest")
        before = Cursor.parse(params["before"]) if params.get("before") else None
        after = Cursor.parse(params["after"]) if params.get("after") else None
        if sort == "newest" and before is None and after is None:
            if form.sender:
                return self._newest_from(form, params, base)
            return self._newest(form, params, base)
        # reading toward older rows: newest first unless going back, oldest first going back
        down = after is None if sort == "newest" else before is not None
        if down:
            rows = rows_before(v.vault, flt, before, PAGE + 1, v.lock)
        else:
            rows = rows_after(v.vault, flt, after, PAGE + 1, v.lock)
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        if (sort == "newest") != down:
            rows.reverse()  # a page read the other way, shown in the list's order
        # the links: toward the list's end ("next"), toward its start ("prev")
        came_back = after is not None if sort == "newest" else before is not None
        moved = before is not None or after is not None
        has_next = (more if not came_back else True) and bool(rows)
        has_prev = (more if came_back else moved) and bool(rows)
        keep = {**form.params(), **({"sort": sort} if sort != "newest" else {})}
        nxt_key, prv_key = ("before", "after") if sort == "newest" else ("after", "before")
        next_url = _url("/", {**keep, nxt_key: Cursor.of(rows[-1]).text()}) if has_next else ""
        prev_url = _url("/", {**keep, prv_key: Cursor.of(rows[0]).text()}) if has_prev else ""
        return self._page(
            "list.html",
            **base,
            sort=sort,
            sorts=_SORTS["list"],
            rows=[_row(r) for r in rows],
            summary=self._summary(form, bool(rows)),
            error="",
            hint="",
            mbox_url=_url("/mbox", keep),
            first_url=_url("/", keep) if moved else "",
            prev_url=prev_url,
            next_url=next_url,
            prev_label="newer" if sort == "newest" else "older",
            next_label="older" if sort == "newest" else "newer",
        )

    def _summary(self, form: Form, found: bool) -> str:
        if form.params():
            return f"messages matching the filters{'' if found else ': none'}"
        with self.viewer.lock:
            total = self.viewer.vault.message_count()
        return f"{total} messages in the vault"

    def _newest(self, form: Form, params: dict[str, str], base: dict[str, Any]) -> Response:
        """The list newest first, by offset: the search engine's date order without
        words (the cache walked newest first in its delivery index, filtered by account
        and dates in SQL), so any page costs milliseconds on any vault."""
        from popvault.app import search as engine

        v = self.viewer
        flt = form.filter()
        page = _page_number(params)
        query = engine.Query(
            accounts=(form.account,) if form.account else (), after=flt.since, before=flt.until
        )
        with v.lock:
            found = engine.search(v.vault, query, sort="date", limit=PAGE + 1, offset=page * PAGE)
            rows = [h.row for h in found]
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        summary = self._summary(form, bool(rows))
        shown = [_row(r) for r in rows]
        return self._offset_page(base, "newest", "list", shown, form.params(), page, more, summary)

    def _newest_from(self, form: Form, params: dict[str, str], base: dict[str, Any]) -> Response:
        """The list newest first with a sender filter: the date order of :meth:`_newest`
        read 500 rows at a time and kept when the From header contains the text (as
        ``list --from``), from ``?skip=N`` rows on, until a page is full or
        :data:`SCAN` rows were read (then "older" goes on from there)."""
        from popvault.app import search as engine

        v = self.viewer
        flt = form.filter()
        try:
            skip = max(0, int(params.get("skip", "0")))
        except ValueError:
            raise UsageError(f"skip: {params['skip']!r} is not a number") from None
        query = engine.Query(
            accounts=(form.account,) if form.account else (), after=flt.since, before=flt.until
        )
        text = form.sender.lower()
        rows: list[MessageRow] = []
        pos = skip  # the date-order position of the next row to look at
        resume: int | None = None  # where "older" starts
        step = min(500, SCAN)
        while resume is None:
            with v.lock:
                found = engine.search(v.vault, query, sort="date", limit=step, offset=pos)
                batch = [h.row for h in found]
            for row in batch:
                pos += 1
                if text in row.from_.lower():
                    if len(rows) == PAGE:
                        resume = pos - 1
                        break
                    rows.append(row)
            if resume is None and len(batch) < step:
                break  # the end of the list
            if resume is None and pos - skip >= SCAN:
                resume = pos
        keep = form.params()
        summary = self._summary(form, bool(rows))
        if resume is not None and len(rows) < PAGE:
            summary += f" (looked at {pos - skip} messages; older ones: next page)"
        return self._page(
            "list.html",
            **base,
            sort="newest",
            sorts=_SORTS["list"],
            rows=[_row(r) for r in rows],
            summary=summary,
            error="",
            hint="",
            mbox_url=_url("/mbox", keep),
            first_url=_url("/", keep) if skip else "",
            prev_url="",
            next_url=_url("/", {**keep, "skip": str(resume)}) if resume is not None else "",
            prev_label="newer",
            next_label="older",
        )

    def _offset_page(
        self,
        base: dict[str, Any],
        sort: str,
        kind: str,
        rows: list[dict[str, Any]],
        keep: dict[str, str],
        page: int,
        more: bool,
        summary: str,
    ) -> Response:
        """A list or search page paged by ``?page=N`` (``keep``: the other parameters)."""
        return self._page(
            "list.html",
            **base,
            sort=sort,
            sorts=_SORTS[kind],
            rows=rows,
            summary=summary,
            error="",
            hint="",
            mbox_url=_url("/mbox", keep),
            first_url=_url("/", keep) if page > 0 else "",
            prev_url=_url("/", {**keep, "page": str(page - 1)}) if page > 0 else "",
            next_url=_url("/", {**keep, "page": str(page + 1)}) if more else "",
            prev_label="newer" if kind == "list" else "previous",
            next_label="older" if kind == "list" else "next",
        )

    def _search(self, q: str, form: Form, params: dict[str, str], base: dict[str, Any]) -> Response:
        sort = params.get("sort", "rank")
        if sort not in ("rank", "newest"):
            raise UsageError(f"sort: {sort!r} is not one of rank, newest")
        page = _page_number(params)
        hits = list(self._hits(q, form, sort, limit=PAGE + 1, offset=page * PAGE))
        more = len(hits) > PAGE
        hits = hits[:PAGE]
        keep = {"q": q, **form.params(), **({"sort": sort} if sort != "rank" else {})}
        first = page * PAGE + 1
        if hits:
            summary = f"results {first}–{first + len(hits) - 1}{'' if more else ' (all)'}"
        else:
            summary = "no message matches" if page == 0 else "no more results"
        shown = [_row(h.row, h.snippet) for h in hits]
        return self._offset_page(base, sort, "search", shown, keep, page, more, summary)

    def _query(self, q: str, form: Form) -> Any:
        from popvault.app import search as engine

        text = " ".join(t for t in (q, form.query_terms()) if t)
        return engine.parse_query(text)  # QueryError (a UsageError): shown on the page

    def _found(self, q: str, form: Form, sort: str) -> Iterator[MessageRow]:
        """Every hit's row, read a window at a time (each under the lock)."""
        offset = 0
        while True:
            hits = list(self._hits(q, form, sort, limit=500, offset=offset))
            yield from (h.row for h in hits)
            if len(hits) < 500:
                return
            offset += len(hits)

    def _hits(
        self, q: str, form: Form, sort: str, *, limit: int | None, offset: int
    ) -> Iterator[Any]:
        from popvault.app import search as engine

        v = self.viewer
        query = self._query(q, form)
        with v.lock:
            if engine.pending_count(v.vault):  # messages a writer added since the start
                engine.index_new(v.vault)
            found = list(
                engine.search(
                    v.vault,
                    query,
                    sort="date" if sort == "newest" else "rank",
                    limit=limit,
                    offset=offset,
                    marks=_MARKS,
                )
            )
        yield from found

    # ------------------------------------------------------------------ downloads

    def mbox(self, params: dict[str, str]) -> Response:
        from popvault.web.viewer import DOWNLOAD_CSP, Response, content_disposition

        v = self.viewer
        q = params.get("q", "").strip()
        form = Form.of(params)
        if q:
            sort = "newest" if params.get("sort") == "newest" else "rank"
            self._query(q, form)  # a bad query is a 400 page, not a broken download
            rows: Iterator[MessageRow] = self._found(q, form, sort)
        else:
            flt = form.filter()
            rows = _listed(v, flt)
        r = Response(
            HTTPStatus.OK, "application/mbox", mbox_stream(v.vault, rows, v.lock), csp=DOWNLOAD_CSP
        )
        r.headers.append(("Content-Disposition", content_disposition("popvault-results.mbox")))
        return r

    # ------------------------------------------------------------------ a message

    def message(self, msg_id: bytes, params: dict[str, str]) -> Response:
        from popvault.web.viewer import VIEW_LIMIT

        v = self.viewer
        with v.lock:
            row = v.vault.message(msg_id)
        cap = v.capability(msg_id)
        too_large = row.size > VIEW_LIMIT
        if too_large:
            view = mime.MessageView(headers=[("From", row.from_), ("Subject", row.subject)])
        else:
            view = mime.view(v.read(msg_id), lambda n: f"/m/{msg_id.hex()}/img/{n}?k={cap}")
        attachments = [{**a.__dict__, "size_text": size_text(a.size)} for a in view.attachments]
        shown = mime.MessageView(
            view.headers, view.text, view.html, [], view.blocked_images, view.problems
        )
        accounts = ", ".join(row.accounts) or "no account"
        return self._page(
            "message.html",
            id=msg_id.hex(),
            subject=row.subject,
            view=_ViewShown(shown, attachments),
            meta=f"{when_text(row.first_archived)} UTC · {accounts} · {size_text(row.size)}",
            show_text=params.get("view") == "text",
            html_url=f"/m/{msg_id.hex()}/html?k={cap}",
            too_large=too_large,
            size=size_text(row.size),
        )


@dataclass(frozen=True)
class _ViewShown:
    """A message view with its attachments as the template shows them."""

    base: mime.MessageView
    attachments: list[dict[str, Any]]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


def _listed(viewer: Viewer, flt: Filter) -> Iterator[MessageRow]:
    """Every row matching ``flt``, oldest first, each read under the viewer's lock."""
    cursor: Cursor | None = None
    while True:
        rows = rows_after(viewer.vault, flt, cursor, 500, viewer.lock)
        yield from rows
        if len(rows) < 500:
            return
        cursor = Cursor.of(rows[-1])


def _page_number(params: dict[str, str]) -> int:
    try:
        return max(0, int(params.get("page", "0")))
    except ValueError:
        raise UsageError(f"page: {params['page']!r} is not a number") from None


def _url(path: str, params: dict[str, str]) -> str:
    return path + (f"?{urlencode(params)}" if params else "")
