"""How a local run shows what it reports: values on one line, secrets masked."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MASK", "escape", "masked"]

MASK = "***"


def escape(text: object) -> str:
    """`text` for display on one line: every control or other non-printable character repr-escaped."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def masked(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by ***, longest first (so no part of a longer one shows)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
