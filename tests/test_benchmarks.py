"""benchmarks/: every script the docs cite runs, at sizes that take seconds, and prints each figure.

The smoke runs (``--smoke``, ``--dry-run`` or the smallest sizes) are in the default suite; the
quick run of ``run.py`` takes minutes and is marked slow. Speed figures are not asserted (tiny
sizes measure start-up more than anything); the correctness figures are: metric agreement and
equal masks.
"""

import json
import subprocess
import sys
from pathlib import Path

from support.runs import tiny_run_argv

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# One entry per table row of `run.py`, as (question, start of the figure text).
RUN_FIGURES = [
    ("1", "training samples/s, Trainer loop ÷ bare step"),
    ("2", "evaluate() peak memory growth"),
    ("2", "evaluate() mean IoU, ours and usual"),
    ("2", "evaluate() time ÷ forward over the same DataLoader"),
    ("3", "photos/s, Predictor ÷ pipeline"),
    ("3", "ONNX file MiB, fp32 ÷ int8 static QDQ"),
    ("3", "ONNX photos/s, int8 static QDQ ÷ fp32"),
    ("3", "ONNX photos/s, int8 static QDQ ÷ dynamic"),
    ("3", "nail masks equal to the pipeline's"),
    *[
        row
        for photos in ("small photos", "12 MP phone photos")
        for row in [
            ("3", f"photos/s from files, predict, {variant} ÷ pipeline script ({photos}")
            for variant in (
                "torch, masks only",
                "torch, with overlays (default)",
                "ONNX fp32, masks only",
                "ONNX int8, masks only",
                "ONNX int8, with overlays",
            )
        ]
        + (
            [("3", "predict ONNX int8 masks only (small photos, from files) ÷ the int8 forward")]
            if photos == "small photos"
            else []
        )
    ],
]
# Correctness rows: whatever the sizes, these goals are met.
MUST_BE_MET = ("mean IoU, ours and usual", "nail masks equal")


def _run(script: str, *args: str, cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def _numbers(cells: list[str]) -> list[float]:
    """The leading number of each cell ("9.5", "0.3%", "12 (4%)"); fails on a cell without one."""
    import re

    values = []
    for cell in cells:
        match = re.match(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", cell.strip())
        assert match, f"no number in {cell!r}"
        values.append(float(match.group(0)))
    return values


def _table_rows(stdout: str) -> list[list[str]]:
    rows = []
    for line in stdout.splitlines():
        if line.startswith("| ") and not line.startswith("| # "):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_run_prints_every_figure(tmp_path):
    stdout = _run("run.py", "--smoke", "--workdir", str(tmp_path), cwd=tmp_path, timeout=900)
    assert "commit" in stdout and "torch" in stdout  # the machine and versions line
    stdout, devices = stdout.split("Which model for which device", 1)
    header, *device_rows = _table_rows(devices)
    assert header[:3] == ["model", "px", "runtime"], devices
    assert [row[2] for row in device_rows] == ["PyTorch", "ONNX fp32", "ONNX int8"], devices
    assert all(row[:2] == ["tiny", "64"] and min(_numbers(row[3:])) >= 0 for row in device_rows)
    rows = _table_rows(stdout)
    assert len(rows) == len(RUN_FIGURES), stdout
    for (question, figure), row in zip(RUN_FIGURES, rows, strict=True):
        assert len(row) == 7 and row[0] == question and row[1].startswith(figure), row
        assert all(v >= 0 for v in _numbers(row[2:5])), row  # ours, baseline, ratio
        assert row[6] in ("yes", "**NO**", "-"), row
        if any(key in row[1] for key in MUST_BE_MET):
            assert row[6] == "yes", row


def test_metrics_cost_smoke_prints_every_figure(tmp_path):
    stdout = _run("metrics_cost.py", "--smoke", cwd=tmp_path)
    rows = {row[0]: row[1] for row in _table_rows(stdout) if row[0] != "figure"}
    assert len(rows) == 5, stdout
    values = _numbers(list(rows.values()))
    assert all(v > 0 for v in values[:3]), rows  # the times; their differences may be noise
    assert "pixel figures identical in both: True" in stdout


def test_data_scale_smoke_reads_no_pixels(tmp_path):
    stdout = _run("data_scale.py", "--sizes", "20", "40", cwd=tmp_path)
    rows = _table_rows(stdout)[1:]
    assert [row[0] for row in rows] == ["20", "40"], stdout
    for row in rows:
        *_, decoded = _numbers(row)
        assert decoded == 0, row  # building the data set reads headers only


def test_gpu_memory_smoke_counts_static_and_activation_bytes(tmp_path):
    out = tmp_path / "rows.json"
    args = ["--presets", "tiny", "--batches", "1", "--dtypes", "fp32", "--size", "64"]
    stdout = _run("gpu_memory.py", *args, "--json", str(out), cwd=tmp_path)
    (row,) = _table_rows(stdout)[1:]
    assert row[:3] == ["tiny", "fp32", "1"] and all(v > 0 for v in _numbers(row[4:7])), row
    (result,) = json.loads(out.read_text())
    assert result["static_bytes"] == 16 * result["parameters"]  # weights, gradients, AdamW


def test_gpu_config_step_runs_the_training_entry_point(tmp_path, synthetic_root):
    argv = tiny_run_argv(synthetic_root, tmp_path / "run", "--max_steps", "2")
    stdout = _run("gpu_config_step.py", *argv, cwd=tmp_path)
    peak = json.loads(stdout.strip().splitlines()[-1])
    assert peak["exit_code"] == 0 and (tmp_path / "run" / "model.safetensors").is_file()


def test_demo_curve_smoke_compares_both_sides(tmp_path):
    args = ["--max_steps", "4", "--evaluations", "2", "--seeds", "0"]
    data = ["--data_root", str(tmp_path / "data"), "--synthetic_samples", "24"]
    # From the repository root, as the docs run it (the config path is relative to it).
    stdout = _run("demo_curve.py", *args, *data, cwd=BENCHMARKS.parent, timeout=600)
    rows = _table_rows(stdout)[1:]
    assert rows and all(len(row) == 4 for row in rows), stdout
    assert "steps per second, mean over seeds: package" in stdout


def test_gpu_bench_dry_run_covers_every_config(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_bench.py"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    results = json.loads(out.read_text())["results"]
    configs = [r["config"] for r in results]
    assert configs[:2] == ["fp32", "bf16"] and configs[3] == "compile"
    assert configs[2].startswith("loader")
    assert 0.0 <= results[2]["wait_fraction"] <= 1.0
    assert all(r["samples_per_s"] > 0 for r in results)


def test_gpu_script_is_valid_bash():
    done = subprocess.run(
        ["bash", "-n", str(BENCHMARKS / "gpu.sh")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_phone_photo_benchmark_smoke_run(tmp_path):
    out = tmp_path / "phone.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "phone_photos.py"),
            "--smoke",
            "--large",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    rows = _table_rows(done.stdout)[1:5]  # the first table, below its header
    assert [row[0] for row in rows] == [
        "training, from the cache",
        "training, --resize_cache false",
        "evaluation",
        "evaluation, from its cache",
    ]
    assert all(float(cell) > 0 for row in rows for cell in row[1:]), rows
    assert "x cheaper than decoding the files every epoch" in done.stdout
    assert "x cheaper (bit for bit the same batches)" in done.stdout
    result = json.loads(out.read_text())
    assert result["photos"] == 2 and result["cache"]["mib_per_photo"] > 0
    assert result["eval_cache"]["mib_per_photo"] > 0
    # The large photo (1/8 of 200 MP a side here): each step ran and reported its peak.
    steps = result["large"]["steps"]
    assert len(steps) == 3 and all(s["peak_mib"] > 0 and s["seconds"] > 0 for s in steps.values())
    large_rows = _table_rows(done.stdout)[6:]  # the second table, below its header
    assert [row[0].split(" (")[0] for row in large_rows] == ["check", "resize cache", "predict"]
    assert all(v > 0 for row in large_rows for v in _numbers(row[1:])), large_rows
