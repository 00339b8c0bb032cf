"""Errors raised by the platform client, its archive helpers and its dataset loader."""

from __future__ import annotations


class PlatformError(RuntimeError):
    """A call to the training platform failed.

    The message names the call, the uid and what the platform answered; it
    never contains the secret key.
    """


class ArchiveError(ValueError):
    """A zip archive is corrupt or unsafe to extract (the message names the member)."""


class DatasetError(ValueError):
    """A training dataset file is not in a format this package reads."""
