"""The vault: docs/format.md made code. :class:`Vault` is the facade; the names here are
all that the rest of popvault (and a program using it) needs.

The names load on first use (PEP 562), so that importing one light module of this
package (the helper process imports :mod:`popvault.vault.ids` and
:mod:`popvault.vault.meta`) does not load the storage code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from popvault.vault.cache import Filter as Filter
    from popvault.vault.cache import MessageRow as MessageRow
    from popvault.vault.check import CheckReport as CheckReport
    from popvault.vault.config import as_backend as as_backend
    from popvault.vault.config import is_vault_url as is_vault_url
    from popvault.vault.config import read_config as read_config
    from popvault.vault.config import upgrade_config as upgrade_config
    from popvault.vault.crypto import KdfParams as KdfParams
    from popvault.vault.fts import SearchDoc as SearchDoc
    from popvault.vault.fts import SearchIndex as SearchIndex
    from popvault.vault.fts import SearchSql as SearchSql
    from popvault.vault.fts import index_text as index_text
    from popvault.vault.ids import (
        PreparedMessage as PreparedMessage,
    )
    from popvault.vault.ids import (
        prepare_message as prepare_message,
    )
    from popvault.vault.keys import import_key_export as import_key_export
    from popvault.vault.lock import break_lock as break_lock
    from popvault.vault.meta import MessageMeta as MessageMeta
    from popvault.vault.records import AddResult as AddResult
    from popvault.vault.records import SourceInfo as SourceInfo
    from popvault.vault.s3net import storage_traffic as storage_traffic
    from popvault.vault.s3settings import check_s3_setting as check_s3_setting
    from popvault.vault.split import header_end as header_end
    from popvault.vault.vault import Vault as Vault
    from popvault.vault.writer import MessageWriter as MessageWriter

_WHERE = {
    "AddResult": "records",
    "CheckReport": "check",
    "Filter": "cache",
    "KdfParams": "crypto",
    "MessageMeta": "meta",
    "MessageRow": "cache",
    "MessageWriter": "writer",
    "PreparedMessage": "ids",
    "SearchDoc": "fts",
    "SearchIndex": "fts",
    "SearchSql": "fts",
    "SourceInfo": "records",
    "Vault": "vault",
    "as_backend": "config",
    "is_vault_url": "config",
    "break_lock": "lock",
    "check_s3_setting": "s3settings",
    "storage_traffic": "s3net",
    "import_key_export": "keys",
    "index_text": "fts",
    "prepare_message": "ids",
    "read_config": "config",
    "header_end": "split",
    "upgrade_config": "config",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'popvault.vault' has no attribute {name!r}")
    return getattr(importlib.import_module(f"popvault.vault.{module}"), name)
