"""Does the package learn the demo as fast as a bare PyTorch loop (nail IoU over wall-clock time)?

Both train the demo's recipe (``configs/demo.yaml``: model preset, loss, AdamW with the same
learning rate, warm-up and linear decay, gradient clipping, batch, patch size and share of nail
patches, seed) on the same split of the same synthetic photos, and score the same validation
photos with the package's metric at the same steps. What differs is only what the package adds
around the model: the bare loop decodes every photo once, resizes it to the evaluation size and
cuts patches from memory (flips only); the package reads files through ``datasets`` and
albumentations every step inside the ``Trainer``.

A from-scratch run of this length depends on its seed more than on the side it runs on (one
seed put the package 0.7x behind the loop, the next 1.2x ahead), so each side trains once per
seed (``--seeds``, default 0 1 2), the two sides of a seed back to back, each in a fresh
process. Times are wall-clock from the process's start (imports, data and model included) with
evaluation time left out, so the curves compare learning per second of training. The table
gives, at the same times (quarters of the shortest run), the mean over seeds of the best
validation nail IoU each side had reached by then, its range, and the ratio of the means; then
the steps per second of each.

    python benchmarks/demo_curve.py              # the shipped demo, 3 seeds: ~1 hour on 2 cores
    python benchmarks/demo_curve.py --max_steps 40 --evaluations 2 --seeds 0   # a smoke run
    python benchmarks/demo_curve.py --write      # also append the result to RESULTS.md
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "RESULTS.md"
GOAL = 0.9


# --------------------------------------------------------------------------- the bare loop


def _bare_loop(config: str, overrides: list[str], evaluate_every: int, out: str) -> None:
    """Child process: train the recipe in plain PyTorch; write ``{"curve": [...], ...}``."""
    start = time.monotonic()
    import numpy as np
    import torch
    from transformers import get_linear_schedule_with_warmup

    from nail_segformer.data import load_image, load_labels, load_splits
    from nail_segformer.data.transforms import load_image_processor
    from nail_segformer.labels import ID2LABEL, NAIL
    from nail_segformer.losses import SegmentationLoss
    from nail_segformer.metrics import compute_confusion_matrix, compute_metrics_from_confusion
    from nail_segformer.model import build_model
    from nail_segformer.train import parse_args
    from nail_segformer.train.build import ensure_data

    data_args, model_args, args = parse_args([config, *overrides])
    ensure_data(data_args)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    splits, _, _ = load_splits(
        data_args.data_root,
        validation_fraction=data_args.validation_fraction,
        test_fraction=data_args.test_fraction,
        seed=data_args.split_seed,
    )
    processor = load_image_processor(None, size=data_args.image_size)

    def encode(split):
        paths = splits[split].cast_column("image", _undecoded()).cast_column("label", _undecoded())
        images = [load_image(v["path"]) for v in paths["image"]]
        masks = [load_labels(v["path"]) for v in paths["label"]]
        enc = processor(images=images, segmentation_maps=masks, do_reduce_labels=False)
        return torch.as_tensor(np.asarray(enc["pixel_values"], dtype=np.float32)), torch.as_tensor(
            np.asarray(enc["labels"], dtype=np.int64)
        )

    train_x, train_y = encode("train")
    val_x, val_y = encode("validation")
    model = build_model(model_args.from_scratch_preset, ID2LABEL, seed=args.seed)
    loss_fn = SegmentationLoss(model_args.loss, dice_weight=model_args.dice_weight)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay
    )
    steps = args.max_steps
    warmup = (
        args.warmup_steps if args.warmup_steps >= 1 else int(np.ceil(args.warmup_steps * steps))
    )
    schedule = get_linear_schedule_with_warmup(optimizer, warmup, steps)
    crop, batch = (
        data_args.train_crop_size or data_args.image_size,
        args.per_device_train_batch_size,
    )
    nail_p, flip_p = data_args.nail_crop_probability, data_args.hflip_probability
    side = train_x.shape[-1]

    def patch(index: int):
        x, y = train_x[index], train_y[index]
        nails = torch.nonzero(y == NAIL) if rng.random() < nail_p else None
        if nails is not None and len(nails):  # a window that holds a random nail pixel
            cy, cx = nails[rng.integers(len(nails))].tolist()
            top = int(rng.integers(max(0, cy - crop + 1), min(cy, side - crop) + 1))
            left = int(rng.integers(max(0, cx - crop + 1), min(cx, side - crop) + 1))
        else:
            top, left = (int(v) for v in rng.integers(0, side - crop + 1, size=2))
        x, y = x[:, top : top + crop, left : left + crop], y[top : top + crop, left : left + crop]
        if rng.random() < flip_p:
            x, y = x.flip(-1), y.flip(-1)
        return x, y

    def evaluate() -> float:
        model.eval()
        confusion = np.zeros((len(ID2LABEL), len(ID2LABEL)), dtype=np.int64)
        with torch.no_grad():
            for i in range(0, len(val_x), args.per_device_eval_batch_size):
                logits = model(pixel_values=val_x[i : i + args.per_device_eval_batch_size]).logits
                labels = val_y[i : i + args.per_device_eval_batch_size]
                up = torch.nn.functional.interpolate(
                    logits, size=labels.shape[-2:], mode="bilinear", align_corners=False
                )
                confusion += compute_confusion_matrix(up.argmax(1), labels, len(ID2LABEL))
        model.train()
        return compute_metrics_from_confusion(confusion, ID2LABEL)["iou_nail"]

    curve, eval_seconds, order = [], 0.0, np.array([], dtype=int)
    model.train()
    for step in range(1, steps + 1):
        if len(order) < batch:
            order = np.concatenate([order, rng.permutation(len(train_x))])
        chosen, order = order[:batch], order[batch:]
        xs, ys = zip(*(patch(int(i)) for i in chosen), strict=True)
        outputs = model(pixel_values=torch.stack(xs))
        loss = loss_fn(outputs.logits, torch.stack(ys))
        loss.backward()
        if args.max_grad_norm:  # the Trainer clips by default (--max_grad_norm 1.0)
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % evaluate_every == 0 or step == steps:
            began = time.monotonic()
            trained = began - start - eval_seconds
            curve.append({"step": step, "seconds": trained, "iou_nail": evaluate()})
            eval_seconds += time.monotonic() - began
    Path(out).write_text(json.dumps({"curve": curve, "train_seconds": curve[-1]["seconds"]}))


def _undecoded():
    from datasets import Image

    return Image(decode=False)


# --------------------------------------------------------------------------- the package


def _package_run(config: str, overrides: list[str], evaluate_every: int, work: Path) -> dict:
    """``run_finetune.py`` in a child process; times each evaluation line as it is printed."""
    argv = [
        sys.executable, str(REPO_ROOT / "run_finetune.py"), config, *overrides,
        "--output_dir", str(work / "trainer-run"), "--overwrite_output_dir", "true",
        "--eval_strategy", "steps", "--eval_steps", str(evaluate_every),
        "--save_strategy", "steps", "--save_steps", str(evaluate_every),
        "--disable_tqdm", "true",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    curve, eval_seconds = [], 0.0
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO_ROOT
    ) as child:
        for line in child.stdout:
            now = time.monotonic()
            if "'eval_iou_nail'" not in line:  # periodic evaluations, not the final one
                continue
            logs = ast.literal_eval(line.strip())
            eval_seconds += float(logs["eval_runtime"])
            curve.append(
                {
                    "seconds": now - start - eval_seconds,
                    "iou_nail": float(logs["eval_iou_nail"]),
                }
            )
    if child.returncode != 0 or not curve:
        raise RuntimeError(f"run_finetune.py exited with {child.returncode}: {' '.join(argv)}")
    steps = json.loads((work / "trainer-run" / "trainer_state.json").read_text())["global_step"]
    evaluated_at = range(evaluate_every, steps + evaluate_every, evaluate_every)
    for point, step in zip(curve, evaluated_at, strict=False):
        point["step"] = min(step, steps)
    return {"curve": curve, "train_seconds": curve[-1]["seconds"]}


# --------------------------------------------------------------------------- comparison


def best_by(curve: list[dict], seconds: float) -> float:
    """The best nail IoU reached at or before ``seconds`` (0 before the first evaluation)."""
    return max((p["iou_nail"] for p in curve if p["seconds"] <= seconds + 1e-9), default=0.0)


def compare(package: list[dict], bare: list[dict], samples: int = 4) -> list[dict]:
    """Both sides' nail IoU over seeds at ``samples`` evenly spaced times.

    ``package`` and ``bare`` hold one run per seed. The times run up to the end of the shortest
    run, so every run has reached each of them; at each, the mean over seeds of the best IoU
    reached by then, its range, and the ratio of the means.
    """
    end = min(run["train_seconds"] for run in (*package, *bare))
    rows = []
    for k in range(1, samples + 1):
        t = end * k / samples
        row = {"seconds": t}
        for name, runs in (("package", package), ("bare", bare)):
            values = [best_by(run["curve"], t) for run in runs]
            row[name] = sum(values) / len(values)
            row[f"{name}_range"] = (min(values), max(values))
        row["ratio"] = row["package"] / row["bare"] if row["bare"] else None
        rows.append(row)
    return rows


def steps_per_second(run: dict) -> float:
    """Training steps per second of training time up to the last evaluation."""
    last = run["curve"][-1]
    return last["step"] / last["seconds"]


def format_report(
    config: str, overrides: list[str], seeds: list[int], package: list[dict], bare: list[dict]
) -> str:
    sys.path.insert(0, str(BENCH_DIR))
    from _common import format_table, machine_info

    table = []
    for row in compare(package, bare):
        cells = [
            f"{row[name]:.3f} ({row[f'{name}_range'][0]:.3f}-{row[f'{name}_range'][1]:.3f})"
            for name in ("package", "bare")
        ]
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
        table.append([f"{row['seconds'] / 60:.1f} min", *cells, ratio])
    headers = ["training time", "package nail IoU, mean (range)"]
    lines = [
        f"`python benchmarks/demo_curve.py {' '.join(overrides)} --seeds "
        f"{' '.join(map(str, seeds))}` ({config}); {machine_info()['summary']}; load "
        f"{os.getloadavg()[0]:.1f} at the end",
        "",
        format_table([*headers, "bare loop nail IoU, mean (range)", "package ÷ bare"], table),
    ]
    rates = [[steps_per_second(run) for run in runs] for runs in (package, bare)]
    means = [sum(r) / len(r) for r in rates]
    per_seed = [", ".join(f"{r:.2f}" for r in side) for side in rates]
    lines += [
        "",
        f"steps per second, mean over seeds: package {means[0]:.2f}, bare loop {means[1]:.2f} "
        f"(package ÷ bare {means[0] / means[1]:.2f}; goal ≥ {GOAL}); per seed: package "
        f"{per_seed[0]}, bare {per_seed[1]}.",
        "",
        "Curves per seed, (step, seconds, nail IoU):",
    ]
    for seed, ours, theirs in zip(seeds, package, bare, strict=True):
        for name, run in (("package", ours), ("bare", theirs)):
            points = " ".join(
                f"({p['step']}, {round(p['seconds'])}, {p['iou_nail']:.3f})" for p in run["curve"]
            )
            lines.append(f"- seed {seed}, {name}: {points}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--max_steps", type=int, default=None, help="override the config's")
    parser.add_argument("--evaluations", type=int, default=8, help="evaluations per run")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2],
        help="one run per side per seed (--seed of each); runs of one seed vary more than the "
        "two sides do",
    )  # fmt: skip
    parser.add_argument("--data_root", default=None, help="override the config's")
    parser.add_argument("--write", action="store_true", help="append the report to RESULTS.md")
    parser.add_argument("--bare_child", nargs=3, help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args(argv)
    if args.bare_child:
        every, out, overrides = args.bare_child
        _bare_loop(args.config, json.loads(overrides), int(every), out)
        return 0
    overrides = list(extra)
    if args.max_steps:
        overrides += ["--max_steps", str(args.max_steps)]
    if args.data_root:
        overrides += ["--data_root", args.data_root]
    from nail_segformer.train import parse_args

    _, _, training_args = parse_args([args.config, *overrides])
    every = max(1, training_args.max_steps // args.evaluations)
    package, bare = [], []
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:  # both sides of a seed back to back, so drift hits both alike
            seeded = [*overrides, "--seed", str(seed)]
            package.append(_package_run(args.config, seeded, every, Path(work)))
            out = Path(work) / "bare.json"
            subprocess.run(
                [sys.executable, __file__, "--config", args.config, "--bare_child", str(every),
                 str(out), json.dumps(seeded)],
                check=True, cwd=REPO_ROOT,
            )  # fmt: skip
            bare.append(json.loads(out.read_text()))
    report = format_report(args.config, overrides, args.seeds, package, bare)
    print(report)
    if args.write:
        with RESULTS.open("a", encoding="utf-8") as results:
            results.write(f"\n### Demo: package against a bare loop\n\n{report}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
