"""benchmarks/demo_curve.py: how the two sides' curves over several seeds are compared."""

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_curve.py"
_SPEC = importlib.util.spec_from_file_location("demo_curve", _PATH)
demo_curve = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(demo_curve)


def _run(points: list[tuple[int, float, float]]) -> dict:
    curve = [{"step": s, "seconds": t, "iou_nail": iou} for s, t, iou in points]
    return {"curve": curve, "train_seconds": curve[-1]["seconds"]}


def test_sides_are_compared_by_their_mean_over_seeds_up_to_the_shortest_run():
    package = [
        _run([(100, 50.0, 0.10), (200, 100.0, 0.20)]),
        _run([(100, 60.0, 0.30), (200, 120.0, 0.25)]),  # best so far counts, not the last value
    ]
    bare = [
        _run([(100, 40.0, 0.20), (200, 80.0, 0.40)]),  # the shortest run: times end at 80 s
        _run([(100, 45.0, 0.00), (200, 90.0, 0.10)]),
    ]
    rows = demo_curve.compare(package, bare, samples=2)
    assert [row["seconds"] for row in rows] == [40.0, 80.0]
    # At 40 s no package run has evaluated yet; the first bare seed has (0.20), the second not.
    assert rows[0]["package"] == 0.0 and rows[0]["ratio"] == 0.0
    assert rows[0]["bare"] == pytest.approx(0.10)
    assert rows[0]["bare_range"] == (0.0, 0.20)
    # At 80 s: package seeds 0.10 and 0.30, bare seeds 0.40 and 0.00.
    assert rows[1]["package"] == pytest.approx(0.20)
    assert rows[1]["bare"] == pytest.approx(0.20)
    assert rows[1]["package_range"] == (0.10, 0.30)
    assert rows[1]["ratio"] == pytest.approx(1.0)


def test_report_names_every_seed_and_both_rates():
    package = [_run([(100, 25.0, 0.1)]), _run([(100, 20.0, 0.2)])]
    bare = [_run([(100, 20.0, 0.2)]), _run([(100, 20.0, 0.2)])]
    report = demo_curve.format_report([3, 4], package, bare)
    assert "package 4.50, bare loop 5.00 (package ÷ bare 0.90" in report
    for seed in (3, 4):
        assert f"- seed {seed}, package:" in report and f"- seed {seed}, bare:" in report
