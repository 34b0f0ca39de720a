"""How use cases report progress without knowing about terminals (STYLE.md: app layer).

Use cases call a :class:`Progress`; the CLI implements it with tqdm bars and summary
lines, tests and the library default use :class:`NullProgress`.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, label: str, total: int | None = None, total_bytes: int | None = None) -> None:
        """A new phase (e.g. one account); totals when known."""

    def advance(self, messages: int = 1, nbytes: int = 0) -> None:
        """Work done in the current phase."""

    def done(self) -> None:
        """The current phase ended."""

    def info(self, text: str) -> None:
        """A line for the user (silenced by --quiet)."""

    def warn(self, text: str) -> None:
        """A warning (shown unless --quiet)."""


class NullProgress:
    """Reports nothing; collects warnings for callers that want them."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.infos: list[str] = []

    def start(self, label: str, total: int | None = None, total_bytes: int | None = None) -> None:
        pass

    def advance(self, messages: int = 1, nbytes: int = 0) -> None:
        pass

    def done(self) -> None:
        pass

    def info(self, text: str) -> None:
        self.infos.append(text)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
