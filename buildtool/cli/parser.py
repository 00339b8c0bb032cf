"""The `buildtool` argument parser, assembled from the commands' own declarations (help order as listed)."""

from __future__ import annotations

import argparse

from .commands_build import add_build, add_render
from .commands_gate import add_check, add_compile, add_verify
from .commands_init import add_init
from .commands_platform import add_platform
from .commands_run import add_run
from .commands_submit import add_submit

DESCRIPTION = """\
Build the pipeline's step images, push them, pin them by digest in image_map.yaml,
and compile the Kubeflow Pipelines (v1) pipeline against exactly those images.

Configuration: [tool.buildtool] in pyproject.toml. Environment: BUILDTOOL_REGISTRY,
BUILDTOOL_REPOSITORY and BUILDTOOL_BASE_IMAGE override the registry, the repository
prefix and the external base image; registry credentials come from the engine's
store (docker login), never from the configuration."""

COMMANDS = (add_build, add_compile, add_render, add_check, add_verify, add_run, add_init, add_submit, add_platform)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="buildtool", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    top.add_argument(
        "--config", default="pyproject.toml", help="pyproject.toml holding [tool.buildtool] (default: %(default)s)"
    )
    top.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return top
