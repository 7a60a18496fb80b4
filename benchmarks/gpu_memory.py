"""How much GPU memory does a 512x512 training step of MiT-b0/b2/b4 need (measured on CPU)?

A training step holds, to within the CUDA context and allocator slack: static memory, 16 bytes
per parameter (fp32 weights, gradients, AdamW's two moments; ``--bf16`` autocast keeps them
fp32), exact; and the activations autograd saves for the backward pass, counted with
``saved_tensors_hooks`` (every distinct storage, parameters excluded) for the package's training
forward and ``ce`` loss; bf16 under CPU autocast, whose op lists are close to CUDA's. Each
configuration runs in a fresh process, which also reports its peak RSS growth over forward +
backward as a cross-check (an upper bound of the same order, not the GPU figure).

    python benchmarks/gpu_memory.py    # b0, b2, b4; batch 1 and 2; fp32 + bf16 (--help: others)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import child_main, format_table, machine_info, peak_mib, run_child  # noqa: E402

GIB = 2**30
BYTES_PER_PARAMETER = 4 + 4 + 8  # fp32 weights, gradients and AdamW's moments, also under bf16


def measure(preset: str, batch: int, size: int, dtype: str, backward: bool) -> dict:
    """One configuration, in this process: saved-activation bytes, parameters, RSS growth."""
    import torch

    from nail_segformer.labels import ID2LABEL
    from nail_segformer.losses import SegmentationLoss
    from nail_segformer.model import build_model, count_parameters

    torch.manual_seed(0)
    model = build_model(preset, ID2LABEL, seed=0).train()
    parameters = count_parameters(model)
    parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    pixel_values = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, 2, (batch, size, size))
    loss_fn = SegmentationLoss("ce").as_trainer_loss()
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    before, start = peak_mib(), time.perf_counter()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        loss = loss_fn(model(pixel_values=pixel_values), labels)
    if backward:
        loss.backward()
    return {"preset": preset, "batch": batch, "size": size, "dtype": dtype,
            "parameters": parameters, "static_bytes": parameters * BYTES_PER_PARAMETER,
            "activation_bytes": sum(saved.values()),
            "peak_rss_growth_bytes": (peak_mib() - before) * 2**20 if backward else None,
            "seconds": time.perf_counter() - start}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["mit-b0", "mit-b2", "mit-b4"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--bf16-batches", nargs="+", type=int, default=[1],
                        help="batch sizes measured under bf16 (activations are linear in it)")  # fmt: skip
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    print(machine_info()["summary"], flush=True)
    rows = []
    for preset in args.presets:
        for dtype in args.dtypes:
            for batch in args.batches if dtype == "fp32" else args.bf16_batches:
                config = {"preset": preset, "batch": batch, "size": args.size, "dtype": dtype}
                rows.append(run_child("gpu_memory", {"job": "measure", **config,
                                                     "backward": dtype == "fp32"}))  # fmt: skip
    print(format_table(
        ["model", "dtype", "batch", "parameters", "static GiB", "activations GiB",
         "activations per image GiB", "peak RSS growth (CPU, fwd+bwd) GiB"],
        [[r["preset"], r["dtype"], r["batch"], f"{r['parameters'] / 1e6:.2f}M",
          f"{r['static_bytes'] / GIB:.3f}", f"{r['activation_bytes'] / GIB:.3f}",
          f"{r['activation_bytes'] / r['batch'] / GIB:.3f}",
          "-" if r["peak_rss_growth_bytes"] is None else f"{r['peak_rss_growth_bytes'] / GIB:.2f}"]
         for r in rows],
    ))  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    if not child_main({"measure": measure}):
        sys.exit(main())
