#!/usr/bin/env python3
"""How long `buildtool submit` takes against the fake KFP v1 API server (tests/fake_kfp.py).

Sets up the small project of the tests (kfp's real compiler, a lock whose images the fake registry serves),
then runs `buildtool submit` as a command (Python start, kfp import and the registry check included):
the first submit (pipeline and version created), a resubmit (nothing created), and `--run --wait` of a run
the fake reports Running, then Succeeded (polled every 0.2 s). Prints each run's seconds and the medians.

Run from the repository root:
  .venv/bin/python bench/submit_fake.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import write_project  # noqa: E402
from tests.fake_engine import FakeRegistry  # noqa: E402
from tests.fake_kfp import FakeKfp  # noqa: E402
from tests.submit_fixtures import PARAMS, lock_with_registry  # noqa: E402


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"submit_fake: error: {' '.join(argv[3:6])} exited {done.returncode}: {done.stderr.strip()}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    registry = FakeRegistry()
    results: dict[str, list[float]] = {"first submit": [], "resubmit": [], "--run --wait": []}
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            path = write_project(root)
            path.write_text(
                path.read_text()
                .replace('registry = "127.0.0.1:5000"', f'registry = "{registry.host}"')
                .replace(
                    'base_image = "127.0.0.1:5000/lib/python:3.11"', f'base_image = "{registry.host}/lib/python:3.11"'
                )
            )
            lock_with_registry(path, registry)
            env = {**os.environ, "HOME": folder, "PLATFORM_ACCESS_KEY": "ak", "PLATFORM_SECRET_KEY": "sk"}
            for name in ("BUILDTOOL_REGISTRY", "BUILDTOOL_REPOSITORY", "BUILDTOOL_BASE_IMAGE"):
                env.pop(name, None)
            for _ in range(args.repeat):
                with FakeKfp() as kfp:  # an empty server each time: the first submit creates
                    submit = [sys.executable, "-m", "buildtool", "--config", str(path), "submit", "--host", kfp.url]
                    results["first submit"].append(timed(submit, env, root))
                    results["resubmit"].append(timed(submit, env, root))
                    results["--run --wait"].append(
                        timed([*submit, "--run", "--wait", "--poll", "0.2", *PARAMS], env, root)
                    )
                    assert len(kfp.uploads) == 2 and len(kfp.runs) == 1
    finally:
        registry.close()
    for name, seconds in results.items():
        print(f"{name:<14} median {statistics.median(seconds):.2f} s  runs: " + " ".join(f"{s:.2f}" for s in seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
