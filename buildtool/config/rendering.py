"""An image's template keys (`template`, `template_vars`, `requirements`, `layers`, `installer`), checked here
so that rendering gets names it can trust."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .model import INSTALLERS
from .schema import check_choice, fail, refuse_secret

_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TEMPLATE_KEYS = ("template_vars", "requirements", "layers", "installer")


def rendering(path: Path, prefix: str, context: Path, table: Mapping[str, Any]) -> dict[str, Any]:
    """The ImageConfig fields of the template keys; {} for an image without a template (which may not set them)."""
    if "template" not in table:
        for key in _TEMPLATE_KEYS:
            if key in table:
                raise fail(
                    path,
                    prefix + key,
                    'only an image with a template uses it; set template = "..." '
                    "(a file of the templates folder) or remove the key",
                )
        return {}
    template = table["template"]
    if not _TEMPLATE_NAME.match(template):
        raise fail(
            path,
            prefix + "template",
            f"{template!r} is not a file name of the templates folder (letters, digits, '.', '_' and '-'; no folders)",
        )
    requirements = table.get("requirements")
    if requirements is not None:
        target = (context / requirements).resolve()
        if not target.is_relative_to(context) or not target.is_file():
            raise fail(
                path,
                prefix + "requirements",
                f"no file {requirements!r} in the context {context}; name the hash-locked requirements file inside it",
            )
    groups = _layers(path, prefix, table.get("layers", []), requirements)
    _check_template_vars(path, prefix, table.get("template_vars", {}))
    installer = table.get("installer", "uv")
    check_choice(path, prefix + "installer", installer, INSTALLERS)
    return {
        "template": template,
        "template_vars": dict(table.get("template_vars", {})),
        "requirements": requirements,
        "layers": groups,
        "installer": installer,
    }


def _layers(path: Path, prefix: str, layers: list[Any], requirements: str | None) -> tuple[tuple[str, ...], ...]:
    """The layer groups: each a non-empty list of package names, cut from the requirements lock."""
    if layers and requirements is None:
        raise fail(path, prefix + "layers", 'layer groups are cut from a lock: set requirements = "..." too')
    groups = []
    for index, group in enumerate(layers):
        if not isinstance(group, list) or not group or not all(isinstance(root, str) and root for root in group):
            raise fail(
                path,
                f"{prefix}layers[{index}]",
                f'expected a non-empty array of package names, got {group!r}, e.g. layers = [["tensorflow-cpu"]]',
            )
        groups.append(tuple(group))
    return tuple(groups)


def _check_template_vars(path: Path, prefix: str, variables: Mapping[str, Any]) -> None:
    # Rendered into a committed Dockerfile, and from there into the image's history: never a secret.
    for key, value in _flat(variables):
        refuse_secret(
            path,
            f"{prefix}template_vars.{key}",
            key.rsplit(".", 1)[-1],
            value,
            named="rendered Dockerfiles are committed and recorded in the image history",
            carried="rendered Dockerfiles are committed",
        )


def _flat(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, leaf value) of every value in nested tables and arrays (arrays by index)."""
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _flat(v, f"{prefix}{k}.")]
    if isinstance(value, list):
        return [pair for n, v in enumerate(value) for pair in _flat(v, f"{prefix}{n}.")]
    return [(prefix.rstrip("."), value)]
