"""The accounts file: ``accounts: {<access key>: <secret key>}``, created with a random secret if missing."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ...errors import ConfigError, PlatformError
from ...util import yaml_io

MAX_ACCOUNTS_BYTES = 1024 * 1024  # a few lines per account


def ensure_accounts_file(data_dir: Path | str) -> tuple[Path, bool]:
    """``<data>/accounts.yaml``, created with account ``dev`` and a random secret (mode 0600) if missing.

    Returns the path and whether it was created now.
    """
    data = Path(data_dir)
    path = data / "accounts.yaml"
    try:
        data.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path, False
    except OSError as exc:
        raise PlatformError(f"cannot create the accounts file {path}: {exc.strerror or exc}; check --data") from exc
    with os.fdopen(fd, "w") as handle:
        handle.write(f"accounts:\n  dev: {secrets.token_urlsafe(24)}\n")
    return path, True


def load_accounts(path: Path | str) -> dict[str, str]:
    """Read accounts from a YAML or JSON file with the strict reader (no duplicate keys, no aliases)."""
    path = Path(path)
    try:
        text = yaml_io.read_text(path, max_bytes=MAX_ACCOUNTS_BYTES)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: cannot read the accounts file: {exc.strerror or exc}") from None
    except yaml_io.YamlProblem as exc:
        raise ConfigError(f"{path}: cannot read the accounts file: {exc}") from None
    try:
        document = yaml_io.parse(text)  # JSON is YAML too
    except yaml_io.YamlProblem as exc:
        shape = "accounts: {<access key>: <secret>}"
        raise ConfigError(f"{path}: {exc}; an accounts file is YAML or JSON: {shape}") from None
    accounts = document.get("accounts") if isinstance(document, dict) else None
    if not isinstance(accounts, dict) or not accounts:
        raise ConfigError(
            f"{path}: expected a mapping 'accounts' of access key -> secret key, e.g. accounts: {{dev: <secret>}}"
        )
    for key, value in accounts.items():
        if not isinstance(key, str) or not key or not isinstance(value, str) or not value:
            raise ConfigError(
                f"{path}: accounts.{yaml_io.shown(key)}: access key and secret key must both be non-empty strings"
            )
    return dict(accounts)
