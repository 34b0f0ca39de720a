"""Migrate use case: a POP3 account into an IMAP folder, through the vault, exactly once.

``migrate`` is a backup of the source account followed by a restore of that account's
messages to the target, then a completeness check: every UIDL listed on the source is
archived in the vault and every such message is recorded as restored to the target.
Both halves are resumable, so an interrupted migration is finished by running it again.
The source is never deleted from (run ``popvault backup --delete`` later if wanted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from popvault.app.backup import AccountReport, backup_account
from popvault.app.config import AccountConfig
from popvault.app.progress import NullProgress, Progress
from popvault.app.restore import DateFrom, RestoreReport, restore
from popvault.vault import Filter, Vault


@dataclass
class MigrateReport:
    backup: AccountReport
    restore: RestoreReport
    on_source: int = 0
    in_vault: int = 0
    on_target: int = 0
    missing_in_vault: list[str] = field(default_factory=list)
    missing_on_target: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing_in_vault and not self.missing_on_target

    def to_json(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "on_source": self.on_source,
            "in_vault": self.in_vault,
            "on_target": self.on_target,
            "missing_in_vault": self.missing_in_vault,
            "missing_on_target": self.missing_on_target,
            "backup": self.backup.to_json(),
            "restore": self.restore.to_json(),
        }


def migrate(
    vault: Vault,
    source: AccountConfig,
    source_password: str,
    target: str,
    target_password: Callable[[], str],
    *,
    tls_ca_file: str | None = None,
    tls_fingerprint: str | None = None,
    date_from: DateFrom = "auto",
    progress: Progress | None = None,
) -> MigrateReport:
    """Back up ``source``, restore it to ``target``, and report completeness."""
    progress = progress or NullProgress()
    keep = AccountConfig(
        **{**source.__dict__, "keep": True, "delete": False, "delete_after_days": None}
    )
    b = backup_account(vault, keep, source_password, progress=progress)
    r = restore(
        vault,
        target,
        Filter(account=source.name),
        password=target_password,
        tls_ca_file=tls_ca_file,
        tls_fingerprint=tls_fingerprint,
        date_from=date_from,
        progress=progress,
    )
    rep = MigrateReport(backup=b, restore=r, on_source=len(b.server_uidls))
    known = vault.known_uidls(source.name)
    restored = vault.restored(r.target)
    for uidl in b.server_uidls:
        mid = known.get(uidl)
        if mid is None:
            rep.missing_in_vault.append(uidl)
            continue
        rep.in_vault += 1
        if mid in restored:
            rep.on_target += 1
        else:
            rep.missing_on_target.append(uidl)
    return rep
