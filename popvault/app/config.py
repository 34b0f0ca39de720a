"""The configuration file (docs/config.md): read with tomllib, checked key by key.

Unknown keys and wrong types are errors naming the file, the line and the key. A
plaintext ``password`` is accepted only when the file is not readable by group or
others (as fetchmail insists). Nothing here ever prints a password.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from popvault.errors import UsageError
from popvault.pop3.settings import AUTH_METHODS
from popvault.tls import TLS_MODES, TlsMode

_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "a table",
}
_TOP_KEYS: dict[str, tuple[type, ...]] = {
    "vault": (str,),
    "passphrase_file": (str,),
    "passphrase_command": (str,),
    "accounts": (dict,),
    "s3": (dict,),
}
#: ``[s3]``: settings of the config's vault when it is an ``s3://`` URL. Each has an
#: environment variable, which wins (:func:`s3_environment`).
_S3_KEYS: dict[str, tuple[type, ...]] = {
    "storage_class": (str,),
    "upload_concurrency": (int,),
    "addressing": (str,),
}
S3_ENV = {
    "storage_class": "POPVAULT_S3_STORAGE_CLASS",
    "upload_concurrency": "POPVAULT_S3_UPLOAD_CONCURRENCY",
    "addressing": "POPVAULT_S3_ADDRESSING",
}
_ACCOUNT_KEYS: dict[str, tuple[type, ...]] = {
    "host": (str,),
    "port": (int,),
    "tls": (str,),
    "tls_ca_file": (str,),
    "tls_fingerprint": (str,),
    "user": (str,),
    "auth": (str,),
    "password": (str,),
    "password_command": (str,),
    "password_env": (str,),
    "password_file": (str,),
    "keep": (bool,),
    "delete": (bool,),
    "delete_after_days": (int,),
    "allow_delete_without_uidl": (bool,),
    "timeout": (int, float),
    "connect_timeout": (int, float),
    "pipeline_window": (int,),
}


@dataclass(frozen=True)
class AccountConfig:
    name: str
    host: str
    user: str
    port: int | None = None
    tls: TlsMode = "implicit"
    tls_ca_file: str | None = None
    tls_fingerprint: str | None = None
    auth: str | None = None
    password: str | None = field(default=None, repr=False)
    password_command: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    keep: bool = True
    delete: bool = False
    delete_after_days: int | None = None
    allow_delete_without_uidl: bool = False
    timeout: float = 60.0
    connect_timeout: float = 30.0
    pipeline_window: int = 16


@dataclass(frozen=True)
class Config:
    path: Path | None
    vault: str | None = None
    passphrase_file: str | None = None
    passphrase_command: str | None = None
    accounts: dict[str, AccountConfig] = field(default_factory=dict)
    #: The ``[s3]`` table, checked (key -> value as written).
    s3: dict[str, str | int] = field(default_factory=dict)


def default_config_path() -> Path:
    env = os.environ.get("POPVAULT_CONFIG")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "popvault" / "config.toml"


def _line_of(text: str, section: str | None, key: str) -> int | None:
    lines = text.splitlines()
    in_section = section is None
    for i, line in enumerate(lines, start=1):
        s = line.strip()
        if s.startswith("["):
            header = s.strip("[] ").replace('"', "")
            in_section = section is not None and header == section
            continue
        if in_section and re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", line):
            return i
    return None


def _line_of_section(text: str, section: str) -> int:
    for i, line in enumerate(text.splitlines(), start=1):
        if line.strip().strip("[] ").replace('"', "") == section:
            return i
    return 1


def _where(path: Path, text: str, section: str | None, key: str) -> str:
    line = _line_of(text, section, key)
    return f"{path}:{line}" if line else str(path)


def _check_types(
    path: Path,
    text: str,
    section: str | None,
    table: dict[str, Any],
    spec: dict[str, tuple[type, ...]],
) -> None:
    for key, value in table.items():
        if key not in spec:
            raise UsageError(
                f"{_where(path, text, section, key)}: unknown key '{key}'"
                + (f" in [{section}]" if section else ""),
                hint="see docs/config.md for the keys popvault knows",
            )
        types = spec[key]
        ok = isinstance(value, types) and not (bool not in types and isinstance(value, bool))
        if not ok:
            want = " or ".join(_TYPE_NAMES[t] for t in types)
            raise UsageError(f"{_where(path, text, section, key)}: '{key}' must be {want}")


def load_config(path: Path, *, required: bool = True) -> Config:
    """Parse and validate a config file; UsageError (exit 2) on any problem."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if not required:
            return Config(path=None)
        raise UsageError(
            f"config file {path} does not exist", hint="see samples/config.toml"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: {exc}") from None
    _check_types(path, text, None, data, _TOP_KEYS)
    accounts = {
        name: _account(path, text, name, table) for name, table in data.get("accounts", {}).items()
    }
    s3 = _s3(path, text, data.get("s3", {}))
    vault = data.get("vault")
    if vault is not None and not _is_url(vault):
        vault = str((path.parent / Path(vault).expanduser()).resolve())
    return Config(
        path=path,
        vault=vault,
        passphrase_file=data.get("passphrase_file"),
        passphrase_command=data.get("passphrase_command"),
        accounts=accounts,
        s3=s3,
    )


def _s3(path: Path, text: str, table: dict[str, Any]) -> dict[str, str | int]:
    """The ``[s3]`` table, checked with the rules the S3 backend applies to the same
    settings from the environment (one message for both)."""
    from popvault.vault import check_s3_setting

    _check_types(path, text, "s3", table, _S3_KEYS)
    for key, value in table.items():
        problem = check_s3_setting(key, value)
        if problem:
            raise UsageError(f"{_where(path, text, 's3', key)}: {problem}")
    return dict(table)


def s3_environment(cfg: Config, vault_in_use: str) -> dict[str, str]:
    """The environment variables the config's ``[s3]`` table sets for the vault in use:
    only for the config's own ``vault =`` (an ``s3://`` URL); a variable already set
    wins."""
    if not cfg.s3 or cfg.vault is None or vault_in_use != cfg.vault:
        return {}
    return {
        S3_ENV[key]: str(value) for key, value in cfg.s3.items() if S3_ENV[key] not in os.environ
    }


def _account(path: Path, text: str, name: str, table: object) -> AccountConfig:
    """One ``[accounts.NAME]`` table, checked; UsageError naming the file and line."""
    section = f"accounts.{name}"
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [accounts] entry '{name}' must be a table")
    _check_types(path, text, section, table, _ACCOUNT_KEYS)
    for req in ("host", "user"):
        if req not in table:
            line = _line_of_section(text, section)
            raise UsageError(f"{path}:{line}: [{section}] needs '{req}'")
    for key in ("timeout", "connect_timeout", "pipeline_window"):
        if key in table and table[key] <= 0:
            raise UsageError(f"{_where(path, text, section, key)}: '{key}' must be > 0")
    if table.get("keep") is True and (
        table.get("delete") is True or table.get("delete_after_days") is not None
    ):
        raise UsageError(
            f"{_where(path, text, section, 'keep')}: 'keep = true' contradicts"
            " 'delete' / 'delete_after_days'",
            hint="keep only one deletion policy in the account",
        )
    if table.get("delete") is True and table.get("delete_after_days") is not None:
        raise UsageError(
            f"{_where(path, text, section, 'delete')}: give 'delete' or"
            " 'delete_after_days', not both"
        )
    if table.get("tls", "implicit") not in TLS_MODES:
        raise UsageError(
            f"{_where(path, text, section, 'tls')}: tls must be one of {', '.join(TLS_MODES)}"
        )
    if table.get("auth") is not None and table["auth"] not in AUTH_METHODS:
        raise UsageError(
            f"{_where(path, text, section, 'auth')}: auth must be one of {', '.join(AUTH_METHODS)}"
        )
    if "password" in table:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UsageError(
                f"{_where(path, text, section, 'password')}: a plaintext password is only"
                f" accepted when {path} is not readable by group or others",
                hint=f"chmod 600 {path}, or use password_command / password_env",
            )
    if table.get("delete_after_days") is not None and table["delete_after_days"] < 0:
        raise UsageError(f"{_where(path, text, section, 'delete_after_days')}: must be >= 0")
    table = dict(table)
    if table.get("delete") or table.get("delete_after_days") is not None:
        table["keep"] = False
    return AccountConfig(name=name, **table)


def _config_path(config: str | None) -> tuple[Path, bool]:
    return (Path(config), True) if config else (default_config_path(), False)


def find_config_vault(config: str | None) -> str | None:
    path, required = _config_path(config)
    return load_config(path, required=required).vault


def cli_config(config: str | None) -> Config:
    """The config file the CLI uses: ``config`` (must exist), else the default path
    (may be missing: then an empty Config with ``path`` None)."""
    path, required = _config_path(config)
    return load_config(path, required=required)


def config_passphrase_applies(cfg: Config, vault_in_use: str) -> bool:
    """Whether the config's passphrase source is for the vault in use: only for its own
    vault, the one ``vault =`` names (compared as resolved paths). A config without
    ``vault =`` names no vault, so its passphrase source serves whichever vault is given
    (as it always did: a cron job with ``--vault`` and such a config keeps working)."""
    if cfg.vault is None:
        return True
    if _is_url(vault_in_use) or _is_url(cfg.vault):
        return vault_in_use == cfg.vault
    return Path(vault_in_use).expanduser().resolve() == Path(cfg.vault)


def _is_url(vault: str) -> bool:
    """A vault URL (``s3://...``), taken as written: never resolved as a path."""
    from popvault.vault import is_vault_url

    return is_vault_url(vault)
