"""Every metric of the package from one set of additive counts, gathered image by image.

Evaluation never keeps a map: each image (or batch) becomes a :class:`SegmentationCounts` of a
few integers (the pixel confusion matrix and the number of images), counts of many images are
summed, and :func:`compute_metrics_from_counts` turns the sum into the metrics. Training's
validation, the ``mean_iou`` evaluate module's ``counts`` configuration and ``predict --masks``
all go through these two functions, so they report the same numbers for the same maps.

Pixels whose reference is ignored count nowhere. Degenerate cases follow the rules of
:mod:`nail_segformer.metrics.confusion`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nail_segformer.labels import IGNORE_INDEX, NAIL
from nail_segformer.metrics.confusion import (
    _as_tensor,
    compute_confusion_matrix,
    compute_metrics_from_confusion,
)

__all__ = [
    "HEADLINE_METRICS",
    "SegmentationCounts",
    "compute_counts",
    "compute_metrics_from_counts",
    "counts_features",
]

# The metrics that reports, tables and model cards show for the nail labels, with their titles.
HEADLINE_METRICS: dict[str, str] = {
    "iou_nail": "IoU (nail)",
    "iou_background": "IoU (background)",
    "mean_iou": "mean IoU",
    "nail_dice": "Dice / F1 (nail)",
    "nail_precision": "precision (nail)",
    "nail_recall": "recall (nail)",
    "overall_accuracy": "pixel accuracy",
}


@dataclass
class SegmentationCounts:
    """Additive counts of one or more evaluated images; ``+`` sums them.

    Attributes:
        confusion: (num_labels, num_labels) pixel counts, rows true labels, columns predictions.
        images: number of images counted.
    """

    confusion: np.ndarray
    images: int = 0

    @classmethod
    def zeros(cls, num_labels: int) -> SegmentationCounts:
        """Counts of no image."""
        return cls(np.zeros((num_labels, num_labels), dtype=np.int64))

    def __add__(self, other: SegmentationCounts) -> SegmentationCounts:
        if self.confusion.shape != other.confusion.shape:
            raise ValueError(
                f"cannot add counts of {len(other.confusion)} classes to counts of "
                f"{len(self.confusion)} classes"
            )
        return SegmentationCounts(
            **{
                f.name: getattr(self, f.name) + getattr(other, f.name)
                for f in dataclasses.fields(self)
            }
        )

    def to_row(self) -> dict[str, Any]:
        """One example of the ``mean_iou`` module's ``counts`` inputs (see counts_features)."""
        return {"confusion": self.confusion.ravel().tolist(), "images": int(self.images)}

    @classmethod
    def from_columns(cls, columns: Mapping[str, Sequence[Any]]) -> SegmentationCounts:
        """The sum of many ``to_row`` rows given column by column (as ``evaluate`` passes them).

        Raises:
            ValueError: If there is no row, or a confusion row is not a square's worth of counts.
        """
        confusion = np.asarray(columns["confusion"], dtype=np.int64)
        if confusion.ndim != 2 or len(confusion) == 0:
            raise ValueError("no counts were added; add_batch() at least one row before compute()")
        num_labels = round(confusion.shape[1] ** 0.5)
        if num_labels**2 != confusion.shape[1]:
            raise ValueError(
                f"a confusion row holds {confusion.shape[1]} counts, not num_labels**2; pass "
                "SegmentationCounts.to_row() rows"
            )
        return cls(
            confusion=confusion.sum(axis=0).reshape(num_labels, num_labels),
            images=int(np.asarray(columns["images"], dtype=np.int64).sum()),
        )


def counts_features():
    """The ``datasets.Features`` of one :meth:`SegmentationCounts.to_row` row."""
    from datasets import Features, Sequence, Value

    return Features({"confusion": Sequence(Value("int64")), "images": Value("int64")})


def compute_counts(
    predictions: np.ndarray | torch.Tensor,
    references: np.ndarray | torch.Tensor,
    num_labels: int,
    ignore_index: int = IGNORE_INDEX,
) -> SegmentationCounts:
    """Count one image's or one batch's class maps against their references.

    Args:
        predictions: Predicted class indices, (H, W) for one image or (N, H, W).
        references: True class indices, same shape; ``ignore_index``, negative and
            ``>= num_labels`` values are ignored.
        num_labels: Number of classes.
        ignore_index: Reference value to skip.

    Returns:
        The counts, summed over the images.

    Raises:
        ValueError: If the shapes differ or a counted prediction is not a class index.
    """
    predictions = _as_tensor(predictions)
    counts = SegmentationCounts(
        compute_confusion_matrix(predictions, references, num_labels, ignore_index)
    )
    counts.images = 1 if predictions.ndim == 2 else len(predictions)
    return counts


def compute_metrics_from_counts(
    counts: SegmentationCounts,
    id2label: Mapping[int, str],
    positive_label: int | None = NAIL,
) -> dict[str, float]:
    """Every metric of the package from summed counts.

    Args:
        counts: Counts of the evaluated images (see :func:`compute_counts`).
        id2label: Class id -> name for every class; names become key parts.
        positive_label: The nail class (Dice, precision, recall); None skips those.

    Returns:
        The pixel metrics of :func:`~nail_segformer.metrics.compute_metrics_from_confusion`.

    Raises:
        ValueError: If the counts and ``id2label`` disagree on the number of classes.
    """
    return compute_metrics_from_confusion(counts.confusion, id2label, positive_label)
