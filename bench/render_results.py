#!/usr/bin/env python3
"""Render bench/results/*.json (written by build_speed.py --results) as the README's markdown table.

For each case, the latest run that measured it is shown, with every paired
ratio, their median, the target and the run it comes from.

  .venv/bin/python bench/render_results.py                  print the table
  .venv/bin/python bench/render_results.py --write README   replace the table between the markers in README
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
START, END = "<!-- results:start (bench/render_results.py) -->", "<!-- results:end -->"


def _seconds(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} [{min(values):.1f}–{max(values):.1f}]"


def latest_cases(folder: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(run, case) for each case number, from the latest run that did not skip it."""
    documents = (json.loads(p.read_text()) for p in folder.glob("*.json"))
    runs = sorted((d for d in documents if "cases" in d), key=lambda r: r["started"])  # bench runs, not other data
    chosen: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for run in runs:
        for case in run["cases"]:
            if not case.get("skipped"):
                chosen[case["case"]] = (run, case)
    return [chosen[n] for n in sorted(chosen)]


def table(folder: Path) -> str:
    rows = [
        "| case | plain s | buildtool s | paired ratios b/a | median | target | met | run |",
        "| --- | ---: | ---: | --- | ---: | --- | --- | --- |",
    ]
    for run, case in latest_cases(folder):
        ratios = ", ".join(f"{r:.3f}" for r in case["paired_ratios"])
        if case["case"] == 5:
            median = f"{statistics.median(case['to_cold_ratios']):.3f} of cold ({case['median_ratio']:.3f} of plain)"
            target = f"≤ {case['to_cold_target']} of cold"
        else:
            median = f"{case['median_ratio']:.3f}"
            target = f"≤ {case['target']}" + (", download alone" if case["case"] == 3 else "")
        rows.append(
            f"| {case['title']} | {_seconds(case['plain_seconds'])} | {_seconds(case['buildtool_seconds'])} | "
            f"{ratios} | {median} | {target} | {'yes' if case['met'] else 'NO'} | "
            f"[{run['run_id']}](results/{run['run_id']}.json) |"
        )
    if len(rows) == 2:
        rows.append("| (no results yet) | | | | | | | |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--write", type=Path, metavar="README", help="replace the table between the markers")
    args = parser.parse_args(argv)
    rendered = table(args.results)
    if not args.write:
        sys.stdout.write(rendered)
        return 0
    text = args.write.read_text()
    if START not in text or END not in text:
        print(f"render_results: {args.write} has no {START} ... {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.write.write_text(f"{head}{START}\n{rendered}{END}{tail}")
    print(f"wrote the table into {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
