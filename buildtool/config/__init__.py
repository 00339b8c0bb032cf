"""`[tool.buildtool]` in pyproject.toml, loaded into frozen dataclasses.

Every problem is a ConfigError with one line naming the file, the key and the fix. `model.py` holds the
types and the allowed values, `loader.py` reads the file and its top-level keys, `images.py` one
`[tool.buildtool.images.NAME]` table each, `rendering.py` an image's template keys, and `schema.py` the keys'
kinds and defaults with the checks they share.
"""

from __future__ import annotations

from .loader import load
from .model import (
    BASE_IMAGE_ARG,
    BUILDERS,
    CREDENTIALS_K8S_SECRET,
    CREDENTIALS_PARAMETERS,
    INSTALLERS,
    PULL_POLICIES,
    PUSH_WAYS,
    Config,
    ImageConfig,
    select,
)

__all__ = [
    "BASE_IMAGE_ARG",
    "BUILDERS",
    "CREDENTIALS_K8S_SECRET",
    "CREDENTIALS_PARAMETERS",
    "INSTALLERS",
    "PULL_POLICIES",
    "PUSH_WAYS",
    "Config",
    "ImageConfig",
    "load",
    "select",
]
