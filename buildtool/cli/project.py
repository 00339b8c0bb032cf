"""What the commands read first: the configuration (with its overrides), the image map, the compiled workflow."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from ..config import Config, load
from ..errors import ImageMapError
from ..lock import image_map
from ..lock.image_map import ImageMap

log = logging.getLogger("buildtool")


def load_config(args: argparse.Namespace) -> Config:
    """The configuration of --config, with --registry/--base-image or their environment variables over it."""
    return load(
        Path(args.config),
        registry=getattr(args, "registry", None) or os.environ.get("BUILDTOOL_REGISTRY"),
        repository=os.environ.get("BUILDTOOL_REPOSITORY"),
        base_image=getattr(args, "base_image", None) or os.environ.get("BUILDTOOL_BASE_IMAGE"),
    )


def workflow_path(args: argparse.Namespace, config: Config) -> Path:
    """The compiled workflow a command reads: its PIPELINE argument, else the configured output."""
    return Path(args.pipeline) if args.pipeline else config.output


def previous_map(config: Config) -> ImageMap | None:
    """The map a build starts from; an unreadable one is ignored (the build writes a whole new one)."""
    try:
        return image_map.load(config.image_map)
    except ImageMapError as exc:
        if config.image_map.exists():
            log.warning("ignoring the current map: %s", exc)
        return None


def locked_map(config: Config) -> ImageMap:
    """The image map, checked as the lock of the configured steps and repositories."""
    loaded = image_map.load(config.image_map)
    image_map.require_locked(loaded, config.steps, config.image_map, config.repositories)
    return loaded


def require_current_workflow(config: Config, loaded: ImageMap, path: Path, *, full: bool = False) -> None:
    """The workflow at `path` is what compile makes now from `loaded` (exit 13 otherwise)."""
    from ..gate.verify import load_workflow
    from ..lock.freshness import require_current

    require_current(config, load_workflow(path), loaded.steps, label=str(path), full=full)
