"""`buildtool compile`, `check` and `verify`: the pipeline compiled against the locked map, and checked."""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from pathlib import Path

from .options import Subcommands, add_command, add_hidden_base_image, add_pipeline_argument
from .project import load_config, locked_map, require_current_workflow, workflow_path

COMPILE_HELP = "compile the pipeline against the image map"
COMPILE_DESCRIPTION = """\
Compile the pipeline with every step's image pinned as image_map.yaml says. Refuses a missing, incomplete,
unpinned or stale map."""

CHECK_HELP = "fail if image_map.yaml no longer matches the sources (offline)"
CHECK_DESCRIPTION = """\
Recompute every image's inputs digest from the working tree, with no engine and no network, and compare with
the image map."""
VERIFY_HELP = "check a compiled pipeline's images: pinned, as mapped, in the registry"


def add_compile(sub: Subcommands) -> None:
    command = add_command(sub, "compile", cmd_compile, COMPILE_HELP, COMPILE_DESCRIPTION)
    command.add_argument("--output", "-o", help="where to write the workflow (default: [tool.buildtool] output)")
    command.add_argument(
        "--allow-stale", action="store_true", help="compile against a stale map anyway (prints a warning)"
    )
    command.add_argument(
        "--check",
        action="store_true",
        help="write nothing; fail (exit 13) if the output differs from what compile would write now",
    )
    add_hidden_base_image(command)


def add_check(sub: Subcommands) -> None:
    command = add_command(sub, "check", cmd_check, CHECK_HELP, CHECK_DESCRIPTION)
    add_hidden_base_image(command)


def add_verify(sub: Subcommands) -> None:
    command = add_command(sub, "verify", cmd_verify, VERIFY_HELP)
    add_pipeline_argument(command)
    command.add_argument("--offline", action="store_true", help="skip the registry lookups")


def cmd_compile(args: argparse.Namespace) -> int:
    from ..gate.compiler import compile_pipeline

    config = load_config(args)
    output = Path(args.output) if args.output else config.output
    if args.check:
        require_current_workflow(config, locked_map(config), output, full=True)
        print(f"{output} is what compile makes now")
        return 0
    for note in compile_pipeline(config, output, allow_stale=args.allow_stale):
        print(f"warning: {note}", file=sys.stderr)
    print(f"wrote {output}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ..inputs.render import require_current
    from ..lock.staleness import require_fresh

    config = load_config(args)
    require_current(config)  # before the map: a hand-edited Dockerfile is the first thing to fix
    loaded = locked_map(config)
    require_fresh(config, loaded)
    print(f"{config.image_map} matches the working tree ({len(config.images)} images)")
    if config.output.exists():
        require_current_workflow(config, loaded, config.output)
        print(f"{config.output} is what compile makes from them")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ..gate.verify import verify_pipeline

    config = load_config(args)
    path = workflow_path(args, config)
    if args.offline:
        verify_pipeline(config, path, None)
    else:
        from ..push.registry import Registry

        with closing(Registry()) as registry:
            verify_pipeline(config, path, registry)
    print(
        f"{path}: every image is pinned, matches {config.image_map.name}"
        + ("" if args.offline else " and exists in the registry")
    )
    return 0
