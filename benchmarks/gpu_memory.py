"""How much GPU memory does a 512x512 training step of MiT-b0/b2/b4 need (measured on CPU)?

What a training step holds on a GPU is, to within the CUDA context and allocator slack:

- static: parameters, gradients and AdamW's two moments, 4 + 4 + 8 = 16 bytes per parameter.
  These are exact (counted from the model). With ``--bf16`` the Trainer keeps fp32 weights,
  gradients and moments (autocast only changes the activations), so they do not change.
- activations: the tensors autograd saves in the forward pass for the backward pass. Counted
  here with ``torch.autograd.graph.saved_tensors_hooks``: the bytes of every distinct storage a
  saved tensor lives in, parameters excluded, for the package's training forward (train mode,
  the default ``ce`` loss on logits upsampled to 512x512). fp32 is counted in fp32; bf16 is
  counted under CPU autocast to bfloat16, whose op lists (matmuls and convolutions in bf16,
  reductions such as softmax and norms kept in fp32) are close to, but not the same as, CUDA's.

Each configuration runs in a fresh process, which also reports its peak RSS growth during
forward + backward as a cross-check (CPU kernels keep other temporaries than CUDA ones; it is
an upper bound of the same order, not the GPU figure).

    python benchmarks/gpu_memory.py                       # b0, b2, b4; batch 1 and 2; fp32 + bf16
    python benchmarks/gpu_memory.py --presets mit-b0 --batches 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import format_table, machine_info  # noqa: E402 - sets the offline variables

GIB = 2**30
BYTES_PER_PARAMETER = {"weights": 4, "gradients": 4, "adamw": 8}  # fp32, also under --bf16


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


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

    rss_before = _rss_bytes()
    start = time.perf_counter()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        loss = loss_fn(model(pixel_values=pixel_values), labels)
    forward_s = time.perf_counter() - start
    if backward:
        loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "preset": preset,
        "batch": batch,
        "size": size,
        "dtype": dtype,
        "parameters": parameters,
        "static_bytes": parameters * sum(BYTES_PER_PARAMETER.values()),
        "activation_bytes": sum(saved.values()),
        "saved_storages": len(saved),
        "peak_rss_growth_bytes": (peak - rss_before) if backward else None,
        "forward_s": forward_s,
        "seconds": time.perf_counter() - start,
    }


def _child(config: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rows_table(rows: list[dict]) -> str:
    return format_table(
        ["model", "dtype", "batch", "parameters", "static GiB", "activations GiB",
         "activations per image GiB", "peak RSS growth (CPU, fwd+bwd) GiB"],
        [
            [r["preset"], r["dtype"], r["batch"], f"{r['parameters'] / 1e6:.2f}M",
             f"{r['static_bytes'] / GIB:.3f}", f"{r['activation_bytes'] / GIB:.3f}",
             f"{r['activation_bytes'] / r['batch'] / GIB:.3f}",
             "-" if r["peak_rss_growth_bytes"] is None
             else f"{r['peak_rss_growth_bytes'] / GIB:.2f}"]
            for r in rows
        ],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["mit-b0", "mit-b2", "mit-b4"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument(
        "--bf16-batches", nargs="+", type=int, default=[1],
        help="Batch sizes measured under bf16 (activations are linear in the batch).",
    )  # fmt: skip
    parser.add_argument("--json", help="Write the rows here.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        config = json.loads(args.child)
        print(json.dumps(measure(**config)))
        return 0
    print(machine_info()["summary"], flush=True)
    rows = []
    for preset in args.presets:
        for dtype in args.dtypes:
            for batch in args.batches if dtype == "fp32" else args.bf16_batches:
                config = {"preset": preset, "batch": batch, "size": args.size, "dtype": dtype}
                rows.append(_child({**config, "backward": dtype == "fp32"}))
                print(json.dumps(rows[-1]), flush=True)
    print(rows_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
