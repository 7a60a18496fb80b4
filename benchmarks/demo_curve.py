"""Does the package learn the demo as fast as a bare PyTorch loop (nail IoU over wall-clock time)?

Both train the demo's recipe (``configs/demo.yaml``: preset, loss, AdamW schedule, clipping,
batch, patches, seed) on the same split and score the same validation photos with the
package's metric. What differs is what the package adds around the model: the bare loop
decodes every photo once and cuts patches from memory (flips only); the package reads files
through ``datasets`` and albumentations every step inside the ``Trainer``. A run this short
depends on its seed more than on its side, so each side trains once per seed (``--seeds``),
back to back, each in a fresh process; times are wall-clock from its start, evaluation left out.

    python benchmarks/demo_curve.py              # the shipped demo, 3 seeds: ~1 hour on 2 cores
    python benchmarks/demo_curve.py --max_steps 40 --evaluations 2 --seeds 0   # a smoke run
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, format_table, machine_info  # noqa: E402

GOAL = 0.9


def _bare_loop(config: str, overrides: list[str], evaluate_every: int, out: str) -> None:
    """Child process: train the recipe in plain PyTorch; write ``{"curve": [...], ...}``."""
    start = time.monotonic()
    import numpy as np
    import torch
    from datasets import Image
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
        paths = splits[split].cast_column("image", Image(decode=False))
        paths = paths.cast_column("label", Image(decode=False))
        images = [load_image(v["path"]) for v in paths["image"]]
        masks = [load_labels(v["path"]) for v in paths["label"]]
        enc = processor(images=images, segmentation_maps=masks, do_reduce_labels=False)
        x, y = np.asarray(enc["pixel_values"], np.float32), np.asarray(enc["labels"], np.int64)
        return torch.as_tensor(x), torch.as_tensor(y)

    train_x, train_y = encode("train")
    val_x, val_y = encode("validation")
    model = build_model(model_args.from_scratch_preset, ID2LABEL, seed=args.seed)
    loss_fn = SegmentationLoss(model_args.loss, dice_weight=model_args.dice_weight)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay
    )
    steps, batch = args.max_steps, args.per_device_train_batch_size
    warmup = args.warmup_steps
    warmup = warmup if warmup >= 1 else int(np.ceil(warmup * steps))
    schedule = get_linear_schedule_with_warmup(optimizer, warmup, steps)
    crop = data_args.train_crop_size or data_args.image_size
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


def _package_run(config: str, overrides: list[str], evaluate_every: int, work: Path) -> dict:
    """``run_finetune.py`` in a child process; times each evaluation line as it is printed."""
    every = str(evaluate_every)
    argv = [sys.executable, str(REPO_ROOT / "run_finetune.py"), config, *overrides, "--output_dir",
            str(work / "trainer-run"), "--overwrite_output_dir", "true", "--eval_strategy", "steps",
            "--eval_steps", every, "--save_strategy", "steps", "--save_steps", every,
            "--disable_tqdm", "true"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start, curve, eval_seconds = time.monotonic(), [], 0.0
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, cwd=REPO_ROOT) as child:  # fmt: skip
        for line in child.stdout:
            now = time.monotonic()
            if "'eval_iou_nail'" not in line:  # periodic evaluations, not the final one
                continue
            logs = ast.literal_eval(line.strip())
            eval_seconds += float(logs["eval_runtime"])
            point = {
                "seconds": now - start - eval_seconds,
                "iou_nail": float(logs["eval_iou_nail"]),
            }
            curve.append(point)
    if child.returncode != 0 or not curve:
        raise RuntimeError(f"run_finetune.py exited with {child.returncode}: {' '.join(argv)}")
    steps = json.loads((work / "trainer-run" / "trainer_state.json").read_text())["global_step"]
    evaluated_at = range(evaluate_every, steps + evaluate_every, evaluate_every)
    for point, step in zip(curve, evaluated_at, strict=False):
        point["step"] = min(step, steps)
    return {"curve": curve, "train_seconds": curve[-1]["seconds"]}


def compare(package: list[dict], bare: list[dict], samples: int = 4) -> list[dict]:
    """At ``samples`` evenly spaced times up to the end of the shortest run: for each side, the
    mean over seeds (one run each) of the best nail IoU reached by then, its range; the ratio."""
    end = min(run["train_seconds"] for run in (*package, *bare))
    rows = []
    for k in range(1, samples + 1):
        row = {"seconds": end * k / samples}
        for name, runs in (("package", package), ("bare", bare)):
            best = [max((p["iou_nail"] for p in run["curve"] if p["seconds"] <= row["seconds"]
                         + 1e-9), default=0.0) for run in runs]  # fmt: skip
            row[name], row[f"{name}_range"] = sum(best) / len(best), (min(best), max(best))
        row["ratio"] = row["package"] / row["bare"] if row["bare"] else None
        rows.append(row)
    return rows


HEADERS = ["training time", "package nail IoU, mean (range)", "bare loop nail IoU, mean (range)",
           "package ÷ bare"]  # fmt: skip


def _cells(row: dict) -> list[str]:
    spans = [f"{row[n]:.3f} ({row[n + '_range'][0]:.3f}-{row[n + '_range'][1]:.3f})"
             for n in ("package", "bare")]  # fmt: skip
    ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
    return [f"{row['seconds'] / 60:.1f} min", *spans, ratio]


def format_report(seeds: list[int], package: list, bare: list) -> str:
    # Training steps per second of training time up to each run's last evaluation.
    rates = [[run["curve"][-1]["step"] / run["curve"][-1]["seconds"] for run in runs]
             for runs in (package, bare)]  # fmt: skip
    means = [sum(r) / len(r) for r in rates]
    info = machine_info()
    lines = [
        f"`{info['command']}`; {info['summary']}",
        "",
        format_table(HEADERS, [_cells(row) for row in compare(package, bare)]),
        "",
        f"steps per second, mean over seeds: package {means[0]:.2f}, bare loop {means[1]:.2f} "
        f"(package ÷ bare {means[0] / means[1]:.2f}; goal ≥ {GOAL})",
        "",
        "Curves per seed, (step, seconds, nail IoU):",
    ]
    for seed, *runs in zip(seeds, package, bare, strict=True):
        for name, run in zip(("package", "bare"), runs, strict=True):
            points = [f"({p['step']}, {round(p['seconds'])}, {p['iou_nail']:.3f})"
                      for p in run["curve"]]  # fmt: skip
            lines.append(f"- seed {seed}, {name}: {' '.join(points)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--evaluations", type=int, default=8, help="evaluations per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="one run per side per seed (--seed of each)")  # fmt: skip
    parser.add_argument("--bare_child", nargs=3, help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args(argv)  # the rest: run_finetune.py flags
    if args.bare_child:
        every, out, overrides = args.bare_child
        _bare_loop(args.config, json.loads(overrides), int(every), out)
        return 0
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
    print(format_report(args.seeds, package, bare))
    return 0


if __name__ == "__main__":
    sys.exit(main())
