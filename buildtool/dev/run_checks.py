"""What `buildtool run` accepts from a workflow file, checked before anything is planned or started.

A workflow handed to `run` may be hostile. So `run` accepts only what local runs implement (the allowlist
of `run_allowlist`), only digest-pinned images (the same check as `buildtool verify`), and only a bounded
document with no YAML aliases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import reference
from ..config import Config
from ..errors import BuildtoolError, RunError
from ..gate import verify
from ..lock import image_map
from ..lock.image_map import ImageMap
from ..util import yaml_io
from .run_allowlist import unsupported
from .run_text import escape

__all__ = [
    "MAX_WORKFLOW_BYTES",
    "image_map_for_run",
    "read_workflow",
    "require_pinned",
    "require_runnable",
    "workflow_images",
]

MAX_WORKFLOW_BYTES = yaml_io.MAX_BYTES  # the one cap on YAML buildtool reads; ~30 times a compiled pipeline


def read_workflow(path: Path) -> dict[str, Any]:
    """The workflow at `path`, read as verify reads it (yaml_io: size-capped, no aliases, bounded nesting)."""
    try:
        if not path.is_file():
            raise RunError(f"{escape(path)}: not a regular file; give the compiled workflow (pipeline.yaml)")
        size = path.stat().st_size
    except OSError as exc:
        raise RunError(f"{escape(path)}: cannot be read ({exc.strerror})") from None
    if size > MAX_WORKFLOW_BYTES:
        raise RunError(
            f"{escape(path)}: {size} bytes, over the {MAX_WORKFLOW_BYTES}-byte limit for a workflow; "
            "a compiled pipeline is far smaller: compile it again with `buildtool compile`"
        )
    try:
        return verify.load_workflow(path)
    except BuildtoolError as exc:  # not found, not YAML, aliases, not a Workflow: a run error here
        raise RunError(str(exc)) from None


def require_runnable(workflow: Mapping[str, Any]) -> None:
    """RunError naming the first thing `run` does not implement or does not trust (and how many more there are)."""
    problems = list(unsupported(workflow))
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise RunError(escape(problems[0]) + more)


def workflow_images(workflow: Mapping[str, Any]) -> dict[str, str]:
    """step -> container image as the workflow names them: the map `run` checks against when it has no image map."""
    images = {}
    for template in workflow["spec"]["templates"]:
        if "container" in template:
            images[verify.step_of(template["name"])] = template["container"]["image"]
    return images


def require_pinned(workflow: Mapping[str, Any], steps: Mapping[str, str] | None, external: Iterable[str] = ()) -> None:
    """Every image pinned by digest and, given the image map's `steps`, equal to its entry or a pinned image of an
    `external` repository (`verify`'s check). With no map, a template's image need only be pinned."""
    problems = verify.pin_problems(workflow, steps, external) if steps is not None else _unpinned(workflow)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); `buildtool verify` lists them)" if len(problems) > 1 else ""
        raise RunError(f"{escape(problems[0])}{more}; rebuild with `buildtool build --push` and compile again")


def _unpinned(workflow: Mapping[str, Any]) -> list[str]:
    """Images that are not digest-pinned, or that apply to every template (no step to check them against)."""
    try:
        found = list(verify.places(workflow))
    except RecursionError:
        return ["the workflow is nested too deeply to read"]
    problems = []
    for item in found:
        head = item.where if item.template == verify.WORKFLOW else f"template {item.template}: {item.where}"
        if item.problem is not None:
            problems.append(f"{head}: {item.problem}")
        elif (why := reference.pinned_problem(item.image)) is not None:
            problems.append(f"{head}: {yaml_io.shown(item.image)} is {why}")
        elif item.template == verify.WORKFLOW:
            problems.append(f"{head}: {item.image} applies to every template and serves no step")
    return problems


def image_map_for_run(
    explicit: Path | None, config_file: Path, load_config: Callable[[], Config]
) -> tuple[ImageMap | None, Path | None]:
    """The image map `run` checks images against, and its path: `explicit` (--image-map), else the
    configuration's map when the configuration file and the map exist, else none (pins are checked alone)."""
    if explicit is not None:
        return image_map.load(explicit), explicit
    if not config_file.is_file():
        return None, None
    path = load_config().image_map
    return (image_map.load(path), path) if path.exists() else (None, None)
