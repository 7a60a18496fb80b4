"""From a checked data folder to a :class:`datasets.DatasetDict` of path-only columns."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from nail_segformer.data.discovery import DataError, Pair, find_pairs
from nail_segformer.data.files import EmbeddedImage, ImageReadError
from nail_segformer.data.splits import SPLITS, read_manifest, split_pairs

__all__ = ["ON_BAD_PAIR_CHOICES", "build_dataset_dict", "load_splits", "undecoded", "image_source"]

logger = logging.getLogger(__name__)

ON_BAD_PAIR_CHOICES = ("error", "skip")


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


def image_source(value, name: str | None = None):
    """What the readers open for an undecoded ``datasets.Image`` value (or a plain path): its
    bytes when it carries them (Hub, Parquet and ``save_to_disk`` sets), named ``name`` (else
    by its own path) in messages; otherwise its file path."""
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return EmbeddedImage(value["bytes"], name or value.get("path") or "an embedded image")
        if value.get("path"):
            return value["path"]
        raise ImageReadError(f"{name or 'a row'} holds neither image bytes nor a file path")
    if value is None:
        raise ImageReadError(f"{name or 'a row'} has no image")
    return str(value)


def undecoded(dataset):
    """``dataset`` with ``image`` and ``label`` as ``{"path", "bytes"}`` instead of decoded images.

    Our loaders then open each file, with errors that name it and the mask rules applied.
    """
    from datasets import Image as ImageFeature

    for column in ("image", "label"):
        if column in dataset.column_names:  # a resize cache of a bytes split keeps neither
            dataset = dataset.cast_column(column, ImageFeature(decode=False))
    return dataset


def load_splits(
    data_root: str | os.PathLike,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
    on_bad_pair: str = "error",
    manifest: str | os.PathLike | None = None,
    mask_suffix: str | None = None,
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
        mask_suffix: what mask file stems add to their photo's (see :func:`find_pairs`).

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
        scan = find_pairs(data_root, mask_suffix)
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
