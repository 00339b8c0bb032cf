"""verify: the gate before a compiled workflow leaves this machine.

Every image of the workflow pinned, as the (consistent) map says, and served by the registry as the lock
records; the workflow equal to what `compile` makes now. workflow.py reads the file, places.py every place that
names an image, steps.py which step each template runs, checks.py checks them against the map and the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...config import Config
from ...errors import VerifyError
from ...lock import image_map
from .checks import pin_problems, registry_problems, summary
from .places import COMPONENT_SPEC, MAX_TEMPLATES, WORKFLOW, images_in, places
from .steps import step_of, template_steps
from .workflow import load_workflow, read_pipeline

if TYPE_CHECKING:  # the registry client (and requests) loads only where a command checks the registry
    from ...push.registry import Registry

__all__ = [
    "COMPONENT_SPEC",
    "MAX_TEMPLATES",
    "WORKFLOW",
    "images_in",
    "load_workflow",
    "pin_problems",
    "places",
    "read_pipeline",
    "registry_problems",
    "step_of",
    "summary",
    "template_steps",
    "verify_pipeline",
]


def verify_pipeline(
    config: Config, path: Path, registry: Registry | None, *, data: bytes | None = None
) -> dict[str, Any]:
    """VerifyError unless every image of the workflow at `path` is pinned, as the (consistent) map says, and,
    given a registry, served by it; StalePipelineError unless it is what `compile` makes now.
    ImageMapError when the map itself is unreadable or not a lock.

    `data`: the file's bytes, already read (then `path` only names it); returns the workflow checked.
    """
    from ...lock import freshness

    workflow = load_workflow(path, data)
    loaded = image_map.load(config.image_map)
    image_map.require_locked(loaded, config.steps, config.image_map, config.repositories)
    problems = pin_problems(workflow, loaded.steps, config.external_images)
    if problems:
        raise VerifyError(summary(path, problems))
    freshness.require_current(config, workflow, loaded.steps, label=str(path), full=True)
    if registry is not None:
        inputs = {locked.reference: locked.inputs_digest for locked in loaded.images.values()}
        problems = registry_problems(workflow, registry, inputs)
        if problems:
            raise VerifyError(summary(path, problems))
    return workflow
