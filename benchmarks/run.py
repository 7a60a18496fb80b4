"""Does each job cost no more through the package than done the plain way (ratios in one run)?

Every figure is a ratio measured in one run on one machine: the package's way ("ours") against a
baseline (the bare model step, the Hugging Face example's evaluation, a numpy reference,
``pipeline("image-segmentation")``). Seeds are fixed; each measurement runs in its own process.

    python benchmarks/run.py            # full run (about 10-15 minutes on 2 idle CPU cores)
    python benchmarks/run.py --quick    # CI-sized smoke run, same table
    python benchmarks/run.py --write    # also append the table to benchmarks/RESULTS.md

Sections: 1 training loop ÷ bare step, 2 data pipeline alone, 3 evaluation memory and time,
4 mean-IoU computation, 5 inference. Each child process first sets the process option that
``python -m nail_segformer.predict`` and GPU training set (``nail_segformer.runtime``: a fixed
malloc mmap threshold); sections 1 and 3 also measure it switched off
(``NAIL_SEGFORMER_PROCESS_OPTIONS=0``), side by side in the same run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH_DIR,
    Row,
    SectionResult,
    fmt,
    format_table,
    load_average,
    machine_info,
    make_photos,
    run_child,
)

RESULTS = BENCH_DIR / "RESULTS.md"
RUNS_MARKER = "<!-- runs: benchmarks/run.py --write appends below -->"
# Children with the entry points' process option on, and off. Values the user exported for
# the same settings are removed, so that "off" means the libraries' defaults.
_SWITCH = "NAIL_SEGFORMER_PROCESS_OPTIONS"
_USER_SETTINGS = {"OMP_WAIT_POLICY": None, "MALLOC_MMAP_THRESHOLD_": None}
OPTIONS_ON = {_SWITCH: "1", **_USER_SETTINGS}
OPTIONS_OFF = {_SWITCH: "0", **_USER_SETTINGS}
OFF_LABEL = f"process options off ({_SWITCH}=0)"

# Sizes per mode. "full" is what RESULTS.md reports; "quick" only checks that every figure is
# produced (its numbers are dominated by start-up and mean little).
CONFIGS = {
    "full": {
        "photos": 512,
        "train": {"preset": "mit-b0", "size": 512, "batch": 8, "workers": 2, "warmup": 2,
                  "cycles": 6},
        "workers_variant": True,
        "options_variants": True,
        "pipeline": {"size": 512, "batch": 8, "batches": 8, "rounds": 2},
        "profile_samples": 64,
        "eval_memory": {"preset": "tiny", "size": 512, "batch": 8, "workers": 2,
                        "n_small": 64, "n_large": 512},
        "malloc_ab": {"preset": "tiny", "size": 512, "n": 64, "batch": 8, "workers": 2,
                      "train_preset": "mit-b0", "train_steps": 4, "rounds": 2},
        "eval_time": {"preset": "mit-b0", "size": 512, "batch": 8, "workers": 2, "n": 32,
                      "rounds": 2},
        "metric": {"count": 500, "size": 512, "batch": 8, "rounds": 3},
        "inference": [{"preset": "mit-b0", "size": 512, "n": 32, "batch": 8, "rounds": 2},
                      {"preset": "tiny", "size": 512, "n": 32, "batch": 8, "rounds": 2}],
    },
    "quick": {
        "photos": 32,
        "train": {"preset": "tiny", "size": 128, "batch": 4, "workers": 2, "warmup": 1,
                  "cycles": 3},
        "workers_variant": False,
        "options_variants": True,
        "pipeline": {"size": 128, "batch": 4, "batches": 4, "rounds": 2},
        "profile_samples": 8,
        "eval_memory": {"preset": "tiny", "size": 128, "batch": 4, "workers": 0,
                        "n_small": 8, "n_large": 32},
        "malloc_ab": {"preset": "tiny", "size": 128, "n": 8, "batch": 4, "workers": 0,
                      "train_preset": "tiny", "train_steps": 2, "rounds": 1},
        "eval_time": {"preset": "tiny", "size": 128, "batch": 4, "workers": 0, "n": 16,
                      "rounds": 2},
        "metric": {"count": 50, "size": 128, "batch": 8, "rounds": 3},
        "inference": [{"preset": "tiny", "size": 128, "n": 8, "batch": 4, "rounds": 2}],
    },
    # Checks that every figure is produced, in seconds; its numbers mean nothing.
    "smoke": {
        "photos": 12,
        "train": {"preset": "tiny", "size": 64, "batch": 2, "workers": 0, "warmup": 1,
                  "cycles": 1},
        "workers_variant": False,
        "options_variants": False,
        "pipeline": {"size": 64, "batch": 2, "batches": 2, "rounds": 1},
        "profile_samples": 2,
        "eval_memory": {"preset": "tiny", "size": 64, "batch": 2, "workers": 0,
                        "n_small": 4, "n_large": 8},
        "malloc_ab": {"preset": "tiny", "size": 64, "n": 4, "batch": 2, "workers": 0,
                      "train_preset": "tiny", "train_steps": 1, "rounds": 1},
        "eval_time": {"preset": "tiny", "size": 64, "batch": 2, "workers": 0, "n": 4,
                      "rounds": 1},
        "metric": {"count": 8, "size": 64, "batch": 4, "rounds": 1},
        "inference": [{"preset": "tiny", "size": 64, "n": 4, "batch": 2, "rounds": 1}],
    },
}  # fmt: skip

TRAINING_GOAL = 0.90
EVAL_GROWTH_GOAL_PCT = 5.0
EVAL_LESS_GOAL = 10.0
EVAL_TIME_GOAL = 1.10
INFERENCE_GOAL = 3.0
# Peak RSS moves by a few MB between identical runs (allocator, import order); a growth below
# this floor is reported as the floor when dividing, so "x times less" stays finite and honest.
RSS_NOISE_MB = 8.0


def _met(value: float, goal: float, higher_is_better: bool = True) -> bool:
    return value >= goal if higher_is_better else value <= goal


# --------------------------------------------------------------------------- sections


def _options(run: dict) -> str:
    """What a child set at start (see ``_common.child_main``), e.g. for a row's note."""
    return ", ".join(f"{k}={v}" for k, v in run["process_options"].items()) or "none"


def section_training(cfg: dict, work: Path, data: Path) -> tuple[SectionResult, dict]:
    """1: full Trainer loop ÷ bare step; with variants, 0 workers and process options off."""
    tc = cfg["train"]
    label = f"{tc['preset']}, {tc['size']}², batch {tc['batch']}"
    result = SectionResult()

    def measure(workers: int, env: dict | None = None) -> dict:
        args = {**tc, "workers": workers, "job": "train", "data_root": str(data),
                "out_dir": str(work / "train-out")}  # fmt: skip
        return run_child("_training", args, env=env)

    def row(figure: str, run: dict, note: str = "") -> Row:
        ratio = run["trainer_rate"] / run["bare_rate"]
        return Row("1", figure, fmt(run["trainer_rate"]), fmt(run["bare_rate"]), ratio,
                   f"≥ {TRAINING_GOAL}", _met(ratio, TRAINING_GOAL), note)  # fmt: skip

    base = measure(tc["workers"], OPTIONS_ON if cfg["options_variants"] else None)
    result.rows.append(
        row(f"training samples/s: Trainer loop ÷ bare step ({label}, {tc['workers']} workers)",
            base, f"process options: {_options(base)}")
    )  # fmt: skip
    result.details.append(_training_detail("default", base))
    if cfg["options_variants"]:
        off = measure(tc["workers"], OPTIONS_OFF)
        result.rows += [
            row(f"  same, {OFF_LABEL}", off, f"process options: {_options(off)}"),
            Row("1", "  bare step samples/s, process options on ÷ off", fmt(base["bare_rate"]),
                fmt(off["bare_rate"]), base["bare_rate"] / off["bare_rate"],
                note="two processes one after the other: load may differ, see details"),
        ]  # fmt: skip
        result.details.append(_training_detail(OFF_LABEL, off))
    if cfg["workers_variant"]:
        run = measure(0)
        result.rows.append(row("  same, dataloader_num_workers=0", run))
        result.details.append(_training_detail("dataloader_num_workers=0", run))
    return result, base


def _training_detail(name: str, run: dict) -> str:
    def seconds(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    return (
        f"1 [{name}] samples/s from median steps: Trainer {run['trainer_rate']:.3f}, bare "
        f"{run['bare_rate']:.3f} (means {run['trainer_rate_mean']:.3f} and "
        f"{run['bare_rate_mean']:.3f}); Trainer steps [{seconds(run['trainer_step_times'])}] s, "
        f"bare steps [{seconds(run['bare_step_times'])}] s, Trainer warm-up incl. worker start "
        f"{run['trainer_startup_s']:.1f} s; process options {_options(run)}; CPU seconds per step (median, workers included) "
        f"Trainer {run['trainer_cpu_per_step']:.2f}, bare {run['bare_cpu_per_step']:.2f} (ratio "
        f"{run['bare_cpu_per_step'] / run['trainer_cpu_per_step']:.3f}); torch threads "
        f"{run['torch_threads']}, optimizer {run['optimizer']}; load {run['load_before']:.2f} -> "
        f"{run['load_after']:.2f}"
    )


def section_pipeline(cfg: dict, work: Path, data: Path, model_rate: float | None) -> SectionResult:
    """2: the package's training data pipeline alone (0/1/2 workers), and its profile."""
    pc = cfg["pipeline"]
    result = SectionResult()
    runs = run_child("_training", {**pc, "job": "pipeline", "data_root": str(data),
                                   "out_dir": str(work / "pipeline-out"), "workers": [0, 1, 2]})  # fmt: skip
    baseline = fmt(model_rate) if model_rate else "n/a"
    for workers in (0, 1, 2):
        rate = runs[str(workers)]["steady_rate"]
        result.rows.append(
            Row("2", f"data pipeline samples/s ({pc['size']}², {workers} workers) ÷ model step",
                fmt(rate), baseline, rate / model_rate if model_rate else None)
        )  # fmt: skip
    for workers in (0, 1, 2):
        r = runs[str(workers)]
        result.details.append(
            f"2 [{workers} workers, best of {pc['rounds']} rounds] steady {r['steady_rate']:.1f} "
            f"samples/s, first batch after {r['first_batch_s']:.2f} s, "
            f"{r['rate_with_startup']:.1f} samples/s with start-up"
        )
    if model_rate:
        one = runs["0"]["steady_rate"]
        result.details.append(
            f"2 one process runs the pipeline in {1000 / one:.1f} ms per sample; the model step "
            f"takes {1000 / model_rate:.0f} ms per sample, so loading costs "
            f"{model_rate / one:.1%} of a step's time on one core"
        )
    profile = run_child(
        "_training", {"job": "profile", "data_root": str(data), "size": pc["size"],
                      "batch": pc["batch"], "samples": cfg["profile_samples"]}
    )  # fmt: skip
    stages = "; ".join(f"{k} {v:.2f}" for k, v in profile["stages_ms"].items())
    result.details.append(
        f"2 profile, ms per sample at {pc['size']}² in one process (cv2 threads "
        f"{profile['cv2_threads']}): {stages}; whole transform {profile['transform_ms']:.2f}"
    )
    return result


def section_eval(cfg: dict, work: Path, data: Path) -> SectionResult:
    """3: peak RSS growth of evaluate() (streaming vs the usual way) and its time vs forward."""
    mc, tc = cfg["eval_memory"], cfg["eval_time"]
    result = SectionResult()
    settings = {k: v for k, v in mc.items() if k not in ("n_small", "n_large")}
    common = {"data_root": str(data), "out_dir": str(work / "eval")}
    variants = {"": OPTIONS_ON, OFF_LABEL: OPTIONS_OFF} if cfg["options_variants"] else {"": None}
    # On and off one after the other for each evaluation, so that load changes hit both alike.
    runs = {
        (variant, mode, n): run_child(
            "_evaluation",
            {**settings, **common, "job": "eval_memory", "mode": mode, "n": n},
            env=env,
        )  # fmt: skip
        for mode in ("streaming", "usual")
        for n in (mc["n_small"], mc["n_large"])
        for variant, env in variants.items()
    }
    mb = 2**20

    def growth(variant: str, mode: str) -> tuple[float, float]:
        small = runs[(variant, mode, mc["n_small"])]
        large = runs[(variant, mode, mc["n_large"])]
        grown = (large["peak_rss"] - small["peak_rss"]) / mb
        return grown, 100 * grown / (small["peak_rss"] / mb)

    for variant in variants:
        ours_mb, ours_pct = growth(variant, "streaming")
        usual_mb, usual_pct = growth(variant, "usual")
        less = usual_mb / max(ours_mb, RSS_NOISE_MB)
        figure = (
            f"eval peak RSS growth {mc['n_small']}→{mc['n_large']} images ({mc['preset']}, "
            f"{mc['size']}², {mc['workers']} workers): streaming vs usual"
            if not variant
            else f"  same, {variant}"
        )
        options = _options(runs[(variant, "streaming", mc["n_large"])])
        result.rows.append(
            Row("3", figure, f"{ours_mb:+.0f} MB ({ours_pct:+.1f}%)",
                f"{usual_mb:+.0f} MB ({usual_pct:+.1f}%)", less,
                f"< {EVAL_GROWTH_GOAL_PCT:g}% and ≥ {EVAL_LESS_GOAL:g}x less",
                ours_pct < EVAL_GROWTH_GOAL_PCT and less >= EVAL_LESS_GOAL,
                f"ratio = usual growth ÷ max(ours, {RSS_NOISE_MB:g} MB); process options: "
                f"{options}")
        )  # fmt: skip
    ab = cfg["malloc_ab"]
    cost = run_child("_evaluation", {**ab, **common, "job": "malloc_ab"})
    fixed, dynamic = "1 MiB", "32 MiB"
    for what, key, label in (
        ("evaluate()", "evaluate_s", f"{ab['preset']}, {ab['n']} images"),
        ("training step", "train_step_s", f"{ab['train_preset']}, batch {ab['batch']}"),
    ):
        result.rows.append(
            Row("3", f"  mmap threshold time: {what} ({label}), 1 MiB ÷ 32 MiB",
                f"{cost[key][fixed]:.2f} s", f"{cost[key][dynamic]:.2f} s",
                cost[key][fixed] / cost[key][dynamic],
                note="A/B in one process; 1 MiB is the entry points' setting; >1: slower")
        )  # fmt: skip
    result.details.append(
        f"3 mmap threshold A/B: minor page faults per training step "
        f"{cost['train_step_faults'][fixed]:.0f} (1 MiB) vs {cost['train_step_faults'][dynamic]:.0f}"
        " (32 MiB)"
    )
    usual_large = runs[("", "usual", mc["n_large"])]
    ours_large = runs[("", "streaming", mc["n_large"])]
    result.rows.append(
        Row("3", f"eval time, usual way ÷ streaming ({mc['preset']}, {mc['n_large']} images)",
            f"{ours_large['seconds']:.2f} s", f"{usual_large['seconds']:.2f} s",
            usual_large["seconds"] / ours_large["seconds"], note="ratio = usual ÷ ours")
    )  # fmt: skip
    for (variant, mode, n), r in sorted(runs.items()):
        result.details.append(
            f"3 [{variant or 'default'}, {mode}, {n} images] peak RSS {r['peak_rss'] / mb:.0f} MB (before evaluate "
            f"{r['rss_before'] / mb:.0f} MB), {r['seconds']:.2f} s, mean IoU {r['mean_iou']}"
        )
    same = ours_large["mean_iou"] == usual_large["mean_iou"]
    result.details.append(
        f"3 mean IoU at {mc['n_large']} images: streaming {ours_large['mean_iou']}, usual "
        f"{usual_large['mean_iou']} (equal: {same})"
    )

    timing = run_child("_evaluation", {**tc, **common, "job": "eval_time"})
    label = f"{tc['preset']}, {tc['n']} images"
    for name, key in (("forward on in-memory tensors", "bare_tensors"),
                      ("forward over the same DataLoader", "bare_loader")):  # fmt: skip
        ratio = timing["evaluate"] / timing[key]
        result.rows.append(
            Row("3", f"eval time ({label}) ÷ {name}", f"{timing['evaluate']:.2f} s",
                f"{timing[key]:.2f} s", ratio, f"≤ {EVAL_TIME_GOAL:.2f}",
                _met(ratio, EVAL_TIME_GOAL, higher_is_better=False))
        )  # fmt: skip
    result.details.append(
        f"3 time, best of {tc['rounds']} alternating rounds ({label}, {tc['workers']} workers, "
        f"torch threads {timing['torch_threads']}): evaluate {timing['evaluate']:.2f} s, forward "
        f"over the DataLoader {timing['bare_loader']:.2f} s, forward on tensors "
        f"{timing['bare_tensors']:.2f} s"
    )
    return result


def section_metric(cfg: dict, work: Path) -> SectionResult:
    """4: the package's confusion-matrix mean IoU against a numpy per-class reference."""
    mc = cfg["metric"]
    result = SectionResult()
    run = run_child("_evaluation", {**mc, "job": "metric"})
    maps = f"{mc['count']} maps {mc['size']}²"
    result.rows += [
        Row("4", f"mean IoU time, {maps}: confusion matrix vs numpy masks",
            f"{run['ours_s']:.3f} s", f"{run['reference_s']:.3f} s",
            run["reference_s"] / run["ours_s"], note="ratio = reference ÷ ours (>1: ours faster)"),
        Row("4", f"mean IoU agreement, {maps} (max abs difference of class IoUs and mean)",
            f"{run['max_abs_diff']:.1e}", "0", None, "≤ 1e-12", run["max_abs_diff"] <= 1e-12),
    ]  # fmt: skip
    result.details.append(
        f"4 {run['pixels']:,} pixels, mean IoU {run['mean_iou']:.6f}, best of {mc['rounds']} "
        f"interleaved rounds: {run['pixels'] / run['ours_s'] / 1e6:.0f} Mpx/s ours "
        f"(nail_segformer.metrics.compute_confusion_matrix per batch of {mc['batch']}), "
        f"{run['pixels'] / run['reference_s'] / 1e6:.0f} Mpx/s numpy reference"
    )
    return result


def section_inference(cfg: dict, work: Path, data: Path) -> SectionResult:
    """5: Predictor (batched) against the Hugging Face pipeline, same model and photos."""
    result = SectionResult()
    for ic in cfg["inference"]:
        model_dir = work / f"model-{ic['preset']}"
        run = run_child("_inference", {**ic, "job": "inference", "data_root": str(data),
                                       "model_dir": str(model_dir)})  # fmt: skip
        ratio = run["ours_rate"] / run["pipeline_rate"]
        label = f"{ic['preset']}, {ic['n']} photos, batch {ic['batch']}"
        result.rows += [
            Row("5", f"inference images/s: Predictor ÷ pipeline ({label})", fmt(run["ours_rate"]),
                fmt(run["pipeline_rate"]), ratio, f"≥ {INFERENCE_GOAL:g}",
                _met(ratio, INFERENCE_GOAL)),
            Row("5", f"  nail masks equal to the pipeline's ({ic['preset']}, batch {ic['batch']})",
                f"{run['batched_agreement']:.7f}", "1", None, "identical",
                run["batched_identical_photos"] == run["photos"],
                f"{run['batched_identical_photos']}/{run['photos']} photos identical, "
                f"{run['batched_differing_pixels']} pixels differ"),
            Row("5", f"  nail masks equal to the pipeline's ({ic['preset']}, batch 1)",
                f"{run['one_by_one_agreement']:.7f}", "1", None, "identical",
                run["one_by_one_identical_photos"] == run["photos"],
                f"{run['one_by_one_identical_photos']}/{run['photos']} photos identical, "
                f"{run['one_by_one_differing_pixels']} pixels differ"),
        ]  # fmt: skip
        result.details.append(
            f"5 [{label}] Predictor {run['ours_s']:.2f} s, pipeline {run['pipeline_s']:.2f} s for "
            f"{ic['n']} photos (best of {ic['rounds']}); the model's forward pass alone on the "
            f"preprocessed photos: {run['forward_batched_s']:.2f} s in batches of {ic['batch']}, "
            f"{run['forward_one_s']:.2f} s one at a time, so batching by itself gives "
            f"{run['forward_one_s'] / run['forward_batched_s']:.2f}x and a Predictor with no "
            f"overhead at all would reach {run['pipeline_s'] / run['forward_batched_s']:.2f}x; "
            f"mean nail fraction {run['nail_fraction']:.3f}; torch threads {run['torch_threads']}"
        )
    return result


# --------------------------------------------------------------------------- output


def rows_table(rows: list[Row]) -> str:
    """The results table: section, figure, ours, baseline, ratio, goal, met?, note."""
    met = {True: "yes", False: "**NO**", None: "-"}
    return format_table(
        ["#", "figure", "ours", "baseline", "ratio", "goal", "met?", "note"],
        [
            [r.section, r.figure, r.ours, r.baseline, "-" if r.ratio is None else f"{r.ratio:.3g}",
             r.goal, met[r.met], r.note]
            for r in rows
        ],
    )  # fmt: skip


def format_run(
    mode: str,
    command: str,
    info: dict,
    loads: tuple[str, str],
    rows: list[Row],
    details: list[str],
    seconds: float,
) -> str:
    """One run's block for RESULTS.md (and the console)."""
    switched_off = os.environ.get(_SWITCH, "1").strip().lower() in ("0", "false", "no", "off")
    options = (
        f"{'off' if switched_off else 'on'}, as the package's entry points set them "
        f"(nail_segformer.runtime; {_SWITCH}={os.environ.get(_SWITCH, 'unset')}), except in "
        "rows that say otherwise"
    )
    return "\n".join([
        f"### {info['date']} — {mode} run",
        "",
        f"- command: `{command}` ({seconds / 60:.1f} min)",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['memory']}; torch threads "
        f"{info['torch_threads']}, OMP_WAIT_POLICY {info['omp_wait_policy']}; load average "
        f"(1/5/15 min) {loads[0]} at start, {loads[1]} at end",
        f"- process options in each measuring process: {options}",
        f"- versions: Python {info['python']}, {info['versions']}",
        f"- code: commit {info['commit']}",
        "",
        rows_table(rows),
        "",
        "<details><summary>measurements behind the table</summary>",
        "",
        *[f"- {line}" for line in details],
        "",
        "</details>",
        "",
    ])  # fmt: skip


def write_results(block: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else f"# Benchmark results\n\n{RUNS_MARKER}\n"
    if RUNS_MARKER not in text:
        text = text.rstrip("\n") + f"\n\n{RUNS_MARKER}\n"
    RESULTS.write_text(text.rstrip("\n") + "\n\n" + block)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (small sizes).")
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes: checks the script.")
    parser.add_argument("--write", action="store_true", help=f"Append the results to {RESULTS}.")
    parser.add_argument(
        "--sections", type=int, nargs="+", default=[1, 2, 3, 4, 5], choices=[1, 2, 3, 4, 5],
        help="Sections to run (default: all).",
    )  # fmt: skip
    parser.add_argument(
        "--no-variants",
        action="store_true",
        help="Skip the 0-worker and process-options-off variants of sections 1 and 3.",
    )
    parser.add_argument("--workdir", help="Keep data and models here instead of a temp folder.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    cfg = dict(CONFIGS[mode])
    if args.no_variants:
        cfg["workers_variant"] = cfg["options_variants"] = False
    command = "python benchmarks/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    info = machine_info()
    load_start = load_average()
    started = time.perf_counter()
    rows: list[Row] = []
    details: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nail-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = make_photos(work / f"photos-{cfg['photos']}", cfg["photos"])
        model_rate = None
        steps = [
            (1, lambda: section_training(cfg, work, data)),
            (2, lambda: section_pipeline(cfg, work, data, model_rate)),
            (3, lambda: section_eval(cfg, work, data)),
            (4, lambda: section_metric(cfg, work)),
            (5, lambda: section_inference(cfg, work, data)),
        ]
        for number, run in steps:
            if number not in args.sections:
                continue
            section_start = time.perf_counter()
            print(f"section {number} ... (load {load_average()})", file=sys.stderr, flush=True)
            result = run()
            if number == 1:
                result, base = result
                model_rate = base["bare_rate"]
            rows += result.rows
            details += result.details
            details.append(
                f"section {number} took {time.perf_counter() - section_start:.0f} s, load "
                f"{load_average()} after"
            )
    seconds = time.perf_counter() - started
    block = format_run(mode, command, info, (load_start, load_average()), rows, details, seconds)
    print(block)
    if args.write:
        write_results(block)
        print(f"appended to {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
