"""The train/validation/test split, stratified by category and seeded, and its CSV manifest.

A manifest lists every pair with its split, relative to the data root, so a later run (or a
resumed one) trains on exactly the same split: ``--manifest split_manifest.csv``.
"""

from __future__ import annotations

import csv
import logging
import os
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from nail_segformer.data.discovery import DataError, Pair
from nail_segformer.data.files import local_path, portable_path, relative_to_root

__all__ = ["SPLITS", "split_pairs", "write_manifest", "read_manifest"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_MANIFEST_COLUMNS = ("image", "mask", "category", "split")


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
                [
                    relative_to_root(p.image, root),
                    relative_to_root(p.mask, root),
                    p.category,
                    p.split,
                ]
            )


def read_manifest(path: str | os.PathLike, data_root: str | os.PathLike) -> list[Pair]:
    """Read a manifest written by :func:`write_manifest`, resolving paths against ``data_root``.

    Raises:
        DataError: a column is missing, a split name is unknown or listed files do not exist.
    """
    root = Path(data_root).expanduser()
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = set(_MANIFEST_COLUMNS) - set(reader.fieldnames or ())
            rows = [] if missing else list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(
            f"cannot read the manifest {path} ({err}): it must be the UTF-8 CSV file a run "
            "wrote (split_manifest.csv)"
        ) from None
    if missing:
        raise DataError(
            f"manifest {path} lacks column(s) {sorted(missing)}; expected {_MANIFEST_COLUMNS}"
        )
    pairs, errors = [], []
    for line, row in enumerate(rows, start=2):
        if any(row[column] is None for column in _MANIFEST_COLUMNS):
            errors.append(f"line {line}: fewer than {len(_MANIFEST_COLUMNS)} columns")
            continue
        if row["split"] not in SPLITS:
            errors.append(f"line {line}: split '{row['split']}' is not one of {SPLITS}")
            continue
        image, mask = (Path(local_path(root / row[column])) for column in ("image", "mask"))
        absent = [f for f in (image, mask) if "\0" in str(f) or not f.is_file()]
        errors += [f"line {line}: {portable_path(f)} does not exist" for f in absent]
        if absent:
            continue
        pairs.append(
            Pair(
                portable_path(image.resolve()),
                portable_path(mask.resolve()),
                row["category"],
                row["split"],
            )
        )
    if errors:
        raise DataError(
            f"manifest {path} does not match {root}:\n  - "
            + "\n  - ".join(errors)
            + "\nPass the --data_root the manifest was written for, or drop --manifest to re-split."
        )
    return pairs
