#!/usr/bin/env python3
"""How long the check container of a step image takes, with pip check run and with it skipped.

Builds images/base and images/download under a repository prefix of its own (not pushed), then runs the
check exactly as `buildtool build` does (Engine.run of step_imports.probe_command), alternating a run with no
known fingerprint (pip check runs) and one whose fingerprint is known (pip check skipped), and prints each
run's seconds and the medians. Removes its images at the end.

Run from the repository root:
  BUILDTOOL_BASE_IMAGE=127.0.0.1:5000/buildtool/python:3.11-bookworm .venv/bin/python bench/check_container.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
import uuid
from pathlib import Path

from buildtool.config import load
from buildtool.engine import Engine
from buildtool.inputs import step_imports

REPO = Path(__file__).resolve().parents[1]


def docker_build(tag: str, context: Path, base: str) -> None:
    built = subprocess.run(
        ["docker", "build", "--quiet", "-t", tag, "--build-arg", f"BASE_IMAGE={base}", str(context)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        raise SystemExit(f"check_container: error: docker build of {context} failed: {built.stderr.strip()[-500:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--base-image", default=os.environ.get("BUILDTOOL_BASE_IMAGE", "127.0.0.1:5000/buildtool/python:3.11-bookworm")
    )
    args = parser.parse_args()
    prefix = f"127.0.0.1:5000/check-bench-{uuid.uuid4().hex[:8]}"
    base, download = f"{prefix}/base:1", f"{prefix}/download:1"
    modules = step_imports.for_config(load(REPO / "pyproject.toml"))["download_training_dataset"]
    engine = Engine()
    try:
        docker_build(base, REPO / "images" / "base", args.base_image)
        docker_build(download, REPO / "images" / "download", base)
        first = step_imports.parse_probe(engine.call(download, step_imports.probe_command(modules)).output)
        assert first.pip_check_code == 0 and first.fingerprint, first
        known = {first.fingerprint}
        times: dict[str, list[float]] = {"pip check runs": [], "pip check skipped": []}
        for _ in range(args.repeat):
            for label, offered in (("pip check runs", set()), ("pip check skipped", known)):
                started = time.monotonic()
                probe = step_imports.parse_probe(
                    engine.call(download, step_imports.probe_command(modules, offered)).output, offered
                )
                times[label].append(time.monotonic() - started)
                assert probe.pip_check_skipped == bool(offered) and not probe.failed_imports, probe
        print(f"check container of {download} (imports {', '.join(modules)}), {args.repeat} runs each:")
        for label, seconds in times.items():
            print(
                f"  {label:<18} median {statistics.median(seconds):.2f} s  [{', '.join(f'{s:.2f}' for s in seconds)}]"
            )
    finally:
        for tag in (download, base):
            subprocess.run(
                ["docker", "rmi", "--force", tag], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
