"""pip check in the step images: run once per set of distributions, skipped for a rebuild that installs the same.

Real engine, registry and pip; the cache lives in a folder of the test's own (XDG_CACHE_HOME).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from buildtool import cli

SAME = "pip check: same distributions as an image already checked"
BROKEN_DIST = """\
import os, sysconfig
folder = os.path.join(sysconfig.get_paths()["purelib"], "needs_missing-1.0.dist-info")
os.makedirs(folder)
with open(os.path.join(folder, "METADATA"), "w") as handle:
    handle.write("Metadata-Version: 2.1\\nName: needs-missing\\nVersion: 1.0\\n"
                 "Requires-Dist: not-installed-anywhere>=1\\n")
"""


def run(project: Path, *args: str) -> int:
    return cli.main(["--config", str(project), *args])


def check_line(err: str, image: str) -> str:
    found = re.findall(rf"^\[ *[0-9.]+s\] {image} +(imports of step .*)$", err, re.MULTILINE)
    assert len(found) == 1, err
    return found[0]


@pytest.fixture
def cache_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "buildtool" / "pip-check.json"


def fingerprints(path: Path) -> list[str]:
    return list(json.loads(path.read_text())["fingerprints"])


def test_a_rebuild_with_the_same_distributions_skips_pip_check_and_a_broken_one_still_fails(
    small_project: Path, cache_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(small_project, "build", "--push") == 0
    err = capsys.readouterr().err
    lines = [check_line(err, image) for image in ("download", "training", "upload")]
    # The three step images install the same distributions (the base's): pip check ran at least once, and
    # every image whose check started after that one passed skipped it.
    assert any(line.endswith("; pip check passed") for line in lines), err
    assert all(line.endswith(("; pip check passed", SAME)) for line in lines), err
    assert len(fingerprints(cache_file)) == 1

    # One changed file in download: the same distributions, so pip check is skipped; the imports still run.
    download = small_project.parent / "images" / "download"
    (download / "note.txt").write_text("one more file\n")
    assert run(small_project, "build", "--push") == 0
    err = capsys.readouterr().err
    assert check_line(err, "download") == f"imports of step download_training_dataset load (json, os); {SAME}"
    assert re.search(r"\] download +pushed ", err)

    # A distribution whose requirement is missing: a new fingerprint, so pip check runs, and fails the build
    # before anything is published; the failure is not recorded.
    map_path = small_project.parent / "image_map.yaml"
    before, known = map_path.read_bytes(), fingerprints(cache_file)
    (download / "broken_dist.py").write_text(BROKEN_DIST)
    with (download / "Dockerfile").open("a") as dockerfile:
        dockerfile.write("RUN python3 /opt/download/broken_dist.py\n")
    assert run(small_project, "build", "--push") == 6
    err = capsys.readouterr().err
    assert (
        "buildtool: error: image download: `pip check` found broken requirements: "
        "needs-missing 1.0 requires not-installed-anywhere"
    ) in err
    assert "Traceback" not in err and not re.search(r"\] download +pushed ", err)
    assert map_path.read_bytes() == before and fingerprints(cache_file) == known


def test_a_corrupt_cache_means_pip_check_runs_and_is_replaced(
    small_project: Path, cache_file: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    cache_file.parent.mkdir(parents=True)
    # A cache that lists fingerprints but is malformed (a bad entry): nothing in it is trusted.
    cache_file.write_text(json.dumps({"version": 1, "fingerprints": ["0" * 64, "not a fingerprint"]}))
    assert run(small_project, "build", "--push", "--jobs", "1") == 0
    err = capsys.readouterr().err
    assert "ignoring the pip check cache" in caplog.text + err  # a log warning: captured by pytest or printed
    lines = [check_line(err, image) for image in ("download", "training", "upload")]
    # With one job the images are checked one after another: the first runs pip check, the others skip it.
    assert sorted(line.endswith(SAME) for line in lines) == [False, True, True], err
    assert len(fingerprints(cache_file)) == 1 and "0" * 64 not in fingerprints(cache_file)
