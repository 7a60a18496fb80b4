"""Summarise a data folder for the checker: counts, sizes, nail share, mask conventions, problems."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from nail_segformer.data.discovery import Pair, Problem, ScanResult
from nail_segformer.data.files import (
    ImageReadError,
    load_image,
    load_labels,
    read_header,
    read_problem,
    relative_to_root,
)
from nail_segformer.data.splits import SPLITS
from nail_segformer.labels import IGNORE_INDEX, NAIL

__all__ = ["summarize", "format_summary"]


def _decode_problem(path: str, what: str, err: ImageReadError, scan: ScanResult | None) -> dict:
    shown = relative_to_root(path, Path(scan.root).resolve()) if scan else path
    kind, message, fix = read_problem(err, what, path)
    return asdict(Problem(kind, shown, message, fix))


def summarize(
    pairs: Sequence[Pair],
    scan: ScanResult | None,
    read_masks: bool = True,
    nail_values: tuple | None = None,
) -> dict:
    """Summarise a split data set: counts per category and split, sizes, nail pixel fraction.

    With ``read_masks`` every mask (and photo) is decoded, which also finds truncated files and
    masks whose values match no convention, and counts the conventions found per category
    (``mask_conventions``; see :mod:`nail_segformer.data.files`). ``nail_values`` is passed to
    the mask reader as ``--nail_values`` would be.
    """
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    conventions: dict[str, Counter] = defaultdict(Counter)
    sizes, fractions = [], defaultdict(list)
    decode_problems = []
    for pair in pairs:
        counts[pair.category][pair.split] += 1
        width, height, _ = read_header(pair.image)
        sizes.append((width, height))
        if not read_masks:
            continue
        try:
            load_image(pair.image)
        except ImageReadError as err:
            decode_problems.append(_decode_problem(pair.image, "photo", err, scan))
            continue
        try:
            labels, convention = load_labels(pair.mask, nail_values, return_convention=True)
        except ImageReadError as err:
            decode_problems.append(_decode_problem(pair.mask, "mask", err, scan))
            continue
        conventions[pair.category][convention] += 1
        counted = int((labels != IGNORE_INDEX).sum())
        fractions[pair.category].append(float((labels == NAIL).sum()) / max(counted, 1))
    areas = np.array([w * h for w, h in sizes]) if sizes else np.zeros(1)
    summary = {
        "root": scan.root if scan else None,
        "pairs": len(pairs),
        "per_category": {c: counts[c] for c in sorted(counts)},
        "image_size": {
            "min": list(min(sizes, key=lambda s: s[0] * s[1])) if sizes else None,
            "max": list(max(sizes, key=lambda s: s[0] * s[1])) if sizes else None,
            "median_megapixels": round(float(np.median(areas)) / 1e6, 3),
            "distinct_sizes": len(set(sizes)),
        },
        "nail_fraction": {
            c: {
                "mean": round(float(np.mean(v)), 4),
                "min": round(float(np.min(v)), 4),
                "max": round(float(np.max(v)), 4),
            }
            for c, v in sorted(fractions.items())
        },
        "mask_conventions": {c: dict(sorted(n.items())) for c, n in sorted(conventions.items())},
        "problems": [asdict(p) for p in (scan.problems if scan else [])] + decode_problems,
    }
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"{summary['pairs']} pair(s) in {summary['root']}", ""]
    header = f"{'category':<12}" + "".join(f"{s:>12}" for s in SPLITS) + f"{'nail frac':>12}"
    lines.append(header)
    for category, counts in summary["per_category"].items():
        frac = summary["nail_fraction"].get(category, {}).get("mean")
        frac_text = f"{frac:>12.4f}" if frac is not None else f"{'-':>12}"
        lines.append(f"{category:<12}" + "".join(f"{counts[s]:>12}" for s in SPLITS) + frac_text)
    size = summary["image_size"]
    lines += [
        "",
        f"image sizes: min {size['min']}, max {size['max']}, "
        f"median {size['median_megapixels']} MP, {size['distinct_sizes']} distinct",
    ]
    if summary["mask_conventions"]:
        lines.append("mask values (see the README's mask conventions):")
        for category, found in summary["mask_conventions"].items():
            shown = ", ".join(f"{name} x{n}" for name, n in found.items())
            mixed = "  <- mixed: check these masks" if len(set(found) - {"0"}) > 1 else ""
            lines.append(f"  {category:<10}{shown}{mixed}")
    problems = summary["problems"]
    lines.append(f"problems: {len(problems)}")
    lines += [f"  - {Problem(**p)}" for p in problems]
    return "\n".join(lines)
