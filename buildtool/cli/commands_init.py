"""`buildtool init`: the configuration and an image context per step function, for a project of one's own."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import Subcommands, add_command

INIT_HELP = "add [tool.buildtool] and an image context per step function; overwrites nothing"
INIT_DESCRIPTION = """\
Read the step functions of STEPS_MODULE (parsed, not imported) and write a [tool.buildtool] table into the
configuration, with one image per step and its context (Dockerfile, .dockerignore) under images/, and add
the map's lock file (image_map.yaml.lock) to .gitignore unless git ignores it already. Refuses if the table or
any of those files exists."""


def add_init(sub: Subcommands) -> None:
    command = add_command(sub, "init", cmd_init, INIT_HELP, INIT_DESCRIPTION)
    command.add_argument(
        "steps_module", metavar="STEPS_MODULE", help="module defining the step functions, e.g. mypkg.steps"
    )
    command.add_argument(
        "--pipeline",
        help="module:function of the pipeline factory (default: the steps module's package's pipeline:make_pipeline)",
    )
    command.add_argument(
        "--repository", help="images are REGISTRY/REPOSITORY/IMAGE (default: [project].name, else the folder's name)"
    )
    command.add_argument("--registry", default="127.0.0.1:5000", help="registry host[:port] (default: %(default)s)")
    command.add_argument(
        "--base-image", default="python:3.11-slim", help="external base of the step images (default: %(default)s)"
    )


def cmd_init(args: argparse.Namespace) -> int:
    from ..scaffold import MAP_LOCK, plan, write

    planned = plan(
        Path(args.config),
        args.steps_module,
        pipeline=args.pipeline,
        repository=args.repository,
        registry=args.registry,
        base_image=args.base_image,
    )
    write(planned)
    for path, _ in planned.files:
        print(f"created {path}")
    if planned.ignore is not None:
        path = planned.ignore.path
        print(f"created {path}" if planned.ignore.created else f"added {MAP_LOCK} to {path}")
    print(
        f"added [tool.buildtool] to {planned.config}: {len(planned.steps)} step image(s) "
        f"({', '.join(planned.steps)}); next: add each step's packages to its Dockerfile, then "
        "`buildtool build --push`"
    )
    return 0
