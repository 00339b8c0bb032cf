"""`buildtool build` and `buildtool render`: the images and their rendered Dockerfiles."""

from __future__ import annotations

import argparse
from contextlib import closing

from ..config import BUILDERS, select
from .options import Subcommands, add_command, add_hidden_base_image
from .printer import Printer
from .project import load_config, previous_map

BUILD_HELP = "build (and push) the images; with --push, rewrite image_map.yaml"
BUILD_DESCRIPTION = """\
Build each image whose inputs tag the registry does not hold yet, dependencies first, independent images in
parallel. With --push, push them and rewrite the image map once all succeeded."""

RENDER_HELP = "write the Dockerfiles (and layer locks) of images that have a template"
RENDER_DESCRIPTION = """\
Render each image's Dockerfile from its template in images/templates/, and cut its requirements lock into
layer locks; writes only files that differ. See docs/images.md."""


def add_build(sub: Subcommands) -> None:
    command = add_command(sub, "build", cmd_build, BUILD_HELP, BUILD_DESCRIPTION)
    command.add_argument("images", nargs="*", metavar="IMAGE", help="only these images (and what they build on)")
    command.add_argument("--push", action="store_true", help="push to the registry and rewrite the image map")
    command.add_argument(
        "--dry-run", action="store_true", help="print the plan (build or reuse, and why); change nothing"
    )
    command.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="with --push, also tag every image TAG in the registry (e.g. the git commit); repeatable",
    )
    command.add_argument(
        "--builder", choices=BUILDERS, help="what builds: classic, buildkit or auto (default: [tool.buildtool] builder)"
    )
    command.add_argument("--jobs", "-j", type=int, default=2, help="images built at once (default: %(default)s)")
    command.add_argument(
        "--registry", help="registry host[:port] (default: [tool.buildtool] registry, or BUILDTOOL_REGISTRY)"
    )
    command.add_argument(
        "--base-image", help="external base image (default: [tool.buildtool] base_image, or BUILDTOOL_BASE_IMAGE)"
    )


def add_render(sub: Subcommands) -> None:
    command = add_command(sub, "render", cmd_render, RENDER_HELP, RENDER_DESCRIPTION)
    command.add_argument("images", nargs="*", metavar="IMAGE", help="only these images (default: all)")
    add_hidden_base_image(command)


def cmd_build(args: argparse.Namespace) -> int:
    from ..build import build_images
    from ..build.prepare import prepare
    from ..inputs.plan import describe
    from ..inputs.render import require_current
    from ..inputs.rerender import rerender_stale
    from ..interrupt import Token, on_signals
    from ..push.registry import Registry

    full = load_config(args)
    selected = select(full, args.images)
    previous = previous_map(full)
    if args.dry_run:  # writes nothing: an image is built from what its template renders, never a hand edit
        require_current(selected)
    for path in [] if args.dry_run else rerender_stale(selected, previous):  # a hand edit is refused
        shown = path.relative_to(full.root) if path.is_relative_to(full.root) else path
        print(
            f"rendered {shown} again (its template, variables or lock changed)" if path.exists() else f"removed {shown}"
        )
    with closing(Registry()) as registry, on_signals(Token()) as token:
        prepared = prepare(selected, registry, previous)
        if full.repository_from:
            print(
                f"repository {full.repository} (from {full.repository_from}; set [tool.buildtool] "
                "repository to choose another)"
            )
        for line in describe(prepared.plan):
            print(line)
        if args.dry_run:
            return 0
        outcome = build_images(
            full,
            selected,
            prepared,
            registry,
            push=args.push,
            jobs=args.jobs,
            extra_tags=args.tag,
            events=Printer(),
            token=token,
            previous=previous,
            builder=args.builder,
        )
    if not args.push:
        print("built locally; pass --push to push and update the image map")
        return 0
    print(f"{full.image_map} {'updated' if outcome.map_changed else 'unchanged'}")
    for name, result in sorted(outcome.results.items()):
        print(f"{name:<9} {result.action:<5} {result.reference}  {outcome.sizes[name] / 1e6:.1f} MB compressed")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from ..inputs.render import write

    config = select(load_config(args), args.images)
    changed = write(config)
    for path in changed:
        print(f"wrote {path.relative_to(config.root) if path.is_relative_to(config.root) else path}")
    templated = [i.name for i in config.images if i.template]
    print(
        f"{len(templated)} rendered image(s) ({', '.join(templated) or 'none'}): "
        f"{len(changed)} file(s) {'changed' if changed else 'already current'}"
    )
    return 0
