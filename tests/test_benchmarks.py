"""benchmarks/: the quick run prints every figure, and the GPU script's logic runs on CPU.

Both start fresh interpreters that import torch and the Hugging Face stack several times, so
they take minutes on 2 busy CPU cores and are marked slow (run them with ``pytest -m slow``).
Speed figures are not asserted (the quick sizes measure start-up more than anything); the
correctness figures are: metric agreement, identical masks, and that the process-options rows
really ran with the entry points' options on and off.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# One entry per table row of `run.py --quick`, as (section, start of the figure text).
QUICK_FIGURES = [
    ("1", "training samples/s: Trainer loop ÷ bare step"),
    ("1", "same, process options off (NAIL_SEGFORMER_PROCESS_OPTIONS=0)"),
    ("1", "bare step samples/s, process options on ÷ off"),
    ("2", "data pipeline samples/s (128², 0 workers)"),
    ("2", "data pipeline samples/s (128², 1 workers)"),
    ("2", "data pipeline samples/s (128², 2 workers)"),
    ("3", "eval peak RSS growth"),
    ("3", "same, process options off (NAIL_SEGFORMER_PROCESS_OPTIONS=0)"),
    ("3", "mmap threshold time: evaluate() (tiny, 8 images), 1 MiB ÷ 32 MiB"),
    ("3", "mmap threshold time: training step (tiny, batch 4), 1 MiB ÷ 32 MiB"),
    ("3", "eval time, usual way ÷ streaming"),
    ("3", "eval time (tiny, 16 images) ÷ forward on in-memory tensors"),
    ("3", "eval time (tiny, 16 images) ÷ forward over the same DataLoader"),
    ("4", "mean IoU time, 50 maps 128²"),
    ("4", "mean IoU agreement"),
    ("5", "inference images/s: Predictor ÷ pipeline"),
    ("5", "nail masks equal to the pipeline's (tiny, batch 4)"),
    ("5", "nail masks equal to the pipeline's (tiny, batch 1)"),
]
# Rows measured with the options on (as run_finetune.py sets them) and off; the note says what
# each measuring process set.
OPTIONS_ON_ROWS = ("training samples/s: Trainer loop", "eval peak RSS growth")
OPTIONS_ON_NOTE = "process options: M_MMAP_THRESHOLD=1048576"
MUST_BE_MET = ("same bytes", "mean IoU agreement", "nail masks equal")


def _table_rows(stdout: str) -> list[list[str]]:
    rows = []
    for line in stdout.splitlines():
        if line.startswith("| ") and not line.startswith("| # "):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


@pytest.mark.slow
def test_quick_run_prints_every_figure(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    rows = _table_rows(done.stdout)
    assert len(rows) == len(QUICK_FIGURES), done.stdout
    for (section, figure), row in zip(QUICK_FIGURES, rows, strict=True):
        assert len(row) == 8, row
        assert row[0] == section and row[1].strip().startswith(figure), row
        assert row[2] not in ("", "nan"), row
        if any(key in figure for key in MUST_BE_MET):
            assert row[6] == "yes", row
        if "process options off" in figure:
            assert row[7].endswith("process options: none"), row
        if figure.startswith(OPTIONS_ON_ROWS) and sys.platform.startswith("linux"):
            assert row[7].endswith(OPTIONS_ON_NOTE), row
    assert "### " in done.stdout and "versions:" in done.stdout and "machine:" in done.stdout


@pytest.mark.slow
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
    assert configs[:3] == ["fp32", "bf16", "channels_last"] and configs[4] == "compile"
    assert configs[3].startswith("loader")
    assert 0.0 <= results[3]["wait_fraction"] <= 1.0
    assert all(r["samples_per_s"] > 0 for r in results)


def test_gpu_script_is_valid_bash():
    done = subprocess.run(
        ["bash", "-n", str(BENCHMARKS / "gpu.sh")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_phone_photo_benchmark_smoke_run(tmp_path):
    out = tmp_path / "phone.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "phone_photos.py"), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    rows = _table_rows(done.stdout)[1:]  # below the header
    assert [row[0] for row in rows] == [
        "training, from the cache",
        "training, --resize_cache false",
        "evaluation",
    ]
    assert all(float(cell) > 0 for row in rows for cell in row[1:]), rows
    assert "x cheaper than decoding the files every epoch" in done.stdout
    result = json.loads(out.read_text())
    # Correctness, not speed: the plain training sample is the evaluation input, edges included.
    assert set(result["parity_levels"]) == {"12 MP 4:3, EXIF 6", "12 MP 16:9"}
    assert all(level < 1.0 for level in result["parity_levels"].values())
