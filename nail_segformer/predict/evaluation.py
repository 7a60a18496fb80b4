"""Evaluation of predicted masks against ground truth for ``predict --masks``.

Masks pair with photos by category folder and file stem, case-insensitively and whatever the
extension, exactly as in :mod:`nail_segformer.data`, and are read with the same loader (any mask
mode to {0, 1}). Counting uses the training metric's code: each photo's confusion matrix comes
from :func:`nail_segformer.metrics.compute_confusion_matrix`, the function
``ConfusionMatrixAccumulator.update`` adds up, and the data-set numbers from
:func:`~nail_segformer.metrics.compute_metrics_from_confusion` over their sum. The comparison is
at the photo's own size, where the training metric compares at the processor size; the two agree
exactly on photos already at the processor size.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from nail_segformer.data import (
    ID2LABEL,
    IGNORE_INDEX,
    NAIL,
    ROOT_CATEGORY,
    list_files_by_key,
    load_labels,
)
from nail_segformer.metrics import (
    HEADLINE_METRICS,
    compute_confusion_matrix,
    compute_metrics_from_confusion,
)

__all__ = ["MaskLookup", "Evaluation", "format_report"]

logger = logging.getLogger(__name__)


class MaskLookup:
    """Finds the mask of a photo under a masks folder (``Masks/<category>/<stem>.*``).

    Raises:
        ValueError: ``masks_dir`` is not a folder.
    """

    def __init__(self, masks_dir: str | os.PathLike):
        self.masks_dir = Path(masks_dir).expanduser()
        if not self.masks_dir.is_dir():
            raise ValueError(f"--masks {self.masks_dir} is not a folder")
        self._files = list_files_by_key(self.masks_dir)

    def find(self, category: str, stem: str) -> Path:
        """The mask file of a photo.

        Raises:
            LookupError: no mask, or several masks share the stem; the message says what to fix.
        """
        files = self._files.get((category.lower(), stem.lower()), [])
        folder = self.masks_dir if category == ROOT_CATEGORY else self.masks_dir / category
        if not files:
            raise LookupError(
                f"no mask for this photo: expected {folder / stem}.png (masks share the photo's "
                "category folder and file stem; see nail_segformer.data)"
            )
        if len(files) > 1:
            raise LookupError(
                f"{len(files)} masks share the stem: {', '.join(map(str, files))}; keep one"
            )
        return files[0]


class Evaluation:
    """Confusion matrices of evaluated photos: per photo and summed over all of them."""

    def __init__(self):
        self.confusion = np.zeros((len(ID2LABEL), len(ID2LABEL)), dtype=np.int64)
        self.per_image: list[tuple[str, float, int, int]] = []  # file, iou, true px, predicted px

    def add(self, name: str, mask: np.ndarray, mask_path: str | os.PathLike) -> float:
        """Count one photo's predicted {0, 1} mask against its mask file; return its nail IoU.

        Raises:
            ImageReadError: the mask cannot be decoded.
            ValueError: the mask's size differs from the photo's.
        """
        labels = load_labels(mask_path)
        if labels.shape != mask.shape:
            raise ValueError(
                f"mask {mask_path} is {labels.shape[1]}x{labels.shape[0]} but the photo is "
                f"{mask.shape[1]}x{mask.shape[0]} (after EXIF rotation); re-export the mask at "
                "the photo's size"
            )
        confusion = compute_confusion_matrix(mask, labels, len(ID2LABEL), IGNORE_INDEX)
        self.confusion += confusion
        iou = compute_metrics_from_confusion(confusion, ID2LABEL)["iou_nail"]
        self.per_image.append(
            (name, iou, int(confusion[NAIL].sum()), int(confusion[:, NAIL].sum()))
        )
        return iou

    def metrics(self) -> dict[str, float]:
        """Data-set metrics (the keys of ``compute_metrics_from_confusion``)."""
        return compute_metrics_from_confusion(self.confusion, ID2LABEL)

    def per_image_records(self) -> list[dict]:
        """One dict per evaluated photo: file, nail IoU, true and predicted nail pixels."""
        keys = ("file", "iou_nail", "true_nail_pixels", "predicted_nail_pixels")
        return [dict(zip(keys, row, strict=True)) for row in self.per_image]

    def worst(self, n: int) -> list[tuple[str, float, int, int]]:
        """The ``n`` photos with the lowest nail IoU (ties by name)."""
        return sorted(self.per_image, key=lambda row: (row[1], row[0]))[:n]


def format_report(evaluation: Evaluation, worst: int) -> str:
    """The metrics table, then the ``worst`` photos by nail IoU."""
    metrics = evaluation.metrics()
    lines = [f"evaluated {len(evaluation.per_image)} photo(s)", f"{'metric':<18}{'value':>10}"]
    lines += [f"{key:<18}{metrics[key]:>10.4f}" for key in HEADLINE_METRICS]
    rows = evaluation.worst(worst)
    if rows:
        lines += [
            "",
            f"worst {len(rows)} by nail IoU:",
            f"{'iou_nail':>10}{'true px':>10}{'pred px':>10}  file",
        ]
        lines += [f"{iou:>10.4f}{true:>10}{pred:>10}  {name}" for name, iou, true, pred in rows]
    return "\n".join(lines)
