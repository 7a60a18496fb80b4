"""``python -m nail_segformer.synthetic OUT_DIR``: write a synthetic nail set."""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np

from nail_segformer.synthetic.generate import CATEGORIES, IMAGES_DIR, MASKS_DIR, generate_dataset

__all__ = ["main"]


def _summary(records: list[dict], out_dir: str) -> str:
    lines = [f"wrote {len(records)} samples to {out_dir} ({IMAGES_DIR}/, {MASKS_DIR}/)"]
    for category in sorted({r["category"] for r in records}):
        group = [r for r in records if r["category"] == category]
        fraction = np.mean([r["nail_fraction"] for r in group])
        nails = sum(r["n_nails"] for r in group)
        lines.append(
            f"  category {category}: {len(group)} samples, {nails} nails, "
            f"mean nail fraction {fraction:.2%}"
        )
    fraction = np.mean([r["nail_fraction"] for r in records])
    lines.append(
        f"  all: {sum(r['n_nails'] for r in records)} nails, mean nail fraction {fraction:.2%}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code (2 for bad arguments, 1 if refused)."""
    parser = argparse.ArgumentParser(
        prog="python -m nail_segformer.synthetic",
        usage="python -m nail_segformer.synthetic OUT_DIR [--flag value ...]",
        description="Write synthetic hand photos and nail masks to OUT_DIR/Images and OUT_DIR/Masks.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="empty or new folder to write into")
    parser.add_argument("--n", type=int, default=200, help="number of samples (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="non-negative seed (default 0)")
    parser.add_argument(
        "--categories",
        nargs="+",
        default=list(CATEGORIES),
        metavar="CAT",
        help=f"categories to write, from {' '.join(CATEGORIES)} (default all)",
    )
    parser.add_argument(
        "--jpeg_quality", type=int, default=90, help="JPEG quality 1-95 (default 90)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        records = generate_dataset(
            args.out_dir, args.n, args.seed, args.categories, args.jpeg_quality
        )
    except ValueError as err:
        parser.error(str(err))
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(_summary(records, args.out_dir))
    return 0
