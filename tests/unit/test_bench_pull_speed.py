"""bench/pull_speed.py: medians with and without unpigz come from the variants, grouped by what ps saw."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _pull_speed():
    spec = importlib.util.spec_from_file_location("pull_speed", REPO / "bench" / "pull_speed.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_groups_by_unpigz_seen_not_by_variant_number() -> None:
    variants = [
        {"variant": 1, "seconds": 20.0, "unpigz_seen": False},
        {"variant": 2, "seconds": 10.0, "unpigz_seen": True},
        {"variant": 3, "seconds": 16.0, "unpigz_seen": False},
        {"variant": 4, "seconds": 8.0, "unpigz_seen": True},
        {"variant": 5, "seconds": 18.0, "unpigz_seen": False},
    ]
    out = _pull_speed().summary(variants)
    assert out == {"median_without_unpigz_s": 18.0, "median_with_unpigz_s": 9.0, "ratio": 2.0}


def test_summary_without_one_side_has_no_ratio() -> None:
    out = _pull_speed().summary([{"variant": 1, "seconds": 15.5, "unpigz_seen": False}])
    assert out == {"median_without_unpigz_s": 15.5, "median_with_unpigz_s": None, "ratio": None}


def test_committed_figures_agree_with_their_variants() -> None:
    for path in sorted((REPO / "bench" / "results").glob("pull-pigz-*.json")):
        doc = json.loads(path.read_text())
        without = [v["seconds"] for v in doc["variants"] if not v["unpigz_seen"]]
        with_ = [v["seconds"] for v in doc["variants"] if v["unpigz_seen"]]
        assert without and with_, path
        assert doc["median_without_unpigz_s"] == round(statistics.median(without), 2), path
        assert doc["median_with_unpigz_s"] == round(statistics.median(with_), 2), path
        assert doc["ratio"] == round(statistics.median(without) / statistics.median(with_), 2), path
        # Every pull downloaded and extracted the same layers: none was skipped as already present.
        counts = {v["layers_pulled"] for v in doc["variants"]}
        assert len(counts) == 1 and counts.pop() > 0, path
