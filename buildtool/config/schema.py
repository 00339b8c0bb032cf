"""The keys `[tool.buildtool]` takes, their kinds and defaults, and the checks the tables share."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import reference
from ..errors import ConfigError
from .model import CREDENTIALS_PARAMETERS

TOP_KEYS = {
    "registry": str,
    "repository": str,
    "base_image": str,
    "platform": str,
    "image_map": str,
    "output": str,
    "pipeline": str,
    "steps_module": str,
    "image_pull_policy": str,
    "push_with": str,
    "compression_level": int,
    "credentials": str,
    "images": dict,
    "external_images": list,
    "builder": str,
    "templates": str,
}
IMAGE_KEYS = {
    "context": str,
    "dockerfile": str,
    "step": str,
    "base": str,
    "base_image": str,
    "build_args": dict,
    "template": str,
    "template_vars": dict,
    "requirements": str,
    "layers": list,
    "installer": str,
}
KIND = {str: "a string", int: "an integer", dict: "a table", list: "a list"}
DEFAULTS = {
    "registry": "127.0.0.1:5000",
    "base_image": "python:3.11-slim",
    "platform": "linux/amd64",
    "image_map": "image_map.yaml",
    "output": "pipeline.yaml",
    "pipeline": "pipeline.training_pipeline:make_pipeline",
    "steps_module": "pipeline.steps",
    "image_pull_policy": "IfNotPresent",
    "push_with": "auto",
    "compression_level": 6,
    "credentials": CREDENTIALS_PARAMETERS,
    "builder": "auto",
    "templates": "images/templates",
}
# Build args and rendered Dockerfiles are recorded in the image's history: refuse names that look like
# secrets, and values that carry a URL credential (https://user:password@host/...).
SECRET_NAME = re.compile(
    r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|CREDENTIAL|PRIVATE|AUTH(?!OR)|COOKIE|NETRC|API_?KEY|ACCESS_?KEY"
    r"|(?:^|_)(?:KEY|PAT|PASS|PWD)(?:_|$)",
    re.I,
)
URL_CREDENTIAL = re.compile(r"://[^/?#@\s:]*:[^/?#\s]*@")


def fail(path: Path, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: [tool.buildtool] {key}: {problem}")


def check_keys(path: Path, prefix: str, table: Mapping[str, Any], schema: Mapping[str, type]) -> None:
    for key, value in table.items():
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(schema))}"
            raise fail(path, f"{prefix}{key}", f"unknown key; {hint}")
        if not isinstance(value, schema[key]):
            raise fail(path, f"{prefix}{key}", f"expected {KIND[schema[key]]}, got {type(value).__name__} {value!r}")


def check_choice(path: Path, key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise fail(path, key, f"{value!r} is not one of {', '.join(allowed)}")


def refuse_secret(path: Path, key: str, name: str, value: Any, *, named: str, carried: str) -> None:
    """Fail when `name` looks like a secret or `value` carries a URL credential (the value is never shown).

    `named` and `carried` say where the value would end up, for each of the two cases."""
    if SECRET_NAME.search(name):
        raise fail(path, key, f"looks like a secret; {named}, pass secrets at run time instead")
    if isinstance(value, str) and URL_CREDENTIAL.search(value):
        raise fail(
            path, key, f"the value carries a user:password@ credential; {carried}, pass secrets at run time instead"
        )


def check_reference(path: Path, key: str, value: str) -> None:
    try:
        reference.parse(value)
    except ValueError:
        raise fail(path, key, f"{value!r} is not a valid image reference (e.g. python:3.11-slim)") from None


def resolve(path: Path, key: str, target: Path) -> Path:
    """`target` with links followed; a link loop is a ConfigError, not a crash."""
    try:
        return target.resolve()
    except (OSError, RuntimeError) as exc:
        raise fail(path, key, f"{target} cannot be resolved ({exc.__class__.__name__}); fix the link") from None
