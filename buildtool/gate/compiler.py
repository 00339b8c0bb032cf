"""Compile the pipeline with kfp 1.8 against the digest-pinned images of the map.

The output replaces the old file atomically, and only after every image in it
was checked against the map.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import Config
from ..errors import CompileError, ConfigError
from ..lock import freshness, image_map, staleness
from ..util import fsutil
from . import verify
from .kfp_compile import create_workflow, render

log = logging.getLogger(__name__)


def check_output(config: Config, output: Path) -> None:
    """ConfigError for an output path that is a folder, the image map or the configuration itself."""
    try:
        _check_output(config, output)
    except (OSError, RuntimeError) as exc:  # a symlink loop, a folder we may not look into
        raise ConfigError(f"--output {output}: cannot be used: {exc}") from None


def _check_output(config: Config, output: Path) -> None:
    target = output.resolve()
    if output.is_dir():
        raise ConfigError(f"--output {output}: is a folder; name the file to write, e.g. {output / 'pipeline.yaml'}")
    if target == config.image_map.resolve():
        raise ConfigError(
            f"--output {output}: is the image map ({config.image_map}), which the workflow would "
            "overwrite; write the workflow elsewhere, e.g. pipeline.yaml"
        )
    if target == config.path.resolve():
        raise ConfigError(
            f"--output {output}: is the configuration ({config.path}); write the workflow elsewhere, e.g. pipeline.yaml"
        )
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--output {output}: {parent} is a file, not a folder; choose another path")
            break


def compile_pipeline(config: Config, output: Path, *, allow_stale: bool = False) -> list[str]:
    """Compile to `output`; return warnings (for a stale map with allow_stale)."""
    check_output(config, output)
    loaded = image_map.load(config.image_map)
    image_map.require_locked(loaded, config.steps, config.image_map, config.repositories)
    notes = staleness.require_fresh(config, loaded, allow_stale=allow_stale)
    workflow = create_workflow(config, loaded.steps)
    problems = verify.pin_problems(workflow, loaded.steps, config.external_images)
    if problems:
        raise CompileError(f"compiled pipeline is not pinned as {config.image_map} says: " + "; ".join(problems))
    freshness.stamp(workflow, freshness.inputs_digest(config, loaded.steps))
    try:
        with fsutil.atomic_output(output, suffix=".yaml") as tmp:
            tmp.write_text(render(workflow), encoding="utf-8")
            # What is written is what is checked: read back through the strict reader.
            problems = verify.pin_problems(verify.load_workflow(tmp), loaded.steps, config.external_images)
            if problems:
                raise CompileError(
                    f"compiled pipeline is not pinned as {config.image_map} says: " + "; ".join(problems)
                )
    except OSError as exc:  # the folder is missing rights, the disk is full: the old output stays
        raise CompileError(f"{output}: cannot write the workflow: {exc.strerror or exc}") from None
    return notes
