"""``popvault serve`` in a real browser: headless Chromium drives the viewer the way a
user does (token URL, list, search, message, downloads) and proves that a hostile HTML
message runs nothing and loads nothing remote."""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

from popvault.mailboxes.mbox import read_mbox
from tests.browser import mail
from tests.browser.conftest import Listener, Site
from tests.cli.helpers import REPO

#: Where the user guide's screenshot lives (rewritten with POPVAULT_UPDATE_SCREENSHOTS=1).
SCREENSHOT = REPO / "docs" / "images" / "serve.png"


def _rows(page: Any) -> list[str]:
    return [str(t) for t in page.locator("#messages tbody td.subject a").all_inner_texts()]


def _open_subject(page: Any, site: Site, subject: str) -> None:
    page.goto(f"{site.served.base}/?q=subject:%22{subject.replace(' ', '+')}%22")
    page.get_by_role("link", name=subject, exact=True).click()
    page.wait_for_selector("#subject")
    assert page.locator("#subject").inner_text() == subject


def test_the_token_url_logs_in_and_leaves_the_address_bar(logged_in: Any, site: Site) -> None:
    page = logged_in
    assert page.url == f"{site.served.base}/"  # the token is not kept in the address
    assert "token" not in page.url
    cookie = next(c for c in page.context.cookies() if c["name"].startswith("popvault_"))
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    total = len(site.mail.all())
    assert page.locator("#summary").inner_text().startswith(f"{total} messages")
    rows = _rows(page)
    assert len(rows) == 50
    assert rows[0] == "Hostile test message"  # newest delivery first


def test_no_token_or_a_wrong_one_is_403(page: Any, site: Site) -> None:
    base = site.served.base
    for url in (f"{base}/", f"{base}/?token=wrong", f"{base}/?q=weekly", f"{base}/mbox"):
        response = page.goto(url)
        assert response is not None and response.status == 403, url
        assert "needs the access token" in page.locator("#error").inner_text()
    assert not page.context.cookies()


def test_every_method_but_get_and_head_is_405(logged_in: Any, site: Site) -> None:
    api = logged_in.context.request  # holds the login cookie
    assert api.get(f"{site.served.base}/").status == 200
    assert api.head(f"{site.served.base}/").status == 200
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        r = api.fetch(f"{site.served.base}/", method=method, data="x")
        assert r.status == 405, method
        assert r.headers["allow"] == "GET, HEAD"


def test_paging_through_the_list(logged_in: Any, site: Site) -> None:
    page = logged_in
    first = _rows(page)
    page.click("#next")
    second = _rows(page)
    assert len(second) == len(site.mail.all()) - 50
    assert not set(first) & set(second)
    assert second[-1] == "weekly note 00"  # the oldest message ends the list
    assert page.locator("#next").count() == 0
    page.click("#prev")
    assert _rows(page) == first
    page.select_option("select[name=sort]", "oldest")
    page.click("form.filters button")
    oldest = _rows(page)
    assert oldest[:2] == ["weekly note 00", "weekly note 01"]
    page.click("#next")
    assert _rows(page) == first[: len(site.mail.all()) - 50][::-1]
    page.click("#prev")
    assert _rows(page) == oldest
    # a position past either end is an empty page, not an error
    for edge in (f"after={9e9!r}:{'f' * 64}", f"before=0.0:{'0' * 64}&sort=oldest"):
        response = page.goto(f"{site.served.base}/?{edge}&from=anna")
        assert response is not None and response.status == 200
        assert _rows(page) == []
    # the sender filter (part of the From header) pages newest first by cursor
    page.goto(f"{site.served.base}/?from=anna%40example")
    assert len(_rows(page)) == 50 and "Hostile test message" not in _rows(page)
    page.click("#next")
    assert _rows(page)[-1] == "weekly note 00"


def test_search_box_finds_the_planted_word_and_is_bookmarkable(logged_in: Any, site: Site) -> None:
    page = logged_in
    page.fill("input[name=q]", mail.PLANTED)
    page.press("input[name=q]", "Enter")
    page.wait_for_url(f"**/?q={mail.PLANTED}")
    assert _rows(page) == ["Quarterly figures"]
    assert page.locator(".snippet mark").first.inner_text().lower() == mail.PLANTED
    # the URL alone (a bookmark) gives the same page
    page.goto(f"{site.served.base}/?q={mail.PLANTED}")
    assert _rows(page) == ["Quarterly figures"]
    page.goto(f"{site.served.base}/?q=%22weekly+note%22+from:anna")
    assert len(_rows(page)) == 50


def test_a_query_that_cannot_be_understood_says_why(logged_in: Any, site: Site) -> None:
    response = logged_in.goto(f"{site.served.base}/?q=%22unclosed")
    assert response is not None and response.status == 400
    assert "closing quote" in logged_in.locator("#error").inner_text()
    assert "Traceback" not in logged_in.content()


def test_open_a_message_and_download_its_attachment_and_eml(logged_in: Any, site: Site) -> None:
    page = logged_in
    _open_subject(page, site, "Quarterly figures")
    headers = page.locator("#headers").inner_text()
    assert "anna@example.org" in headers
    assert mail.PLANTED in page.locator("#text-body").inner_text()
    with page.expect_download() as got:
        page.get_by_role("link", name=site.mail.attachment_name).click()
    download = got.value
    assert download.suggested_filename == site.mail.attachment_name
    assert Path(download.path()).read_bytes() == site.mail.attachment
    with page.expect_download() as got:
        page.click("#eml")
    assert Path(got.value.path()).read_bytes() == site.mail.attachment_msg


def test_inline_cid_image_is_served_from_the_message(logged_in: Any, site: Site) -> None:
    page = logged_in
    _open_subject(page, site, "Our new logo")
    frame = page.frame_locator("#html-body")
    logo = frame.locator("img[alt=logo]")
    logo.wait_for()
    width = logo.evaluate("img => img.complete ? img.naturalWidth : -1")
    for _ in range(50):
        if width > 0:
            break
        time.sleep(0.1)
        width = logo.evaluate("img => img.complete ? img.naturalWidth : -1")
    assert width == 24


def test_hostile_html_runs_nothing_and_loads_nothing(
    logged_in: Any, site: Site, listener: Listener
) -> None:
    page = logged_in
    listener.hits.clear()
    _open_subject(page, site, "Hostile test message")
    body = page.frame_locator("#html-body")
    body.get_by_text("end of the hostile message").wait_for()
    frame = next(f for f in page.frames if f.url.split("?")[0].endswith("/html"))
    # what the sanitizer left: no script, no handler, no remote URL, no javascript: link
    html = frame.locator("body").inner_html()
    for bad in ("<script", "onerror", "onload", "javascript:", "<iframe", "<meta", "<style"):
        assert bad not in html.lower(), bad
    assert f"127.0.0.1:{listener.port}" not in html
    assert page.locator("#blocked").inner_text().startswith("2 remote image")
    body.get_by_text("click me").click()  # its javascript: href is gone; nothing may happen
    page.wait_for_timeout(1500)  # time for a refresh, a fetch, an image to try
    assert page.title() != "pwned"
    assert frame.evaluate("() => document.title") != "pwned"
    # the sanitized HTML opened alone (top level) is still sandboxed by its own CSP
    direct = page.context.new_page()
    response = direct.goto(frame.url)
    assert response is not None
    assert "sandbox" in response.headers["content-security-policy"]
    direct.wait_for_timeout(500)
    assert direct.title() != "pwned"
    direct.close()
    assert listener.hits == []


def test_download_the_results_as_mbox(logged_in: Any, site: Site, tmp_path: Path) -> None:
    page = logged_in
    page.goto(f"{site.served.base}/?q=%22weekly+note+number+1%22")
    with page.expect_download() as got:
        page.click("#mbox")
    mbox = tmp_path / "results.mbox"
    shutil.copy(got.value.path(), mbox)
    found = sorted(m.data for m in read_mbox(mbox))
    want = sorted(m.replace(b"\r\n", b"\n") for m in site.mail.plain[1:2])
    assert found == want


def test_every_response_carries_the_security_headers(logged_in: Any, site: Site) -> None:
    api = logged_in.context.request
    base = site.served.base
    assert api.get(f"{base}/m/{'ab' * 32}").status == 404
    assert api.get(f"{base}/m/{'ab' * 32}/eml").status == 404
    for url in (f"{base}/", f"{base}/nothing", f"{base}/?q=%22"):
        h = api.get(url).headers
        assert "default-src 'none'" in h["content-security-policy"]
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "no-referrer"
        assert h["cache-control"] == "no-store"
    # a request naming another host (DNS rebinding) is refused
    req = urllib.request.Request(f"{base}/", headers={"Host": "evil.example"})  # noqa: S310
    try:
        urllib.request.urlopen(req, timeout=10)  # noqa: S310
        raise AssertionError("a foreign Host header was served")
    except urllib.error.HTTPError as exc:
        assert exc.code == 403


def test_screenshot_for_the_user_guide(logged_in: Any, site: Site, tmp_path: Path) -> None:
    """The user guide's picture, taken here (POPVAULT_UPDATE_SCREENSHOTS=1 rewrites
    docs/images/serve.png)."""
    page = logged_in
    page.set_viewport_size({"width": 1000, "height": 560})
    page.goto(f"{site.served.base}/?q=weekly+note")
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot))
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and 5_000 < len(data) < 400_000
    if os.environ.get("POPVAULT_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(shot, SCREENSHOT)
    assert SCREENSHOT.is_file(), "run with POPVAULT_UPDATE_SCREENSHOTS=1 once"
