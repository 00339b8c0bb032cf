"""The development venv: pip against uv, installing the same packages into a fresh venv, paired.

Each round creates two fresh venvs in a temporary folder and installs buildtool[test] and the platform
client into them, once with pip and once with uv (the way scripts/venv.sh does; which goes first alternates),
without a download cache on either side. Prints each round's uv/pip ratio and their median; with
--results, writes the raw seconds to DIR/venv-<time>.json.

    .venv/bin/python bench/venv_install.py --rounds 3 --results bench/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UV_VERSION = "0.13.9"  # scripts/venv.sh's
PACKAGES = ["-e", str(ROOT / "images/base/platform-client"), "-e", f"{ROOT}[test]"]


def _venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    return where / "bin" / "python"


def with_pip(where: Path) -> float:
    started = time.monotonic()
    python = _venv(where)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-cache-dir", *PACKAGES], check=True)
    return time.monotonic() - started


def with_uv(where: Path) -> float:
    started = time.monotonic()
    python = _venv(where)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-cache-dir", f"uv=={UV_VERSION}"], check=True)
    uv = where / "bin" / "uv"
    subprocess.run([str(uv), "pip", "install", "-q", "--no-cache", "--python", str(python), *PACKAGES], check=True)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds (default 3)")
    parser.add_argument("--results", type=Path, help="folder for the raw figures (JSON)")
    args = parser.parse_args()
    rounds = []
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="venv-bench-") as tmp:
            sides = [("pip", with_pip), ("uv", with_uv)]
            if n % 2:
                sides.reverse()
            seconds = {name: run(Path(tmp) / name) for name, run in sides}
        ratio = seconds["uv"] / seconds["pip"]
        rounds.append({"pip": round(seconds["pip"], 1), "uv": round(seconds["uv"], 1), "ratio": round(ratio, 3)})
        print(f"round {n + 1}: pip {seconds['pip']:.1f} s, uv {seconds['uv']:.1f} s, uv/pip {ratio:.3f}", flush=True)
    median = statistics.median(r["ratio"] for r in rounds)
    print(f"median uv/pip: {median:.3f} over {len(rounds)} rounds")
    if args.results:
        args.results.mkdir(parents=True, exist_ok=True)
        out = args.results / f"venv-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps({"rounds": rounds, "median": median}, indent=2) + "\n")
        print(f"raw figures: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
