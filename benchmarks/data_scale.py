"""Does building the data set stay linear in time and memory, and read no pixels, as it grows?

    python benchmarks/data_scale.py                  # N = 2,000 and 20,000 pairs
    python benchmarks/data_scale.py --quick          # N = 200 and 2,000
    python benchmarks/data_scale.py --sizes 500 5000 --image_size 1024x768 --json out.json

For each N this writes a temporary ``Images/<1..4>/`` + ``Masks/<1..4>/`` tree of N pairs
(JPEG photos, PNG masks, written directly with PIL from a small pool of distinct files), then
starts a fresh Python process that imports the package and ``datasets``, notes its peak RSS,
and runs what ``nail_segformer.data.load_splits`` runs: ``find_pairs``, ``split_pairs``,
``build_dataset_dict``. The child counts every Pillow decode (``ImageFile.load`` calls with
pixel data still to read): building the data set should read headers only, leaving pixels to
the training transform. One process per N keeps one N's peak RSS from hiding the next one's.

Columns: seconds per phase and in all, microseconds per pair (flat when time is linear), peak RSS
of the child (``ru_maxrss``), its growth over the RSS after imports, and files decoded.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import format_table, machine_info  # noqa: E402

SEED = 0
CATEGORIES = ("1", "2", "3", "4")
POOL = 8  # distinct photos (and masks) written round-robin


def _encoded_pool(width: int, height: int) -> list[tuple[bytes, bytes]]:
    """``POOL`` (JPEG photo, PNG mask) byte pairs of the given size, seeded."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(SEED)
    pool = []
    for _ in range(POOL):
        # Smooth colour fields, so that large sizes compress like photos rather than noise.
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
        photo = coarse.resize((width, height), Image.Resampling.BILINEAR)
        mask = np.zeros((height, width), dtype=np.uint8)
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        mask[top : top + height // 3, left : left + width // 4] = 255
        photo_bytes, mask_bytes = io.BytesIO(), io.BytesIO()
        photo.save(photo_bytes, format="JPEG", quality=85)
        Image.fromarray(mask).save(mask_bytes, format="PNG")
        pool.append((photo_bytes.getvalue(), mask_bytes.getvalue()))
    return pool


def write_pairs(root: Path, n: int, width: int, height: int) -> float:
    """Write ``n`` photo/mask pairs under ``root``; returns the seconds it took."""
    start = time.perf_counter()
    pool = _encoded_pool(width, height)
    for category in CATEGORIES:
        (root / "Images" / category).mkdir(parents=True)
        (root / "Masks" / category).mkdir(parents=True)
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        photo, mask = pool[i % POOL]
        (root / "Images" / category / f"n_{i:06d}.jpg").write_bytes(photo)
        (root / "Masks" / category / f"n_{i:06d}.png").write_bytes(mask)
    return time.perf_counter() - start


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(data_root: str) -> dict:
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
    rss_after_imports = _peak_rss_mb()
    times = {}
    start = time.perf_counter()
    scan = find_pairs(data_root)
    times["find"] = time.perf_counter() - start
    start = time.perf_counter()
    pairs = split_pairs(scan.pairs, 0.1, 0.1, seed=SEED)
    times["split"] = time.perf_counter() - start
    start = time.perf_counter()
    dataset_dict = build_dataset_dict(pairs)
    times["build"] = time.perf_counter() - start
    return {
        "pairs": len(scan.pairs),
        "problems": len(scan.problems),
        "splits": {name: len(ds) for name, ds in dataset_dict.items()},
        "seconds": times,
        "rss_after_imports_mb": rss_after_imports,
        "peak_rss_mb": _peak_rss_mb(),
        "decoded_files": len(decoded),
        "decoded_examples": decoded[:3],
    }


def measure(n: int, width: int, height: int, keep: Path | None) -> dict:
    root = Path(keep or tempfile.mkdtemp(prefix="nail_data_scale_")) / f"n{n}"
    try:
        write_seconds = write_pairs(root, n, width, height)
        env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(root)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"child for N={n} failed:\n{proc.stderr[-4000:]}")
        result = json.loads(proc.stdout.splitlines()[-1])
        result.update(n=n, write_seconds=write_seconds)
        return result
    finally:
        if keep is None:
            shutil.rmtree(root.parent, ignore_errors=True)


def results_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        s = r["seconds"]
        total = s["find"] + s["split"] + s["build"]
        rows.append(
            [r["n"], f"{s['find']:.2f}", f"{s['split']:.2f}", f"{s['build']:.2f}", f"{total:.2f}",
             f"{total / r['n'] * 1e6:.0f}", f"{r['peak_rss_mb']:.0f}",
             f"{r['peak_rss_mb'] - r['rss_after_imports_mb']:.1f}", r["decoded_files"]]
        )  # fmt: skip
    headers = ["N", "find s", "split s", "build s", "total s", "us/pair", "peak MB"]
    return format_table([*headers, "growth MB", "decoded"], rows)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", help="numbers of pairs to measure")
    parser.add_argument("--quick", action="store_true", help="N = 200 and 2,000")
    parser.add_argument("--image_size", default="64x48", help="WIDTHxHEIGHT of each file")
    parser.add_argument("--keep", type=Path, help="write the trees here and keep them")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    sizes = args.sizes or ([200, 2000] if args.quick else [2000, 20000])
    width, height = (int(v) for v in args.image_size.lower().split("x"))
    env = machine_info()
    print(env["summary"], flush=True)
    results = []
    for n in sizes:
        results.append(measure(n, width, height, args.keep))
        print(
            f"N={n}: wrote the files in {results[-1]['write_seconds']:.1f} s, "
            f"splits {results[-1]['splits']}",
            flush=True,
        )
    print()
    print(results_table(results))
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
