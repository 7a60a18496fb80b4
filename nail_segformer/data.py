"""From an ``Images/`` + ``Masks/`` folder to a :class:`datasets.DatasetDict`.

Two layouts are recognised under ``DATA_ROOT``:

- categorised or flat: ``Images/<category>/<file>`` with the twin ``Masks/<category>/<file>``
  (the nail set has categories ``1``..``4``; files directly in ``Images/`` form the category
  ``root``); the train/validation/test split is drawn here, stratified by category;
- pre-split: ``train/``, ``valid/`` or ``validation/``, and optionally ``test/``, each holding
  ``images|Images`` and ``masks|Masks`` in the layout above.

Photos and masks pair by category and file stem, case-insensitively and whatever the extension;
formats are decided by decoding. Every problem found is collected into one report instead of
failing on the first. Nothing under ``DATA_ROOT`` is ever written.

Labels: background 0, nail 1, ignore 255 (see :mod:`nail_segformer._files`).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from nail_segformer._discovery import (
    ROOT_CATEGORY,
    DataError,
    Pair,
    Problem,
    ScanResult,
    find_pairs,
    list_files_by_key,
)
from nail_segformer._files import (
    BACKGROUND,
    ID2LABEL,
    IGNORE_INDEX,
    LABEL2ID,
    NAIL,
    ImageReadError,
    is_hidden_or_os_file,
    load_image,
    load_labels,
    mask_to_labels,
    read_header,
)

__all__ = [
    "BACKGROUND",
    "NAIL",
    "IGNORE_INDEX",
    "ID2LABEL",
    "LABEL2ID",
    "SPLITS",
    "ROOT_CATEGORY",
    "ON_BAD_PAIR_CHOICES",
    "DataError",
    "ImageReadError",
    "Pair",
    "Problem",
    "ScanResult",
    "find_pairs",
    "list_files_by_key",
    "is_hidden_or_os_file",
    "split_pairs",
    "write_manifest",
    "read_manifest",
    "build_dataset_dict",
    "load_splits",
    "load_image",
    "load_labels",
    "mask_to_labels",
    "summarize",
    "main",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
ON_BAD_PAIR_CHOICES = ("error", "skip")
_MANIFEST_COLUMNS = ("image", "mask", "category", "split")


# --------------------------------------------------------------------------- splits


def _validate_fractions(validation_fraction: float, test_fraction: float) -> None:
    for name, value in (
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"--{name} must be in [0, 1), got {value}")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            "--validation_fraction + --test_fraction must leave data to train on, got "
            f"{validation_fraction} + {test_fraction}"
        )


def _allocate(
    sizes: dict[str, int], fraction: float, capacity: dict[str, int], seed: int
) -> dict[str, int]:
    """Split ``round(total * fraction)`` items over categories in proportion to their sizes.

    Largest-remainder rounding: each category gets the floor of its exact share, and the items
    left over go to the categories with the largest remainders (ties in a seeded order), never
    more than a category's ``capacity``. So small categories still contribute when the total
    asks for it, and the split sizes match the fractions as closely as integers allow.
    """
    exact = {c: n * fraction for c, n in sizes.items()}
    counts = {c: min(int(exact[c]), capacity[c]) for c in sizes}
    left = min(round(sum(sizes.values()) * fraction), sum(capacity.values())) - sum(counts.values())
    names = sorted(sizes)
    tie_break = dict(zip(names, np.random.default_rng(seed).permutation(len(names)), strict=True))
    ranked = sorted(names, key=lambda c: (int(exact[c]) - exact[c], tie_break[c]))
    while left > 0 and any(counts[c] < capacity[c] for c in ranked):
        for category in ranked:
            if left > 0 and counts[category] < capacity[category]:
                counts[category] += 1
                left -= 1
    return counts


def split_pairs(
    pairs: Sequence[Pair],
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
) -> list[Pair]:
    """Assign train/validation/test, stratified by category and deterministic.

    Pairs that already carry a split (pre-split layout) keep it. Validation and test sizes are
    ``round(total * fraction)``, shared out over categories in proportion to their sizes
    (largest remainder), always leaving at least one pair of each category to train. Within a
    category the pairs are sorted by path, then shuffled by a generator seeded from ``seed`` and
    the category name, so the split does not depend on file-system order.
    """
    _validate_fractions(validation_fraction, test_fraction)
    by_category: dict[str, list[Pair]] = defaultdict(list)
    out = []
    for pair in pairs:
        if pair.split is not None:
            out.append(pair)
        else:
            by_category[pair.category].append(pair)
    sizes = {c: len(members) for c, members in by_category.items()}
    n_val = _allocate(
        sizes, validation_fraction, {c: max(n - 1, 0) for c, n in sizes.items()}, seed
    )
    n_test = _allocate(
        sizes, test_fraction, {c: max(n - 1 - n_val[c], 0) for c, n in sizes.items()}, seed + 1
    )
    for category in sorted(by_category):
        members = sorted(by_category[category], key=lambda p: (p.image.lower(), p.image))
        rng = np.random.default_rng([seed, zlib.crc32(category.encode())])
        first_test, first_train = n_val[category], n_val[category] + n_test[category]
        for rank, index in enumerate(rng.permutation(len(members))):
            split = "validation" if rank < first_test else "test" if rank < first_train else "train"
            out.append(Pair(**{**asdict(members[index]), "split": split}))
    return sorted(out, key=lambda p: (SPLITS.index(p.split), p.category, p.image))


def write_manifest(
    pairs: Iterable[Pair], path: str | os.PathLike, data_root: str | os.PathLike
) -> None:
    """Write the split as CSV (image, mask, category, split), paths relative to ``data_root``."""
    root = Path(data_root).resolve()
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(_MANIFEST_COLUMNS)
        for p in pairs:
            writer.writerow(
                [_relative(p.image, root), _relative(p.mask, root), p.category, p.split]
            )


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def read_manifest(path: str | os.PathLike, data_root: str | os.PathLike) -> list[Pair]:
    """Read a manifest written by :func:`write_manifest`, resolving paths against ``data_root``.

    Raises:
        DataError: a column is missing, a split name is unknown or listed files do not exist.
    """
    root = Path(data_root).expanduser()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(_MANIFEST_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise DataError(
                f"manifest {path} lacks column(s) {sorted(missing)}; expected {_MANIFEST_COLUMNS}"
            )
        rows = list(reader)
    pairs, errors = [], []
    for line, row in enumerate(rows, start=2):
        if row["split"] not in SPLITS:
            errors.append(f"line {line}: split '{row['split']}' is not one of {SPLITS}")
            continue
        image, mask = root / row["image"], root / row["mask"]
        for file in (image, mask):
            if not file.is_file():
                errors.append(f"line {line}: {file} does not exist")
        pairs.append(Pair(str(image.resolve()), str(mask.resolve()), row["category"], row["split"]))
    if errors:
        raise DataError(
            f"manifest {path} does not match {root}:\n  - "
            + "\n  - ".join(errors)
            + "\nPass the --data_root the manifest was written for, or drop --manifest to re-split."
        )
    return pairs


# --------------------------------------------------------------------------- DatasetDict


def build_dataset_dict(pairs: Sequence[Pair]):
    """Build a ``DatasetDict`` (one ``Dataset`` per split present) from split pairs.

    Columns: ``image`` and ``label`` as ``datasets.Image`` features holding only paths (decoded
    lazily, on access), and ``category`` as a ``ClassLabel``.
    """
    from datasets import ClassLabel, Dataset, DatasetDict, Features
    from datasets import Image as ImageFeature

    categories = sorted({p.category for p in pairs})
    features = Features(
        {"image": ImageFeature(), "label": ImageFeature(), "category": ClassLabel(names=categories)}
    )
    splits = {}
    for split in SPLITS:
        members = [p for p in pairs if p.split == split]
        if not members and split == "test":
            continue
        splits[split] = Dataset.from_dict(
            {
                "image": [p.image for p in members],
                "label": [p.mask for p in members],
                "category": [categories.index(p.category) for p in members],
            },
            features=features,
            split=split,
        )
    return DatasetDict(splits)


def load_splits(
    data_root: str | os.PathLike,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
    on_bad_pair: str = "error",
    manifest: str | os.PathLike | None = None,
):
    """Discover, check and split a data folder.

    Args:
        data_root: folder in one of the layouts in this module's docstring.
        validation_fraction: share of each category for validation (ignored for pre-split roots).
        test_fraction: share of each category for test (ignored for pre-split roots).
        seed: split seed.
        on_bad_pair: ``"error"`` stops with every problem listed; ``"skip"`` leaves bad files
            out (they are in the returned scan's ``problems``).
        manifest: a split CSV from an earlier run; when given, it replaces discovery and split.

    Returns:
        ``(dataset_dict, pairs, scan)``: the ``DatasetDict``, the split pairs (for the manifest)
        and the :class:`ScanResult` (``None`` when a manifest was read).

    Raises:
        DataError: problems were found and ``on_bad_pair == "error"``, or nothing is usable.
    """
    if on_bad_pair not in ON_BAD_PAIR_CHOICES:
        raise ValueError(f"--on_bad_pair must be one of {ON_BAD_PAIR_CHOICES}, got {on_bad_pair!r}")
    if manifest is not None:
        pairs = read_manifest(manifest, data_root)
        scan = None
    else:
        scan = find_pairs(data_root)
        if scan.problems and (on_bad_pair == "error" or not scan.pairs):
            raise DataError(scan.problem_report())
        if scan.problems:
            logger.warning(
                "skipping %d problem file(s) in %s (--on_bad_pair skip); %d pair(s) remain",
                len(scan.problems),
                data_root,
                len(scan.pairs),
            )
        pairs = split_pairs(scan.pairs, validation_fraction, test_fraction, seed)
    dataset_dict = build_dataset_dict(pairs)
    for split in ("train", "validation"):
        if split not in dataset_dict or len(dataset_dict[split]) == 0:
            raise DataError(
                f"the {split} split of {data_root} is empty ({len(pairs)} pair(s) in all): "
                "add data "
                "or change --validation_fraction"
            )
    return dataset_dict, pairs, scan


# --------------------------------------------------------------------------- check CLI


def _decode_problem(path: str, what: str, err: Exception, scan: ScanResult | None) -> dict:
    shown = _relative(path, Path(scan.root).resolve()) if scan else path
    reason = err.__cause__ or err
    return asdict(
        Problem(
            "undecodable file",
            shown,
            f"this {what}'s pixel data cannot be decoded ({reason})",
            "replace it with a complete image file, or move it out of the data folder",
        )
    )


def summarize(pairs: Sequence[Pair], scan: ScanResult | None, read_masks: bool = True) -> dict:
    """Summarise a split data set: counts per category and split, sizes, nail pixel fraction.

    With ``read_masks`` every mask (and photo) is decoded, which also finds truncated files.
    """
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
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
            fractions[pair.category].append(float(load_labels(pair.mask).mean()))
        except ImageReadError as err:
            decode_problems.append(_decode_problem(pair.mask, "mask", err, scan))
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
        "problems": [asdict(p) for p in (scan.problems if scan else [])] + decode_problems,
    }
    return summary


def _format_summary(summary: dict) -> str:
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
    problems = summary["problems"]
    lines.append(f"problems: {len(problems)}")
    lines += [f"  - [{p['kind']}] {p['path']}: {p['message']} (fix: {p['fix']})" for p in problems]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m nail_segformer.data DATA_ROOT``: check a folder and print a summary.

    Exits 0 when the folder is clean, 1 when there are problems, 2 when it cannot be read.
    """
    parser = argparse.ArgumentParser(prog="python -m nail_segformer.data", description=main.__doc__)
    parser.add_argument("data_root", help="folder with Images/ + Masks/ (or train/ valid/ test/)")
    parser.add_argument("--validation_fraction", type=float, default=0.1)
    parser.add_argument("--test_fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--headers_only",
        action="store_true",
        help="do not decode pixels (fast; no nail fraction, no truncation check)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        scan = find_pairs(args.data_root)
        pairs = split_pairs(scan.pairs, args.validation_fraction, args.test_fraction, args.seed)
    except (DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = summarize(pairs, scan, read_masks=not args.headers_only)
    print(json.dumps(summary, indent=2) if args.json else _format_summary(summary))
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
