"""Mapping of -ERR replies and RFC 2449/3206 response codes to exception classes."""

from __future__ import annotations

import pytest

from popvault.errors import (
    AuthenticationFailed,
    PermanentServerError,
    PopvaultError,
    TemporaryFailure,
)
from popvault.pop3.errors import error_for_reply, response_code


def test_response_code_extraction() -> None:
    assert response_code("[IN-USE] locked") == "IN-USE"
    assert response_code("[sys/temp] later") == "SYS/TEMP"
    assert response_code("[LOGIN-DELAY] 600") == "LOGIN-DELAY"
    assert response_code("no code") is None
    assert response_code("later [AUTH]") is None


@pytest.mark.parametrize(
    ("text", "login", "cls", "exit_code"),
    [
        ("[IN-USE] locked", True, TemporaryFailure, 75),
        ("[LOGIN-DELAY] wait", True, TemporaryFailure, 75),
        ("[SYS/TEMP] disk", False, TemporaryFailure, 75),
        ("[AUTH] bad password", True, AuthenticationFailed, 77),
        ("[SYS/PERM] gone", True, PermanentServerError, 1),
        ("bad password", True, AuthenticationFailed, 77),
        ("[UNKNOWN-CODE] bad password", True, AuthenticationFailed, 77),
        ("no such message", False, PermanentServerError, 1),
    ],
)
def test_error_classes(text: str, login: bool, cls: type[PopvaultError], exit_code: int) -> None:
    err = error_for_reply("mail.example", "PASS", text, login=login)
    assert isinstance(err, cls)
    assert err.exit_code == exit_code
    assert "mail.example" in err.message and "PASS" in err.message and text in err.message
    assert getattr(err, "response_code", "missing") == response_code(text)
