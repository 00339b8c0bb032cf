"""The registry reads of a build, made for all images at once: the same plan, the same refusals and the same
first error as one image after the other, and the lines in the same order on every run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import pytest

from buildtool import config as configuration
from buildtool.build import prepare as preparing
from buildtool.errors import RegistryError
from buildtool.lock import image_map
from buildtool.push.registry import Registry
from buildtool.reference import Reference, hold_tag, parse
from buildtool.util import fanout

from .conftest import FakeSetup

T = TypeVar("T")
R = TypeVar("R")


def serial(items: Sequence[T], call: Callable[[T], R], workers: int = 1) -> list[R]:
    return [call(item) for item in items]


# --- fanout.each ---------------------------------------------------------------------------------------------


def test_each_runs_the_calls_side_by_side_and_keeps_the_items_order() -> None:
    arrived = threading.Barrier(4, timeout=5)  # broken (and the test failed) unless all four wait at once

    def call(n: int) -> int:
        arrived.wait()
        time.sleep(0.01 * (4 - n))  # the last item ends first
        return n * n

    assert fanout.each([0, 1, 2, 3], call) == [0, 1, 4, 9]


def test_each_raises_the_first_failure_in_the_items_order_after_every_call_ended() -> None:
    ended: list[int] = []

    def call(n: int) -> int:
        if n == 1:
            time.sleep(0.2)  # fails last in time, first in order
            ended.append(n)
            raise RegistryError("item 1")
        ended.append(n)
        if n == 3:
            raise RegistryError("item 3")
        return n

    with pytest.raises(RegistryError, match="^item 1$"):
        fanout.each([0, 1, 2, 3], call, workers=4)
    assert sorted(ended) == [0, 1, 2, 3]


def test_each_with_fewer_workers_than_items_calls_every_item_once() -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def call(n: int) -> int:
        with lock:
            calls.append(n)
        return -n

    assert fanout.each(list(range(20)), call, workers=3) == [-n for n in range(20)]
    assert sorted(calls) == list(range(20))


# --- prepare: the same plan and the same first error as serial reads ----------------------------------------------


def _prepare(fake: FakeSetup) -> preparing.Prepared:
    loaded = configuration.load(fake.project)
    registry = Registry(timeout=5)
    try:
        return preparing.prepare(loaded, registry, image_map.load(fake.image_map))
    finally:
        registry.close()


def _outcome(fake: FakeSetup) -> object:
    try:
        return [(i.name, i.action, i.reasons, i.existing_digest) for i in _prepare(fake).plan.images]
    except RegistryError as exc:
        return f"{exc.__class__.__name__}: {exc}"


def _corrupt_config(fake: FakeSetup, name: str) -> None:
    """The config blob of `name`'s pinned image no longer hashes to its digest."""
    pinned = parse(image_map.load(fake.image_map).images[name].reference)
    client = Registry(timeout=5)
    try:
        config_digest = client.manifest(pinned)["config"]["digest"]
    finally:
        client.close()
    fake.registry.configs[config_digest] = b'{"config": {}}'


def _move_tag(fake: FakeSetup, name: str, other: str) -> None:
    """`name`'s content tag now serves `other`'s image (its label says other inputs)."""
    lock = image_map.load(fake.image_map)
    mine, theirs = parse(lock.images[name].reference), parse(lock.images[other].reference)
    client = Registry(timeout=5)
    try:
        client.copy(theirs, Reference(mine.domain, mine.path, mine.tag))
    finally:
        client.close()


@pytest.mark.parametrize(
    "change, expected",
    [
        pytest.param(lambda fake: None, ["reuse"] * 4, id="all-held"),
        pytest.param(
            lambda fake: (_move_tag(fake, "download", "upload"), _move_tag(fake, "upload", "base")),
            ["reuse", "build", "reuse", "build"],
            id="two-foreign",
        ),
        pytest.param(
            lambda fake: (_corrupt_config(fake, "upload"), _corrupt_config(fake, "download")),
            "does not hash to",
            id="two-errors",
        ),
    ],
)
def test_prepare_decides_as_one_read_after_the_other(fake: FakeSetup, monkeypatch, change, expected) -> None:
    assert fake.cli("build", "--push")[0] == 0
    change(fake)
    side_by_side = _outcome(fake)
    monkeypatch.setattr(preparing, "each", serial)
    assert _outcome(fake) == side_by_side
    if isinstance(expected, str):  # the first image in plan order names the error, as a loop would
        assert isinstance(side_by_side, str) and expected in side_by_side, side_by_side
        assert "/t/download@" in side_by_side and "upload" not in side_by_side
    else:
        assert isinstance(side_by_side, list) and [action for _, action, _, _ in side_by_side] == expected
        foreign = [reasons[0] for _, action, reasons, _ in side_by_side if action == "build"]
        assert all("built from other inputs" in reason and "rebuilt, not trusted" in reason for reason in foreign)


def test_a_no_op_build_prints_the_same_lines_in_the_same_order_every_time(fake: FakeSetup) -> None:
    assert fake.cli("build", "--push")[0] == 0
    lock = image_map.load(fake.image_map)
    builds = len(fake.engine.builds)
    runs = []
    for _ in range(3):
        for entry in lock.images.values():  # each run tags every image by its digest again
            pin = parse(entry.reference)
            fake.registry.forget(pin.path, hold_tag(str(pin.digest)))
        code, out, err = fake.cli("build", "--push")
        assert code == 0, err
        runs.append((out, re.sub(r"^\[ *[0-9.]+s\] ", "", err, flags=re.M)))
    assert runs[0] == runs[1] == runs[2]
    tagged = [line.split()[0] for line in runs[0][1].splitlines() if " tagged " in line]
    assert tagged == sorted(lock.images) and len(fake.engine.builds) == builds


def test_a_no_op_build_asks_the_registry_alone_and_loads_no_engine_library(fake: FakeSetup) -> None:
    """Everything in the registry, the contexts' `.dockerignore` answers remembered from the first build: the
    second run loads neither the docker SDK nor kfp, and makes no engine call."""
    assert fake.cli("build", "--push")[0] == 0
    calls = len(fake.engine.calls)
    probe = (
        "import sys\nfrom buildtool import cli\ncode = cli.main(sys.argv[1:])\n"
        "print('loaded', sorted(m for m in ('docker', 'kfp', 'paramiko') if m in sys.modules))\nsys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "--config", str(fake.project), "build", "--push"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DOCKER_HOST": fake.engine.host},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "loaded []", done.stdout
    assert "reuse" in done.stdout and "unchanged" in done.stdout
    assert len(fake.engine.calls) == calls
