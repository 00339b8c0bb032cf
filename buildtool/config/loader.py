"""`load`: the configuration file read, its top-level keys checked, overrides applied, the images read."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import reference
from ..errors import ConfigError
from .images import check_graph, image
from .model import BUILDERS, CREDENTIALS_K8S_SECRET, CREDENTIALS_PARAMETERS, PULL_POLICIES, PUSH_WAYS, Config
from .schema import DEFAULTS, TOP_KEYS, check_choice, check_keys, check_reference, fail, resolve

_K8S_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")


def load(
    path: Path, *, registry: str | None = None, repository: str | None = None, base_image: str | None = None
) -> Config:
    """Load `[tool.buildtool]` from `path`; `registry`, `repository` and `base_image` override the file's values."""
    path = path.resolve()
    data, table = _read(path)
    check_keys(path, "", table, TOP_KEYS)
    values = {**DEFAULTS, **{k: v for k, v in table.items() if k != "images"}}
    repository_from = ""
    if "repository" not in table and not repository:
        values["repository"], repository_from = _derived_repository(path, data), "[project].name"
    overrides = {"registry": registry, "repository": repository, "base_image": base_image}
    values.update({key: value for key, value in overrides.items() if value})
    _check_values(path, values, overridden=bool(registry))
    root = path.parent
    if _generated(path, root, "output", values["output"]) == _generated(path, root, "image_map", values["image_map"]):
        raise fail(
            path,
            "output",
            f"{values['output']!r} is also the image_map; the workflow would overwrite the "
            "lock: give them different files (default pipeline.yaml and image_map.yaml)",
        )
    images_table = table.get("images", {})
    if not images_table:
        raise fail(path, "images", "no images configured; add [tool.buildtool.images.NAME] tables")
    images = tuple(image(path, root, name, sub) for name, sub in sorted(images_table.items()))
    check_graph(path, images)
    own = f"{values['registry']}/{values['repository']}"
    return Config(
        path=path,
        root=root,
        registry=values["registry"],
        repository=values["repository"],
        base_image=values["base_image"],
        platform=values["platform"],
        image_map=root / values["image_map"],
        output=root / values["output"],
        pipeline=values["pipeline"],
        steps_module=values["steps_module"],
        image_pull_policy=values["image_pull_policy"],
        push_with=values["push_with"],
        compression_level=values["compression_level"],
        credentials=values["credentials"],
        images=images,
        external_images=_external_images(path, values.get("external_images", []), own),
        repository_from=repository_from,
        builder=values["builder"],
        templates=resolve(path, "templates", root / values["templates"]),
    )


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The whole TOML document and its [tool.buildtool] table."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run buildtool from the project folder or pass --config PATH") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    table = data.get("tool", {}).get("buildtool")
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: no [tool.buildtool] table; `buildtool init STEPS_MODULE` writes one")
    return data, table


def _check_values(path: Path, values: Mapping[str, Any], *, overridden: bool) -> None:
    """The top-level values, overrides applied: references, the registry, the choices, the pipeline."""
    check_reference(path, "base_image", values["base_image"])
    try:
        reference.parse(f"{values['registry']}/{values['repository']}/x")
    except ValueError:
        prefix = f"{values['registry']}/{values['repository']}"
        raise fail(path, "registry", f"{prefix!r} is not a valid registry host[:port]/repository prefix") from None
    _check_registry(path, values["registry"], overridden)
    if not _PLATFORM.match(values["platform"]):
        raise fail(path, "platform", f"{values['platform']!r} is not os/arch[/variant], e.g. linux/amd64")
    check_choice(path, "image_pull_policy", values["image_pull_policy"], PULL_POLICIES)
    check_choice(path, "builder", values["builder"], BUILDERS)
    check_choice(path, "push_with", values["push_with"], PUSH_WAYS)
    level = values["compression_level"]
    if isinstance(level, bool) or not 1 <= level <= 9:
        raise fail(path, "compression_level", f"{level!r} is not a gzip level from 1 (fastest) to 9 (smallest)")
    _check_credentials(path, values["credentials"])
    if ":" not in values["pipeline"]:
        raise fail(path, "pipeline", f"{values['pipeline']!r} is not 'module:function'")


def _check_credentials(path: Path, value: str) -> None:
    if value == CREDENTIALS_PARAMETERS:
        return
    name = value.removeprefix(CREDENTIALS_K8S_SECRET)
    if name == value or len(name) > 253 or not _K8S_SECRET_NAME.fullmatch(name):
        raise fail(
            path,
            "credentials",
            f'{value!r} is neither "{CREDENTIALS_PARAMETERS}" nor '
            f'"{CREDENTIALS_K8S_SECRET}NAME" with NAME a Kubernetes Secret name (lowercase letters, '
            "digits, '-' and '.'), e.g. \"k8s-secret:platform-credentials\"",
        )


def _check_registry(path: Path, registry: str, overridden: bool) -> None:
    """A first label without a dot, a port or `localhost` is a Docker Hub namespace, not a registry."""
    host = registry.split("/", 1)[0]
    if reference.looks_like_domain(host):
        return
    source = " (from --registry or BUILDTOOL_REGISTRY)" if overridden else ""
    raise fail(
        path,
        "registry",
        f"{registry!r}{source} has no dot, port or 'localhost', so images would go to "
        f"docker.io/{registry}/...; give the registry host (e.g. {host}.example.com or "
        f'{host}:5000), or registry = "docker.io" and repository = "{host}/..." '
        "for Docker Hub",
    )


def _generated(path: Path, root: Path, key: str, value: str) -> Path:
    """A file buildtool writes (image_map, output): inside the repository, and not a folder or the configuration."""
    target = resolve(path, key, root / value)
    if not target.is_relative_to(root):
        raise fail(
            path, key, f"{value!r} lies outside the repository {root}; keep it inside (compile --output takes any path)"
        )
    if target == path:
        raise fail(path, key, f"{value!r} is the configuration file itself; name a YAML file, e.g. {DEFAULTS[key]}")
    if target.is_dir():
        raise fail(path, key, f"{value!r} is a folder; name a file, e.g. {DEFAULTS[key]}")
    return target


def _derived_repository(path: Path, data: Mapping[str, Any]) -> str:
    """`[project].name` as a repository path component, when the file does not set `repository`."""
    project = data.get("project")
    name = project.get("name") if isinstance(project, dict) else None
    derived = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") if isinstance(name, str) else ""
    if not derived:
        raise fail(
            path,
            "repository",
            "missing, and no [project].name to derive it from; set it, e.g. "
            'repository = "myteam/myproject" '
            "(images are <registry>/<repository>/<image>)",
        )
    return derived


def _external_images(path: Path, values: Any, own: str) -> tuple[str, ...]:
    """`external_images`: repository names (no tag, no digest), none of them under buildtool's own prefix."""
    found = []
    for index, value in enumerate(values):
        key = f"external_images[{index}]"
        if not isinstance(value, str):
            raise fail(path, key, f"expected a string, got {type(value).__name__} {value!r}")
        try:
            parsed = reference.parse(value)
        except ValueError:
            raise fail(path, key, f"{value!r} is not an image repository (e.g. gcr.io/team/component)") from None
        if parsed.tag or parsed.digest:
            raise fail(
                path,
                key,
                f"{value!r} names a tag or digest; list the repository only "
                f"({parsed.repository}): the pipeline must pin its images by digest",
            )
        if (parsed.repository + "/").startswith(own + "/"):
            raise fail(
                path,
                key,
                f"{value!r} is under {own}, where buildtool pushes its own images; "
                "those are checked against the image map, not listed here",
            )
        found.append(parsed.repository)
    return tuple(sorted(set(found)))
