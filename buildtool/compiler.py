"""Compile the pipeline with kfp 1.8 against the digest-pinned images of the map.

The output replaces the old file atomically, and only after every image in it
was checked against the map.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from . import fsutil, image_map, staleness, verify
from .config import Config
from .errors import CompileError, ConfigError

log = logging.getLogger(__name__)


def load_factory(config: Config) -> Callable[..., Callable[..., Any]]:
    """Import the configured `module:function` from the project folder."""
    module_name, _, attribute = config.pipeline.partition(":")
    root = str(config.root)
    sys.path.insert(0, root)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CompileError(f"{config.path}: [tool.buildtool] pipeline: cannot import {module_name!r}: {exc}") from None
    finally:
        sys.path.remove(root)
    factory: object = getattr(module, attribute, None)
    if not callable(factory):
        raise CompileError(f"{config.path}: [tool.buildtool] pipeline: {module_name} has no function {attribute!r}")
    return cast("Callable[..., Callable[..., Any]]", factory)  # the user's pipeline factory: untyped by nature


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
        raise ConfigError(f"--output {output}: is the image map ({config.image_map}), which the workflow would "
                          "overwrite; write the workflow elsewhere, e.g. pipeline.yaml")
    if target == config.path.resolve():
        raise ConfigError(f"--output {output}: is the configuration ({config.path}); write the workflow elsewhere, "
                          "e.g. pipeline.yaml")
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
    factory = load_factory(config)
    import kfp.compiler  # heavy: imported only when compiling

    try:
        pipeline_func = factory(dict(loaded.steps), image_pull_policy=config.image_pull_policy,
                                credentials=config.credentials)
    except Exception as exc:
        raise CompileError(f"{config.pipeline}: building the pipeline failed: "
                           f"{exc.__class__.__name__}: {exc}") from None
    try:
        with fsutil.atomic_output(output, suffix=".yaml") as tmp:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    kfp.compiler.Compiler().compile(pipeline_func, str(tmp))
                except Exception as exc:
                    raise CompileError(f"kfp could not compile {config.pipeline}: "
                                       f"{exc.__class__.__name__}: {exc}") from None
            for warning in caught:
                log.debug("kfp: %s", warning.message)
            problems = verify.pin_problems(verify.load_workflow(tmp), loaded.steps)
            if problems:
                raise CompileError(f"compiled pipeline is not pinned as {config.image_map} says: "
                                   + "; ".join(problems))
    except OSError as exc:  # the folder is missing rights, the disk is full: the old output stays
        raise CompileError(f"{output}: cannot write the workflow: {exc.strerror or exc}") from None
    return notes
