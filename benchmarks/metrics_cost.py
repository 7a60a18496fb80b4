"""What do the nail and boundary metrics cost, and does evaluation memory stay flat?

    python benchmarks/metrics_cost.py            # 512 px; cost on 32 images; memory 64 vs 512
    python benchmarks/metrics_cost.py --quick    # 256 px; cost on 8 images; memory 16 vs 64
    python benchmarks/metrics_cost.py --no_process_options   # children without them

1. Cost, in one process, alternating rounds (fastest kept): MiT-b0's forward pass on batches of 8
   photos, then :class:`nail_segformer.metrics.StreamingSegmentationMetrics` on logits of the
   same size twice, once with pixel metrics only (``positive_label=None``: the confusion matrix,
   what the hook computed before nails and boundaries) and once in full (nails matched, boundary
   bands). Both include the upsampling, the argmax and the evaluate module. Untrained weights
   predict noise, which would make components and bands unlike a real model's, so the hooks get
   logits made from the true masks (nail where a 4x4 block is mostly nail, plus Gaussian noise of
   standard deviation 1 against a margin of 3): nail-shaped predictions with ragged edges.
2. Memory: ``_evaluation.job_eval_memory`` (``trainer.evaluate()`` of a tiny model with the hook
   ``build_trainer`` wires, 2 data-loader workers) at a small and a large number of images, each
   in a fresh process with the memory option that prediction and GPU training set
   (:func:`nail_segformer.runtime.configure_cli_process`); peak RSS growth between the two.
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
    SEED,
    child_main,
    load_average,
    machine_info,
    make_photos,
    run_child,
    seed_everything,
)

CONFIGS = {
    "full": {"photos": 512, "size": 512, "cost_images": 32, "batch": 8, "rounds": 3,
             "memory": {"preset": "tiny", "batch": 8, "workers": 2, "n_small": 64,
                        "n_large": 512}},
    "quick": {"photos": 64, "size": 256, "cost_images": 8, "batch": 4, "rounds": 2,
              "memory": {"preset": "tiny", "batch": 4, "workers": 2, "n_small": 16,
                         "n_large": 64}},
    # Checks that every figure is produced, in seconds; its numbers mean nothing.
    "smoke": {"photos": 12, "size": 64, "cost_images": 4, "batch": 2, "rounds": 1,
              "memory": {"preset": "tiny", "batch": 2, "workers": 0, "n_small": 4,
                         "n_large": 8}},
}  # fmt: skip
# What python -m nail_segformer.predict and GPU training set (nail_segformer.runtime), as an
# environment variable for a child.
CLI_PROCESS_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
LOGIT_MARGIN, LOGIT_NOISE = 3.0, 1.0


def _model_like_logits(labels, generator):
    """(N, 2, H/4, W/4) logits whose argmax follows the masks, with ragged edges."""
    import torch
    import torch.nn.functional as F

    nail_share = F.avg_pool2d((labels == 1).float()[:, None], kernel_size=4)
    nail = 2 * LOGIT_MARGIN * (nail_share - 0.5)
    nail = nail + LOGIT_NOISE * torch.randn(nail.shape, generator=generator)
    return torch.cat([-nail, nail], dim=1)


def job_cost(data_root: str, out_dir: str, size: int, n: int, batch: int, rounds: int) -> dict:
    """Seconds per image: forward pass, pixel-only hook, full hook (best of ``rounds``)."""
    import torch
    from _evaluation import _eval_trainer

    from nail_segformer.labels import ID2LABEL
    from nail_segformer.metrics import StreamingSegmentationMetrics

    seed_everything()
    trainer, _, validation = _eval_trainer(
        data_root, out_dir, "tiny", size, n, batch, 0, batch_eval_metrics=True
    )
    del trainer  # only its data pipeline was needed: the eval transform at `size`
    from nail_segformer.model import build_model

    model = build_model("mit-b0", ID2LABEL, seed=SEED).eval()
    generator = torch.Generator().manual_seed(SEED)
    batches = []
    for start in range(0, n, batch):
        rows = validation[start : start + batch]
        pixel_values = torch.stack([torch.as_tensor(v) for v in rows["pixel_values"]])
        labels = torch.stack([torch.as_tensor(v) for v in rows["labels"]]).long()
        batches.append((pixel_values, labels, _model_like_logits(labels, generator)))

    pixel_only = StreamingSegmentationMetrics(ID2LABEL, positive_label=None)
    full = StreamingSegmentationMetrics(ID2LABEL)

    def forward():
        with torch.inference_mode():
            for pixel_values, _, _ in batches:
                model(pixel_values=pixel_values)

    def hook(metric):
        def run():
            for index, (_, labels, logits) in enumerate(batches):
                result = metric((logits, labels), compute_result=index == len(batches) - 1)
            return result

        return run

    forward()  # first-call allocations
    methods = {"forward": forward, "pixel_only": hook(pixel_only), "full": hook(full)}
    best = dict.fromkeys(methods, float("inf"))
    results = {}
    for _ in range(rounds):
        for name, method in methods.items():
            start = time.perf_counter()
            results[name] = method()
            best[name] = min(best[name], time.perf_counter() - start)
    figures = results["full"]
    return {
        **{f"{name}_ms": 1000 * seconds / n for name, seconds in best.items()},
        "n": n,
        "torch_threads": torch.get_num_threads(),
        "true_nails": sum(figures[f"true_nails_{s}"] for s in ("small", "medium", "large")),
        "iou_nail": figures["iou_nail"],
        "boundary_iou_nail": figures["boundary_iou_nail"],
        "nail_detection_f1": figures["nail_detection_f1"],
        "same_pixel_metrics": all(figures[k] == v for k, v in results["pixel_only"].items()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script")
    parser.add_argument("--workdir", help="keep the photos here instead of a temporary folder")
    parser.add_argument(
        "--no_process_options",
        action="store_true",
        help="run the children without the fixed mmap threshold (a library user's case)",
    )
    args = parser.parse_args(argv)
    env = {} if args.no_process_options else CLI_PROCESS_ENV
    command = shlex.join(
        ["python", "benchmarks/metrics_cost.py", *(sys.argv[1:] if argv is None else argv)]
    )
    cfg = CONFIGS["smoke" if args.smoke else "quick" if args.quick else "full"]
    info = machine_info()
    load_start = load_average()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nail-metrics-bench-") as tmp:
        work = Path(args.workdir or tmp)
        data = make_photos(work / f"photos-{cfg['photos']}", cfg["photos"])
        common = {"data_root": str(data), "out_dir": str(work / "eval"), "size": cfg["size"]}
        cost = run_child(
            "metrics_cost",
            {**common, "job": "cost", "n": cfg["cost_images"], "batch": cfg["batch"],
             "rounds": cfg["rounds"]},
            env=env,
        )  # fmt: skip
        mc = cfg["memory"]
        settings = {k: v for k, v in mc.items() if k not in ("n_small", "n_large")}
        memory = {
            n: run_child(
                "_evaluation",
                {**common, **settings, "job": "eval_memory", "mode": "streaming", "n": n},
                env=env,
            )
            for n in (mc["n_small"], mc["n_large"])
        }
    mb = 2**20
    small, large = memory[mc["n_small"]], memory[mc["n_large"]]
    grown = (large["peak_rss"] - small["peak_rss"]) / mb
    added = cost["full_ms"] - cost["pixel_only_ms"]
    size = cfg["size"]
    lines = [
        f"### {info['date']} — `{command}` ({(time.perf_counter() - started) / 60:.1f} min)",
        "",
        f"- machine: {info['cpu']}, {info['cores']} cores; torch threads "
        f"{cost['torch_threads']}; load (1/5/15 min) {load_start} at start, {load_average()} at "
        "end",
        f"- versions: Python {info['python']}, {info['versions']}; code {info['commit']}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| MiT-b0 forward, batch {cfg['batch']}, {size}² | {cost['forward_ms']:.1f} ms/image |",
        f"| hook, pixel metrics only | {cost['pixel_only_ms']:.1f} ms/image |",
        f"| hook, all metrics (nails, boundary) | {cost['full_ms']:.1f} ms/image |",
        f"| added by nails and boundary ÷ forward | {added / cost['forward_ms']:.3f} |",
        f"| whole hook ÷ forward | {cost['full_ms'] / cost['forward_ms']:.3f} |",
        f"| eval peak RSS, {mc['n_small']} → {mc['n_large']} images ({mc['preset']}, {size}², "
        f"{mc['workers']} workers) | {small['peak_rss'] / mb:.0f} → {large['peak_rss'] / mb:.0f} MB"
        f" ({grown:+.0f} MB, {100 * grown / (small['peak_rss'] / mb):+.1f}%) |",
        "",
        f"Cost: {cost['n']} images, best of {cfg['rounds']} alternating rounds; the full hook's "
        f"figures on the model-like logits: {cost['true_nails']:.0f} true nails, nail IoU "
        f"{cost['iou_nail']:.3f}, boundary IoU {cost['boundary_iou_nail']:.3f}, detection F1 "
        f"{cost['nail_detection_f1']:.3f}; pixel metrics identical in both hooks: "
        f"{cost['same_pixel_metrics']}. Memory: {small['seconds']:.1f} s and "
        f"{large['seconds']:.1f} s, mean IoU {small['mean_iou']:.4f} and {large['mean_iou']:.4f}, "
        f"RSS before evaluate() {small['rss_before'] / mb:.0f} and {large['rss_before'] / mb:.0f}"
        " MB.",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if not child_main({"cost": job_cost}):
        sys.exit(main())
