"""One writer of image_map.yaml at a time, and each run's images merged into the current file."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from buildtool.errors import ImageMapError
from buildtool.lock import image_map, map_lock
from buildtool.lock.image_map import ImageMap, LockedImage

REPO = Path(__file__).resolve().parents[2]


def ref(name: str, n: int) -> str:
    return f"127.0.0.1:5000/t/{name}:in-{n:016x}@sha256:{n:064x}"


def entry(name: str, n: int) -> LockedImage:
    return LockedImage(ref(name, n), f"sha256:{n:064x}", "image:base", {"file": f"sha256:{n:064x}"})


STEPS = {"base": None, "download": "download_training_dataset", "upload": "upload_model"}


def test_merge_keeps_the_other_runs_entries_and_replaces_ours(tmp_path):
    existing = ImageMap(
        steps={"download_training_dataset": ref("download", 1), "upload_model": ref("upload", 9)},
        images={"base": entry("base", 1), "download": entry("download", 1), "upload": entry("upload", 9)},
    )
    merged = map_lock.merge(existing, {"download": entry("download", 2)}, STEPS, set(STEPS), tmp_path / "m")
    assert merged.images["upload"] == entry("upload", 9)  # written by another run meanwhile: kept
    assert merged.steps == {"download_training_dataset": ref("download", 2), "upload_model": ref("upload", 9)}


def test_an_image_with_no_entry_anywhere_is_refused(tmp_path):
    with pytest.raises(ImageMapError, match="no earlier entry for image 'upload'"):
        map_lock.merge(
            None,
            {"base": entry("base", 1), "download": entry("download", 1)},
            STEPS,
            set(STEPS),
            tmp_path / "image_map.yaml",
        )


def test_update_waits_for_the_lock_held_elsewhere(tmp_path):
    path = tmp_path / "image_map.yaml"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(map_lock.lock_path(path))!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(1.0)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    ours = {name: entry(name, 3) for name in STEPS}
    assert map_lock.update(path, ours, STEPS) is True
    assert time.monotonic() - started >= 0.5  # it waited for the other writer
    holder.wait()
    assert image_map.load(path).images == ours


WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from buildtool.lock import map_lock
from buildtool.lock.image_map import LockedImage
prefix, rounds = sys.argv[1], int(sys.argv[2])
steps = {steps!r}
for n in range(rounds):
    name = f"{{prefix}}{{n}}"
    ref = f"127.0.0.1:5000/t/{{name}}:in-{{1:016x}}@sha256:{{1:064x}}"
    map_lock.update(Path({path!r}), {{name: LockedImage(ref, f"sha256:{{1:064x}}", "image:base", {{}})}}, steps)
"""


def test_two_writers_at_once_lose_no_update(tmp_path):
    """Each writer sets its own images, one per write, while the other writes too: every write lands."""
    rounds = 30
    names = [f"{prefix}{n}" for prefix in ("a", "b") for n in range(rounds)]
    steps = {name: None for name in names}
    path = tmp_path / "image_map.yaml"
    before = {
        name: LockedImage(f"127.0.0.1:5000/t/{name}:in-{0:016x}@sha256:{0:064x}", f"sha256:{0:064x}", "image:base", {})
        for name in names
    }
    image_map.write_atomic(path, image_map.render(ImageMap(steps={}, images=before)))
    script = WRITER.format(repo=str(REPO), steps=steps, path=str(path))
    writers = [subprocess.Popen([sys.executable, "-c", script, prefix, str(rounds)]) for prefix in ("a", "b")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    final = image_map.load(path)
    lost = sorted(name for name in names if final.images[name].inputs_digest != f"sha256:{1:064x}")
    assert lost == []
    assert not list(tmp_path.glob(".image_map.yaml.*"))  # no temp file left behind
    fd = os.open(map_lock.lock_path(path), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by both
    os.close(fd)
