"""bench/render_results.py: the README table comes from the raw results, the latest run of each case."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _render():
    spec = importlib.util.spec_from_file_location("render_results", REPO / "bench" / "render_results.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _case(n: int, plain: list[float], tool: list[float], met: bool, **extra: object) -> dict[str, object]:
    ratios = [t / p for t, p in zip(tool, plain, strict=True)]
    return {
        "case": n,
        "title": f"{n} case",
        "skipped": None,
        "plain_seconds": plain,
        "buildtool_seconds": tool,
        "paired_ratios": ratios,
        "median_ratio": sorted(ratios)[len(ratios) // 2] if ratios else None,
        "target": 0.85,
        "met": met,
        "to_cold_ratios": [],
        "to_cold_target": None,
        **extra,
    }


def test_the_table_shows_paired_ratios_from_the_latest_run_of_each_case(tmp_path):
    older = {
        "run_id": "r1",
        "started": "2026-01-01T00:00:00Z",
        "cases": [_case(4, [100.0, 100.0, 100.0], [95.0, 80.0, 70.0], True), _case(1, [1.0], [0.5], True)],
    }
    newer = {
        "run_id": "r2",
        "started": "2026-01-02T00:00:00Z",
        "cases": [
            _case(1, [1.0, 1.0, 1.0], [0.9, 0.8, 1.2], True),
            {**_case(4, [], [], False), "skipped": "skipped: needs --empty-engine"},
        ],
    }
    for run in (older, newer):
        (tmp_path / f"{run['run_id']}.json").write_text(json.dumps(run))
    table = _render().table(tmp_path)
    lines = table.splitlines()
    assert lines[2].startswith("| 1 case |") and "[r2](results/r2.json)" in lines[2]
    assert "0.900, 0.800, 1.200" in lines[2]
    # Case 4 was skipped in r2: the row comes from r1, with each run's own ratio and their median.
    assert lines[3].startswith("| 4 case |") and "0.950, 0.800, 0.700" in lines[3] and "| 0.800 |" in lines[3]


def test_write_replaces_only_between_the_markers(tmp_path):
    render = _render()
    (tmp_path / "results").mkdir()
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{render.START}\nold table\n{render.END}\noutro\n")
    assert render.main(["--results", str(tmp_path / "results"), "--write", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "(no results yet)" in text
