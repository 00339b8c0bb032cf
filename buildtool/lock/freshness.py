"""Is a compiled workflow what `compile` would produce now, from the current sources and image map?

The workflow embeds each step function's source, so a step edited without a new import changes no
image, yet the cluster would run the old code. `compile` records a digest of its inputs (the step
map, the compile settings, kfp's and buildtool's versions, and every file of the pipeline and steps
packages) in a workflow annotation. A matching digest answers "current" without importing kfp; any
other answer (or `full=True`) compiles again in memory and names the first template that differs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import StalePipelineError
from ..util import yaml_io

ANNOTATION = "buildtool/compile-inputs"
# Annotations kfp writes that change on every compile without the pipeline changing.
_VOLATILE = {"pipelines.kubeflow.org/pipeline_compilation_time", ANNOTATION}
_SKIPPED_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache"}


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def source_files(config: Config) -> list[Path]:
    """The files the factory and the steps come from: their top-level packages (or single modules)."""
    found: set[Path] = set()
    for module in (config.pipeline.partition(":")[0], config.steps_module):
        top = module.split(".")[0]
        folder, single = config.root / top, config.root / f"{top}.py"
        if folder.is_dir():
            found.update(p for p in _walk(folder) if p.suffix not in (".pyc", ".pyo"))
        elif single.is_file():
            found.add(single)
    return sorted(found)


def _walk(folder: Path) -> Iterator[Path]:
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            if entry.name not in _SKIPPED_DIRS:
                yield from _walk(entry)
        elif entry.is_file():
            yield entry


def inputs_digest(config: Config, steps: Mapping[str, str]) -> str:
    """sha256 over a canonical encoding of everything `compile` reads to produce the workflow."""
    files = [
        [str(p.relative_to(config.root)), hashlib.sha256(p.read_bytes()).hexdigest()] for p in source_files(config)
    ]
    document = {
        "steps": sorted(steps.items()),
        "pipeline": config.pipeline,
        "steps_module": config.steps_module,
        "image_pull_policy": config.image_pull_policy,
        "credentials": config.credentials,
        "external_images": list(config.external_images),
        "kfp": _version("kfp"),
        "buildtool": _version("buildtool"),
        "files": files,
    }
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(encoded).hexdigest()


def stamp(workflow: dict[str, Any], digest: str) -> None:
    """Record the compile inputs' digest in the workflow's annotations."""
    workflow.setdefault("metadata", {}).setdefault("annotations", {})[ANNOTATION] = digest


def recorded(workflow: Mapping[str, Any]) -> str | None:
    metadata = workflow.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    value = annotations.get(ANNOTATION) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) else None


def _comparable(workflow: Mapping[str, Any]) -> dict[str, Any]:
    """The workflow without what changes on every compile, templates by name."""
    copy = json.loads(json.dumps(workflow, sort_keys=True, default=str))
    metadata = copy.get("metadata") if isinstance(copy, dict) else None
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if isinstance(annotations, dict):
        for key in _VOLATILE:
            annotations.pop(key, None)
    return copy if isinstance(copy, dict) else {}


def _templates(workflow: Mapping[str, Any]) -> dict[str, Any]:
    spec = workflow.get("spec")
    templates = spec.get("templates") if isinstance(spec, dict) else None
    if not isinstance(templates, list):
        return {}
    return {t["name"]: t for t in templates if isinstance(t, dict) and isinstance(t.get("name"), str)}


def first_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """Where `old` first differs from `new` (the fresh compile): a template, or a workflow field; None if equal."""
    old, new = _comparable(old), _comparable(new)
    if old == new:
        return None
    old_templates, new_templates = _templates(old), _templates(new)
    for name, template in new_templates.items():
        if name not in old_templates:
            return f"template {name} is missing (compile makes it now)"
        if old_templates[name] != template:
            return f"template {name} differs"
    for name in old_templates:
        if name not in new_templates:
            return f"template {name} is no longer made by compile"
    for section in ("metadata", "spec"):
        old_part, new_part = old.get(section), new.get(section)
        if isinstance(old_part, dict) and isinstance(new_part, dict):
            for key in sorted(set(old_part) | set(new_part)):
                if key != "templates" and old_part.get(key) != new_part.get(key):
                    return f"{section}.{key} differs"
    return "the workflow differs outside its templates"


def require_current(
    config: Config, workflow: Mapping[str, Any], steps: Mapping[str, str], *, label: str, full: bool = False
) -> None:
    """StalePipelineError unless `workflow` is what `compile` would produce now from the sources and `steps`.

    `label` names the workflow in the message (its path, or what a caller uploads). Without `full`, a
    recorded inputs digest equal to the current one is enough; with it, the workflow is always compared
    with a fresh compile (what a gate on hand-editable bytes needs).
    """
    if not full and recorded(workflow) == inputs_digest(config, steps):
        return
    from ..gate.kfp_compile import create_workflow  # kfp: imported only when a compile is needed

    where = first_difference(workflow, create_workflow(config, steps))
    if where is not None:
        raise StalePipelineError(
            f"{label} is stale: {where} from what `buildtool compile` makes now from the "
            "current sources and image map; run `buildtool compile`"
        )


def require_current_text(config: Config, text: str, steps: Mapping[str, str], *, label: str) -> None:
    """require_current on a workflow's text (e.g. the bytes about to be uploaded), read by the strict reader."""
    try:
        workflow = yaml_io.parse(text)
    except yaml_io.YamlProblem as exc:
        raise StalePipelineError(f"{label}: {exc}; compile it again with `buildtool compile`") from None
    if not isinstance(workflow, dict):
        raise StalePipelineError(f"{label}: not an Argo Workflow; compile it again with `buildtool compile`")
    require_current(config, workflow, steps, label=label, full=True)
