"""One `[tool.buildtool.images.NAME]` table into an ImageConfig, and the images checked as a whole."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..gate.kfp_names import component_name
from .model import BASE_IMAGE_ARG, ImageConfig
from .rendering import rendering
from .schema import IMAGE_KEYS, check_keys, check_reference, fail, refuse_secret, resolve

_IMAGE_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


def image(path: Path, root: Path, name: str, table: Mapping[str, Any]) -> ImageConfig:
    prefix = f"images.{name}."
    if not isinstance(table, dict):
        raise fail(path, f"images.{name}", "expected a table ([tool.buildtool.images.NAME])")
    if not _IMAGE_NAME.match(name):
        raise fail(
            path, f"images.{name}", "image names are lowercase letters, digits and . _ - (they become repository names)"
        )
    check_keys(path, prefix, table, IMAGE_KEYS)
    context = _context(path, root, prefix, table)
    dockerfile = table.get("dockerfile", "Dockerfile")
    if not (context / dockerfile).resolve().is_relative_to(context):
        raise fail(path, f"{prefix}dockerfile", f"{dockerfile!r} is outside the context {context}; keep it inside")
    rendered = rendering(path, prefix, context, table)
    # A rendered Dockerfile may be missing: `buildtool render` writes it, `check` and `build` say so.
    if "template" not in table and not (context / dockerfile).is_file():
        raise fail(
            path,
            f"{prefix}dockerfile",
            f'no Dockerfile at {context / dockerfile}; create it or set dockerfile = "..." relative to the context',
        )
    if "base" in table and "base_image" in table:
        raise fail(
            path, prefix + "base", "set either base (a project image) or base_image (an external reference), not both"
        )
    if "base_image" in table:
        check_reference(path, prefix + "base_image", table["base_image"])
    return ImageConfig(
        name=name,
        context=context,
        dockerfile=dockerfile,
        step=table.get("step"),
        base=table.get("base"),
        base_image=table.get("base_image"),
        build_args=_build_args(path, prefix, table.get("build_args", {})),
        **rendered,
    )


def _context(path: Path, root: Path, prefix: str, table: Mapping[str, Any]) -> Path:
    """The build context: an existing folder inside the repository, with a .dockerignore."""
    if "context" not in table:
        raise fail(path, f"{prefix}context", 'missing; set the build context folder, e.g. context = "images/{name}"')
    context = resolve(path, f"{prefix}context", root / table["context"])
    if not context.is_relative_to(root):
        raise fail(
            path,
            f"{prefix}context",
            f"folder {context} lies outside the repository {root}; "
            "keep build contexts inside it, where review sees what they send",
        )
    if not context.is_dir():
        raise fail(path, f"{prefix}context", f"folder {context} does not exist")
    if not (context / ".dockerignore").is_file():
        raise fail(
            path,
            f"{prefix}context",
            f"no .dockerignore in {context}; add one that lets through only what "
            "the Dockerfile copies (e.g. '*' then '!Dockerfile')",
        )
    return context


def _build_args(path: Path, prefix: str, args: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The build arguments, sorted; never BASE_IMAGE (buildtool sets it) and never a secret."""
    for arg, value in args.items():
        key = f"{prefix}build_args.{arg}"
        if not isinstance(value, str):
            raise fail(path, key, f"expected a string, got {type(value).__name__} {value!r}")
        if arg == BASE_IMAGE_ARG:
            raise fail(path, key, "BASE_IMAGE is set by buildtool from base/base_image; set those instead")
        refuse_secret(
            path,
            key,
            arg,
            value,
            named="build args are recorded in the image history",
            carried="build args are recorded in the image history",
        )
    return tuple(sorted(args.items()))


def check_graph(path: Path, images: tuple[ImageConfig, ...]) -> None:
    """Every base names an image, each step is served once under a component name of its own, no cycle."""
    _check_components(path, _served_steps(path, images))
    bases = {i.name: i.base for i in images}
    for start in bases:
        seen, current = [start], bases[start]
        while current:
            if current in seen:
                raise fail(
                    path,
                    f"images.{start}.base",
                    f"images build on each other in a cycle: {' -> '.join(seen + [current])}",
                )
            seen.append(current)
            current = bases[current]


def _served_steps(path: Path, images: tuple[ImageConfig, ...]) -> dict[str, str]:
    """Step -> the image serving it; each base an image of the project, each step served once."""
    names = {i.name for i in images}
    steps: dict[str, str] = {}
    for image in images:
        if image.base and image.base not in names:
            close = difflib.get_close_matches(image.base, sorted(names), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; images are: {', '.join(sorted(names))}"
            raise fail(path, f"images.{image.name}.base", f"no image named {image.base!r}{hint}")
        if image.step:
            if image.step in steps:
                raise fail(
                    path,
                    f"images.{image.name}.step",
                    f"step {image.step!r} is already served by image {steps[image.step]!r}",
                )
            steps[image.step] = image.name
    return steps


def _check_components(path: Path, steps: dict[str, str]) -> None:
    """No two steps get the same kfp component name: verify tells templates apart by it."""
    components: dict[str, str] = {}
    for step, name in sorted(steps.items()):
        component = component_name(step)
        if component in components:
            raise fail(
                path,
                f"images.{name}.step",
                f"steps {components[component]!r} and {step!r} get the same kfp "
                f"component name {component!r}, so their templates cannot be "
                "told apart; rename one function",
            )
        components[component] = step
