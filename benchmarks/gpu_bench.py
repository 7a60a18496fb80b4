"""How fast does MiT-b4 train on one GPU (fp32, bf16, compile), and does it wait for data?

Run by ``benchmarks/gpu.sh`` on a GPU machine; ``--dry-run`` runs every code path on CPU with
a tiny model in under a minute. Measured, each after warm-up steps: ``fp32``, ``bf16``
(autocast) and ``compile`` (``torch.compile``, bf16): samples/s and peak memory
(``torch.cuda.max_memory_allocated``) of forward + loss + backward + AdamW on one batch kept
on the device; ``loader``: the package's Trainer data loader (8 workers, pinned memory) feeding
the bf16 step, and the fraction of the step time spent waiting for the next batch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import format_table, machine_info, make_photos  # noqa: E402 - sets the offline variables

CONFIGS = ("fp32", "bf16", "compile")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag, default in (("--preset", "mit-b4"), ("--size", 512), ("--batch", 8),
                          ("--warmup", 3), ("--steps", 10), ("--loader-workers", 8),
                          ("--loader-steps", 30), ("--photos", 320), ("--budget-s", 420.0),
                          ("--compile-backend", "inductor")):  # fmt: skip
        parser.add_argument(flag, type=type(default), default=default)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny model, 64², 1 step each: checks the code, measures nothing")  # fmt: skip
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device, args.preset, args.size, args.batch = "cpu", "tiny", 64, 2
        args.warmup, args.steps, args.loader_workers, args.loader_steps = 1, 1, 2, 2
        args.photos, args.compile_backend = 8, "eager"
    return args


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _step_fn(model, optimizer, loss_fn, autocast_dtype, device):
    import torch

    def step(pixel_values, labels):
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outputs = model(pixel_values=pixel_values)
            loss = loss_fn(outputs, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


def measure_config(name: str, args, device, batch: dict) -> dict:
    """samples/s and peak memory of one training-step configuration."""
    import torch

    from nail_segformer.data import ID2LABEL
    from nail_segformer.losses import SegmentationLoss
    from nail_segformer.model import build_model

    model = build_model(args.preset, ID2LABEL, seed=0).to(device).train()
    pixel_values, labels = batch["pixel_values"].to(device), batch["labels"].to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-5, fused=device.type == "cuda")
    loss_fn = SegmentationLoss("ce").as_trainer_loss()
    autocast = torch.bfloat16 if name in ("bf16", "compile") else None
    runner = model
    if name == "compile":
        runner = torch.compile(model, backend=args.compile_backend)
    step = _step_fn(runner, optimizer, loss_fn, autocast, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.warmup):
        step(pixel_values, labels)
    _sync(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step(pixel_values, labels)
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    result = {"config": name, "samples_per_s": args.steps * args.batch / seconds,
              "step_ms": 1000 * seconds / args.steps, "warmup_s": warm,
              "peak_memory_gib": None if peak is None else peak / 2**30,
              "loss": float(loss.detach())}  # fmt: skip
    del model, runner, optimizer, step
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def measure_loader_wait(args, device, trainer) -> dict:
    """Fraction of the bf16 step time spent waiting for the Trainer's data loader."""
    import torch

    from nail_segformer.losses import SegmentationLoss

    model = trainer.model
    loader = trainer.get_train_dataloader()  # pinned memory, workers, moves batches to device
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-5, fused=device.type == "cuda")
    step = _step_fn(model, optimizer, SegmentationLoss("ce").as_trainer_loss(), torch.bfloat16,
                    device)  # fmt: skip
    waits, totals = [], []
    iterator = iter(loader)
    for index in range(args.loader_steps + args.warmup):
        start = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        pixel_values = batch["pixel_values"].to(device, non_blocking=True)
        labels = batch["labels"].to(device, non_blocking=True)
        _sync(device)
        fetched = time.perf_counter()
        step(pixel_values, labels)
        _sync(device)
        if index >= args.warmup:  # the first batches include worker start-up
            waits.append(fetched - start)
            totals.append(time.perf_counter() - start)
    return {"config": f"loader ({args.loader_workers} workers, bf16 step)",
            "wait_fraction": sum(waits) / sum(totals),
            "samples_per_s": len(totals) * args.batch / sum(totals),
            "mean_wait_ms": 1000 * sum(waits) / len(waits),
            "mean_step_ms": 1000 * sum(totals) / len(totals), "cpu_count": os.cpu_count()}  # fmt: skip


def results_table(results: list[dict]) -> str:
    rows = [[r["config"], f"{r['samples_per_s']:.2f}", f"{r.get('step_ms', r.get('mean_step_ms')):.1f}",
             "-" if r.get("peak_memory_gib") is None else f"{r['peak_memory_gib']:.2f}",
             "-" if r.get("wait_fraction") is None else f"{r['wait_fraction']:.1%}"]
            for r in results]  # fmt: skip
    return format_table(
        ["config", "samples/s", "step ms", "peak GPU memory GiB", "data wait"], rows
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from run import _trainer
    from transformers import default_data_collator

    started = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu --dry-run to check the script")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here; bf16 is its own row
    torch.backends.cudnn.allow_tf32 = False
    info = {**machine_info(), "preset": args.preset, "size": args.size, "batch": args.batch}
    print(json.dumps(info), flush=True)
    with tempfile.TemporaryDirectory(prefix="nail-gpu-") as work:
        data_root = str(make_photos(Path(work) / "photos", args.photos))
        use_cpu = ["--use_cpu", str(device.type == "cpu").lower(), "--eval_strategy", "no"]
        trainer, datasets, _, _ = _trainer(data_root, work, args.preset, args.size, args.batch,
                                           args.loader_workers, use_cpu)  # fmt: skip
        batch = default_data_collator(datasets["train"].__getitems__(list(range(args.batch))))
        # torch.compile last: its compilation takes the longest and is what the budget cuts.
        jobs = [(name, lambda name=name: measure_config(name, args, device, batch))
                for name in args.configs if name != "compile"]  # fmt: skip
        jobs.append(("loader", lambda: measure_loader_wait(args, device, trainer)))
        if "compile" in args.configs:
            jobs.append(("compile", lambda: measure_config("compile", args, device, batch)))
        results = []
        for name, job in jobs:
            if time.perf_counter() - started > args.budget_s:
                print(f"skipping {name}: time budget spent", file=sys.stderr)
                continue
            results.append(job())
            print(json.dumps(results[-1]), flush=True)
    print(results_table(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"info": info, "results": results}, indent=2))
    print(f"done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
