"""Helpers shared by the test modules: a lock written for a project's tree, the exit codes of a failure, a port
that refuses connections.

(Fixtures live in the conftest.py files; the local registry and platform servers tests speak to, in
tests/fake_engine.py and tests/platform_fixtures.py.)
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from buildtool import config, context, image_map, interrupt, plan, step_imports
from buildtool.errors import BuildtoolError, Interrupted

EXTERNAL = "127.0.0.1:5000/lib/python:3.11"
PIN = EXTERNAL + "@sha256:" + "1" * 64


def write_lock(project_path: Path) -> tuple[config.Config, image_map.ImageMap]:
    """A map exactly as `build --push` would write it for the current tree (digests invented)."""
    loaded = config.load(project_path)
    contexts = {i.name: context.scan(i.context) for i in loaded.images}
    inputs = plan.compute_inputs(loaded, contexts, {EXTERNAL: "sha256:" + "1" * 64}, step_imports.for_config(loaded))
    the_plan = plan.make_plan(loaded, inputs, {EXTERNAL: PIN}, {}, None)
    images = {}
    for n, image in enumerate(the_plan.images):
        images[image.name] = image_map.LockedImage(f"{image.tagged}@sha256:{str(n) * 64}", image.inputs.digest,
                                                   image.base_label, dict(image.inputs.items))
    lock = image_map.ImageMap(steps={i.step: images[i.name].reference for i in the_plan.images if i.step},
                              images=images)
    image_map.write_atomic(loaded.image_map, image_map.render(lock))
    return loaded, lock


def failure_exit_codes() -> set[int]:
    """The codes a failure ends with, from buildtool/errors.py: each kind of error's own, and 128 + the number
    of each signal that stops a run (Interrupted). Not 1: that is an unexpected error, a bug."""
    codes = {128 + signum for signum in interrupt.SIGNALS}
    kinds = list(BuildtoolError.__subclasses__())
    while kinds:
        kind = kinds.pop()
        kinds += kind.__subclasses__()
        if kind is not Interrupted:
            codes.add(kind.exit_code)
    return codes


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port where a connection is refused: bound by this socket, which never listens, for the block.

    Held, not closed at once, so that no other test (a parallel worker's server) can take it meanwhile.
    """
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])
