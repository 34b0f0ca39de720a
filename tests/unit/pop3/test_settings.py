"""Pop3Settings validation and pop3s:// / pop3:// URL parsing."""

from __future__ import annotations

import pytest

from popvault.errors import UsageError
from popvault.pop3.settings import Pop3Settings, Pop3Url, parse_pop3_url


def test_pop3s_url_defaults() -> None:
    assert parse_pop3_url("pop3s://alice@mail.example.com") == Pop3Url(
        host="mail.example.com", user="alice", port=None, tls="implicit"
    )


def test_pop3_url_defaults_to_starttls() -> None:
    url = parse_pop3_url("pop3://bob@127.0.0.1:1110")
    assert (url.tls, url.port, url.host) == ("starttls", 1110, "127.0.0.1")


@pytest.mark.parametrize("mode", ["starttls", "none"])
def test_pop3_url_tls_query(mode: str) -> None:
    assert parse_pop3_url(f"pop3://bob@host?tls={mode}").tls == mode


def test_percent_encoded_user() -> None:
    assert parse_pop3_url("pop3s://alice%40example.com@host:995").user == "alice@example.com"


def test_ipv6_host() -> None:
    url = parse_pop3_url("pop3s://u@[::1]:9950")
    assert (url.host, url.port) == ("::1", 9950)


def test_auth_parameter() -> None:
    assert parse_pop3_url("pop3s://u;AUTH=+APOP@host").auth == "apop"
    assert parse_pop3_url("pop3s://u;auth=xoauth2@host").auth == "xoauth2"
    assert parse_pop3_url("pop3s://u;AUTH=*@host").auth is None


@pytest.mark.parametrize(
    "url",
    [
        "imap://u@host",
        "pop3s://host",
        "pop3s://u@",
        "pop3s://u:secret@host",
        "pop3s://u@host:99999",
        "pop3s://u@host:abc",
        "pop3s://u@host:0",
        "pop3s://u@host/INBOX",
        "pop3s://u@host#frag",
        "pop3s://u@host?tls=none",
        "pop3://u@host?tls=maybe",
        "pop3://u@host?foo=bar",
        "pop3://u;auth=kerberos@host",
        "pop3://u%0d%0aQUIT@host",
        "not a url",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_pop3_url(url)
    assert info.value.exit_code == 2
    assert "secret" not in info.value.message


def test_url_to_settings() -> None:
    settings = parse_pop3_url("pop3://u@h?tls=none").settings("pw", timeout=5.0)
    assert (settings.host, settings.user, settings.password, settings.tls) == (
        "h",
        "u",
        "pw",
        "none",
    )
    assert settings.timeout == 5.0 and settings.effective_port == 110


def test_settings_defaults_and_repr() -> None:
    settings = Pop3Settings(host="h", user="u", password="hunter2")
    assert settings.effective_port == 995
    assert "hunter2" not in repr(settings)
    assert Pop3Settings(host="h", user="u", password="x", port=1).effective_port == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tls": "maybe"},
        {"auth": "kerberos"},
        {"port": 70000},
        {"user": "a\r\nQUIT"},
        {"password": "a\nb"},
        {"host": ""},
    ],
)
def test_settings_validation(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"host": "h", "user": "u", "password": "p"}
    base.update(kwargs)
    with pytest.raises(UsageError):
        Pop3Settings(**base)  # type: ignore[arg-type]
