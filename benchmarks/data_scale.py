"""Does building the data set stay linear in time and memory, and read no pixels, as it grows?

    python benchmarks/data_scale.py    # N = 2,000 and 20,000 pairs (--sizes, --image_size)

For each N this writes a temporary tree of N pairs (JPEG photos, PNG masks, from a small pool
of distinct files), then a fresh process runs what ``nail_segformer.data.load_splits`` runs
(``find_pairs``, ``split_pairs``, ``build_dataset_dict``) and counts every Pillow decode:
building the data set should read headers only. Columns: seconds per phase and in all,
microseconds per pair (flat when time is linear), the child's peak memory, its growth over
the peak after imports, and files decoded.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SEED, child_main, format_table, machine_info, peak_mib, run_child  # noqa: E402

CATEGORIES = ("1", "2", "3", "4")
POOL = 8  # distinct photos (and masks) written round-robin


def write_pairs(root: Path, n: int, width: int, height: int) -> None:
    """Write ``n`` photo/mask pairs under ``root``, from ``POOL`` distinct seeded pairs."""
    import numpy as np
    from PIL import Image

    rng, pool = np.random.default_rng(SEED), []
    for _ in range(POOL):
        # Smooth colour fields, so that large sizes compress like photos rather than noise.
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
        mask = np.zeros((height, width), dtype=np.uint8)
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        mask[top : top + height // 3, left : left + width // 4] = 255
        photo_bytes, mask_bytes = io.BytesIO(), io.BytesIO()
        coarse.resize((width, height), Image.Resampling.BILINEAR).save(photo_bytes, "JPEG")
        Image.fromarray(mask).save(mask_bytes, format="PNG")
        pool.append((photo_bytes.getvalue(), mask_bytes.getvalue()))
    for category in CATEGORIES:
        (root / "Images" / category).mkdir(parents=True)
        (root / "Masks" / category).mkdir(parents=True)
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        (root / "Images" / category / f"n_{i:06d}.jpg").write_bytes(pool[i % POOL][0])
        (root / "Masks" / category / f"n_{i:06d}.png").write_bytes(pool[i % POOL][1])


def build(data_root: str) -> dict:
    """Build the data set from ``data_root`` in this (fresh) process and measure it."""
    import datasets  # noqa: F401 - imported lazily by build_dataset_dict; not part of the cost
    from PIL import ImageFile

    from nail_segformer.data import build_dataset_dict, find_pairs, split_pairs

    decoded: list[str] = []
    original_load = ImageFile.ImageFile.load

    def counting_load(self):
        if getattr(self, "tile", None):  # pixel data still to decode
            decoded.append(str(getattr(self, "filename", "?")))
        return original_load(self)

    ImageFile.ImageFile.load = counting_load
    after_imports, times = peak_mib(), {}
    start = time.perf_counter()
    scan = find_pairs(data_root)
    times["find"] = time.perf_counter() - start
    pairs = split_pairs(scan.pairs, 0.1, 0.1, seed=SEED)
    times["split"] = time.perf_counter() - start - times["find"]
    build_dataset_dict(pairs)
    times["build"] = time.perf_counter() - start - times["find"] - times["split"]
    return {"pairs": len(scan.pairs), "seconds": times, "after_imports_mb": after_imports,
            "peak_mb": peak_mib(), "decoded_files": len(decoded)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", help="numbers of pairs to measure")
    parser.add_argument("--image_size", default="64x48", help="WIDTHxHEIGHT of each file")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    sizes = args.sizes or [2000, 20000]
    width, height = (int(v) for v in args.image_size.lower().split("x"))
    info = machine_info()
    print(info["summary"], flush=True)
    results, rows = [], []
    for n in sizes:
        root = Path(tempfile.mkdtemp(prefix="nail_data_scale_"))
        try:
            write_pairs(root, n, width, height)
            r = {"n": n, **run_child("data_scale", {"job": "build", "data_root": str(root)})}
        finally:
            shutil.rmtree(root, ignore_errors=True)
        results.append(r)
        s = r["seconds"]
        total = sum(s.values())
        rows.append([n, f"{s['find']:.2f}", f"{s['split']:.2f}", f"{s['build']:.2f}",
                     f"{total:.2f}", f"{total / n * 1e6:.0f}", r["peak_mb"],
                     r["peak_mb"] - r["after_imports_mb"], r["decoded_files"]])  # fmt: skip
    headers = ["N", "find s", "split s", "build s", "total s", "us/pair", "peak MB", "growth MB"]
    print(format_table([*headers, "decoded"], rows))
    if args.json:
        args.json.write_text(json.dumps({"environment": info, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    if not child_main({"build": build}):
        sys.exit(main())
