#!/usr/bin/env python3
"""Engine push against skopeo by size of an image's new layers: where SKOPEO_FROM_BYTES comes from.

For each size, builds an image FROM the base with one new layer of that many MB
(system files, repeated), pushes it with `docker push` and with `skopeo copy
docker-daemon:... docker://...`, each to a fresh repository under
bench-threshold/<run id>/, and prints the seconds. `--image REF` adds an image
already in the engine (the training image, say) pushed both ways.

  .venv/bin/python bench/pusher_threshold.py 0 30 150 300 600 --image REF --output bench/results/pusher-threshold.json

Leaves the engine as it was (its own images are removed); the repositories stay in the registry.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

BASE = os.environ.get("BUILDTOOL_BASE_IMAGE", "127.0.0.1:5000/buildtool/python:3.11-bookworm")


def timed(argv: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return round(time.monotonic() - started, 2)


def both(local: str, repository: str) -> dict[str, float]:
    engine_target = f"{repository}-engine/image:t"
    subprocess.run(["docker", "tag", local, engine_target], check=True)
    try:
        engine = timed(["docker", "push", engine_target])
    finally:
        subprocess.run(["docker", "rmi", engine_target], stdout=subprocess.DEVNULL, check=False)
    skopeo = timed(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            "--dest-compress-level",
            "6",
            "--retry-times",
            "3",
            f"docker-daemon:{local}",
            f"docker://{repository}-skopeo/image:t",
        ]
    )
    return {"engine_s": engine, "skopeo_s": skopeo, "load_average": float(Path("/proc/loadavg").read_text().split()[0])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int, help="new layer sizes in MB")
    parser.add_argument("--image", action="append", default=[], help="an engine image to push both ways too")
    parser.add_argument("--registry", default="127.0.0.1:5000")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    results = []
    for mb in args.sizes:
        local = f"{args.registry}/bench-threshold/{run}/size{mb}:t"
        step = (
            (
                f"RUN for i in $(seq 20); do echo $i > /tmp/n; tar cf - /tmp/n /usr/lib /usr/share 2>/dev/null; done"
                f" | head -c {mb}000000 > /opt/data"
            )
            if mb
            else "LABEL size=0"
        )
        subprocess.run(
            ["docker", "build", "-q", "-t", local, "-"],
            input=f"FROM {BASE}\n{step}\n",
            text=True,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        try:
            results.append({"new_mb": mb, **both(local, f"{args.registry}/bench-threshold/{run}/size{mb}")})
        finally:
            subprocess.run(["docker", "rmi", local], stdout=subprocess.DEVNULL, check=False)
        print(results[-1], flush=True)
    for n, image in enumerate(args.image):
        results.append({"image": image, **both(image, f"{args.registry}/bench-threshold/{run}/given{n}")})
        print(results[-1], flush=True)
    if args.output:
        args.output.write_text(json.dumps({"run": run, "base": BASE, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
