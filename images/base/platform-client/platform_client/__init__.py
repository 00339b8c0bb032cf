"""Client for the training platform's HTTP API, as used by the pipeline's steps.

`PlatformClient` logs in, downloads, uploads and records a model's accuracy;
`platform_client.archive` extracts and builds zip archives safely;
`platform_client.dataset` reads the training dataset (needs numpy).
"""

from __future__ import annotations

from .archive import make_zip, safe_extract
from .client import FILE_KINDS, PlatformClient
from .errors import ArchiveError, DatasetError, PlatformError

__all__ = [
    "FILE_KINDS",
    "ArchiveError",
    "DatasetError",
    "PlatformClient",
    "PlatformError",
    "make_zip",
    "safe_extract",
]

__version__ = "0.1.0"
