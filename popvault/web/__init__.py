"""``popvault serve``: a local, read-only web viewer of a vault.

:class:`Server` listens on 127.0.0.1 only and hands each request to
:class:`~popvault.web.viewer.Viewer` (token, methods, security headers), which shows the
message list and search (:mod:`~popvault.web.pages`, paged by
:mod:`~popvault.web.listing`), messages with their HTML sanitized
(:mod:`~popvault.web.mime`) and downloads (:mod:`~popvault.web.download`). Nothing in
this package writes to the vault. docs/security.md says what protects the viewer.
"""

from __future__ import annotations

from popvault.web.server import Server

__all__ = ["Server"]
