"""What do the nail and boundary metrics cost, next to the model's forward pass?

    python benchmarks/metrics_cost.py            # 512 px, 32 images
    python benchmarks/metrics_cost.py --smoke    # tiny sizes: checks the script

In one process, alternating rounds (fastest kept): MiT-b0's forward pass, then
``StreamingSegmentationMetrics`` with pixel figures only (``positive_label=None``) and in full
(nails matched, boundary bands), upsampling and argmax included. Untrained weights predict
noise, unlike a real model's components and bands, so the metric gets logits made from the
true masks plus Gaussian noise: nail-shaped, with ragged edges.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SEED, format_table, machine_info, make_photos  # noqa: E402

CONFIGS = {
    "full": {"photos": 32, "size": 512, "n": 32, "batch": 8, "rounds": 3},
    "smoke": {"photos": 4, "size": 64, "n": 4, "batch": 2, "rounds": 1},
}
LOGIT_MARGIN, LOGIT_NOISE = 3.0, 1.0


def _model_like_logits(labels, generator):
    """(N, 2, H/4, W/4) logits whose argmax follows the masks, with ragged edges."""
    import torch
    import torch.nn.functional as F

    nail_share = F.avg_pool2d((labels == 1).float()[:, None], kernel_size=4)
    nail = 2 * LOGIT_MARGIN * (nail_share - 0.5)
    nail = nail + LOGIT_NOISE * torch.randn(nail.shape, generator=generator)
    return torch.cat([-nail, nail], dim=1)


def measure(data_root: str, out_dir: str, size: int, n: int, batch: int, rounds: int) -> dict:
    """Milliseconds per image: forward pass, pixel-only metric, full metric (best of rounds)."""
    import torch
    from run import _eval_splits, _trainer
    from transformers import set_seed

    from nail_segformer.labels import ID2LABEL
    from nail_segformer.metrics import StreamingSegmentationMetrics
    from nail_segformer.model import build_model

    set_seed(SEED)
    # Only the Trainer's evaluation data pipeline is used: the eval transform at `size`.
    _, datasets, _, _ = _trainer(data_root, out_dir, "tiny", size, batch, 0, [],
                                 _eval_splits(data_root, n))  # fmt: skip
    validation = datasets["validation"]
    model = build_model("mit-b0", ID2LABEL, seed=SEED).eval()
    generator = torch.Generator().manual_seed(SEED)
    batches = []
    for start in range(0, n, batch):
        rows = validation[start : start + batch]
        pixel_values = torch.stack([torch.as_tensor(v) for v in rows["pixel_values"]])
        labels = torch.stack([torch.as_tensor(v) for v in rows["labels"]]).long()
        batches.append((pixel_values, labels, _model_like_logits(labels, generator)))

    def forward():
        with torch.inference_mode():
            for pixel_values, _, _ in batches:
                model(pixel_values=pixel_values)

    def metric(**kwargs):
        def run():
            streaming = StreamingSegmentationMetrics(ID2LABEL, **kwargs)
            for index, (_, labels, logits) in enumerate(batches):
                result = streaming((logits, labels), compute_result=index == len(batches) - 1)
            return result

        return run

    forward()  # first-call allocations
    methods = {"forward": forward, "pixel_only": metric(positive_label=None), "full": metric()}
    best, results = dict.fromkeys(methods, float("inf")), {}
    for _ in range(rounds):
        for name, method in methods.items():
            start = time.perf_counter()
            results[name] = method()
            best[name] = min(best[name], time.perf_counter() - start)
    figures = results["full"]
    same = all(figures[k] == v for k, v in results["pixel_only"].items())
    return {**{name: 1000 * seconds / n for name, seconds in best.items()}, "figures": figures,
            "same_pixel_metrics": same}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script")
    args = parser.parse_args(argv)
    cfg = CONFIGS["smoke" if args.smoke else "full"]
    info, started = machine_info(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nail-metrics-bench-") as tmp:
        data = make_photos(Path(tmp) / "photos", cfg["photos"])
        cost = measure(str(data), tmp, cfg["size"], cfg["n"], cfg["batch"], cfg["rounds"])
    added = cost["full"] - cost["pixel_only"]
    f = cost["figures"]
    print(format_table(["figure", "value"], [
        [f"MiT-b0 forward, batch {cfg['batch']}, {cfg['size']}², ms/image", cost["forward"]],
        ["metric, pixel figures only, ms/image", cost["pixel_only"]],
        ["metric, all figures (nails, boundary), ms/image", cost["full"]],
        ["added by nails and boundary ÷ forward", added / cost["forward"]],
        ["whole metric ÷ forward", cost["full"] / cost["forward"]],
    ]))  # fmt: skip
    print(f"\n{cfg['n']} images, best of {cfg['rounds']} alternating rounds; on the model-like "
          f"logits: nail IoU {f['iou_nail']:.3f}, boundary IoU {f['boundary_iou_nail']:.3f}, "
          f"detection F1 {f['nail_detection_f1']:.3f}; pixel figures identical in both: "
          f"{cost['same_pixel_metrics']}")  # fmt: skip
    print(f"`{info['command']}`, {time.perf_counter() - started:.0f} s; {info['summary']}")
    return 0 if cost["same_pixel_metrics"] else 1


if __name__ == "__main__":
    sys.exit(main())
