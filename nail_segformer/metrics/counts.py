"""Every metric of the package from one set of additive counts, gathered image by image.

Evaluation never keeps a map: each image (or batch) becomes a :class:`SegmentationCounts` of a
few integers (the pixel confusion matrix, boundary band intersection and union, true, predicted
and matched nails per size bucket, the nail count error), counts of many images are summed, and
:func:`compute_metrics_from_counts` turns the sum into the metrics. Training's validation, the
``mean_iou`` evaluate module's ``counts`` configuration and ``predict --masks`` all go through
these two functions, so they report the same numbers for the same maps.

Pixels whose reference is ignored count nowhere: they are left out of the confusion matrix and
removed from the predicted nail mask before nails and boundary bands are taken.

Degenerate cases follow the rules of :mod:`nail_segformer.metrics.confusion`: with no counted
pixel at all every value is 0.0; a ratio with a zero denominator is 1.0 when there was nothing to
find and nothing was predicted (no true and no predicted nail, of that size for the per-size
recall; empty boundary bands in both masks), and 0.0 otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nail_segformer.labels import IGNORE_INDEX, NAIL
from nail_segformer.metrics.boundary import boundary_counts
from nail_segformer.metrics.confusion import (
    _as_tensor,
    _check_id2label,
    _comparable,
    compute_confusion_matrix,
    compute_metrics_from_confusion,
)
from nail_segformer.metrics.nails import SIZE_BUCKETS, match_nails, size_buckets
from nail_segformer.metrics.threshold import THRESHOLDS, metrics_at_threshold, probability_counts

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
    "boundary_iou_nail": "boundary IoU (nail)",
    "nail_detection_precision": "nail detection precision",
    "nail_detection_recall": "nail detection recall",
    "nail_detection_f1": "nail detection F1",
    "nail_detection_recall_small": "recall of small nails",
    "nail_detection_recall_medium": "recall of medium nails",
    "nail_detection_recall_large": "recall of large nails",
    "nail_count_error": "nail count error per photo",
}


def _bucket_zeros() -> np.ndarray:
    return np.zeros(len(SIZE_BUCKETS), dtype=np.int64)


def _probability_zeros() -> np.ndarray:
    return np.zeros((2, len(THRESHOLDS) + 1), dtype=np.int64)


@dataclass
class SegmentationCounts:
    """Additive counts of one or more evaluated images; ``+`` sums them.

    Attributes:
        confusion: (num_labels, num_labels) pixel counts, rows true labels, columns predictions.
        boundary_intersection: pixels in both the true and the predicted inner boundary band of
            the positive class.
        boundary_union: pixels in either band.
        true_nails: true nails per size bucket (small, medium, large).
        predicted_nails: predicted nails per size bucket, by their own area.
        matched_nails: matched true nails per size bucket of the true nail.
        count_error: sum over images of |predicted nails - true nails|.
        images: number of images counted.
        nail_probability: counted pixels per bin of P(nail), other classes then nails (see
            :mod:`nail_segformer.metrics.threshold`); zeros when only class maps were counted.
    """

    confusion: np.ndarray
    boundary_intersection: int = 0
    boundary_union: int = 0
    true_nails: np.ndarray = field(default_factory=_bucket_zeros)
    predicted_nails: np.ndarray = field(default_factory=_bucket_zeros)
    matched_nails: np.ndarray = field(default_factory=_bucket_zeros)
    count_error: int = 0
    images: int = 0
    nail_probability: np.ndarray = field(default_factory=_probability_zeros)

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
        return {
            "confusion": self.confusion.ravel().tolist(),
            "boundary_intersection": int(self.boundary_intersection),
            "boundary_union": int(self.boundary_union),
            "true_nails": self.true_nails.tolist(),
            "predicted_nails": self.predicted_nails.tolist(),
            "matched_nails": self.matched_nails.tolist(),
            "count_error": int(self.count_error),
            "images": int(self.images),
            "nail_probability": self.nail_probability.ravel().tolist(),
        }

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

        def total(name: str) -> np.ndarray:
            return np.asarray(columns[name], dtype=np.int64).sum(axis=0)

        return cls(
            confusion=confusion.sum(axis=0).reshape(num_labels, num_labels),
            boundary_intersection=int(total("boundary_intersection")),
            boundary_union=int(total("boundary_union")),
            true_nails=total("true_nails"),
            predicted_nails=total("predicted_nails"),
            matched_nails=total("matched_nails"),
            count_error=int(total("count_error")),
            images=int(total("images")),
            nail_probability=total("nail_probability").reshape(2, -1),
        )


def counts_features():
    """The ``datasets.Features`` of one :meth:`SegmentationCounts.to_row` row."""
    from datasets import Features, Sequence, Value

    per_bucket = Sequence(Value("int64"), length=len(SIZE_BUCKETS))
    return Features(
        {
            "confusion": Sequence(Value("int64")),
            "boundary_intersection": Value("int64"),
            "boundary_union": Value("int64"),
            "true_nails": per_bucket,
            "predicted_nails": per_bucket,
            "matched_nails": per_bucket,
            "count_error": Value("int64"),
            "images": Value("int64"),
            "nail_probability": Sequence(Value("int64"), length=2 * (len(THRESHOLDS) + 1)),
        }
    )


def compute_counts(
    predictions: np.ndarray | torch.Tensor,
    references: np.ndarray | torch.Tensor,
    num_labels: int,
    ignore_index: int = IGNORE_INDEX,
    positive_label: int | None = NAIL,
    min_nail_area: int | None = None,
    nail_probability: np.ndarray | torch.Tensor | None = None,
) -> SegmentationCounts:
    """Count one image's or one batch's class maps against their references.

    Args:
        predictions: Predicted class indices, (H, W) for one image or (N, H, W).
        references: True class indices, same shape; ``ignore_index``, negative and
            ``>= num_labels`` values are ignored.
        num_labels: Number of classes.
        ignore_index: Reference value to skip.
        positive_label: The class whose components are nails and whose boundary is scored;
            None counts the confusion matrix only.
        min_nail_area: Smallest nail in pixels; None uses ``default_min_nail_area`` of the
            image size.
        nail_probability: P(``positive_label``) per pixel, same shape, to count the figures at
            every threshold (:mod:`nail_segformer.metrics.threshold`); None leaves them out.

    Returns:
        The counts, summed over the images.

    Raises:
        ValueError: If the shapes differ or a counted prediction is not a class index.
    """
    predictions, references = _as_tensor(predictions), _as_tensor(references)
    counts = SegmentationCounts(
        compute_confusion_matrix(predictions, references, num_labels, ignore_index)
    )
    if predictions.ndim == 2:
        predictions, references = predictions[None], references[None]
    counts.images = len(predictions)
    if positive_label is None:
        return counts
    references = _comparable(references.to(predictions.device))
    true_masks = references == positive_label
    predicted_masks = _comparable(predictions) == positive_label
    counted = None
    if counts.confusion.sum() < references.numel():  # some pixels are ignored
        counted = (references >= 0) & (references < num_labels) & (references != ignore_index)
        predicted_masks &= counted
    if nail_probability is not None:
        probability = _as_tensor(nail_probability).to(references.device)
        counts.nail_probability = probability_counts(
            probability.reshape(references.shape), true_masks, counted
        )
    true_masks, predicted_masks = true_masks.cpu().numpy(), predicted_masks.cpu().numpy()
    for predicted, true in zip(predicted_masks, true_masks, strict=True):
        matching = match_nails(predicted, true, min_nail_area)
        true_buckets = size_buckets(matching.true_areas, true.size)
        buckets = len(SIZE_BUCKETS)
        counts.true_nails += np.bincount(true_buckets, minlength=buckets)
        counts.predicted_nails += np.bincount(
            size_buckets(matching.predicted_areas, true.size), minlength=buckets
        )
        counts.matched_nails += np.bincount(true_buckets[matching.matched_true], minlength=buckets)
        counts.count_error += abs(len(matching.predicted_areas) - len(matching.true_areas))
        intersection, union = boundary_counts(predicted, true)
        counts.boundary_intersection += intersection
        counts.boundary_union += union
    return counts


def _ratio_or_agreement(numerator: int, denominator: int, nothing_either: bool) -> float:
    if denominator > 0:
        return numerator / denominator
    return 1.0 if nothing_either else 0.0


def compute_metrics_from_counts(
    counts: SegmentationCounts,
    id2label: Mapping[int, str],
    positive_label: int | None = NAIL,
    threshold: float | None = None,
) -> dict[str, float]:
    """Every metric of the package from summed counts.

    Args:
        counts: Counts of the evaluated images (see :func:`compute_counts`).
        id2label: Class id -> name for every class; names become key parts.
        positive_label: The nail class; None gives the pixel metrics of every class only.
        threshold: a nail threshold (a multiple of 0.01): adds ``iou_<name>_at_threshold``,
            ``<name>_dice_at_threshold``, ``_precision_`` and ``_recall_at_threshold``, from
            ``counts.nail_probability``.

    Returns:
        The pixel metrics of :func:`~nail_segformer.metrics.compute_metrics_from_confusion`,
        plus for the positive class (``<name>`` = its name, e.g. ``nail``):
        ``boundary_iou_<name>``; ``<name>_detection_precision``, ``_recall`` and ``_f1``
        (matched nails over predicted, over true, and ``2 matched / (predicted + true)``);
        ``<name>_detection_recall_<size>`` and ``true_<name>s_<size>`` (the number of true
        nails of that size) for each size bucket; and ``<name>_count_error``, the mean over
        images of |predicted nails - true nails|. All values are finite floats.

    Raises:
        ValueError: If the counts and ``id2label`` disagree on the number of classes.
    """
    metrics = compute_metrics_from_confusion(counts.confusion, id2label, positive_label)
    if positive_label is None:
        return metrics
    name = _check_id2label(id2label)[positive_label]
    true, predicted, matched = (
        int(counts.true_nails.sum()),
        int(counts.predicted_nails.sum()),
        int(counts.matched_nails.sum()),
    )
    nothing = true == 0 and predicted == 0
    scores = {
        f"boundary_iou_{name}": _ratio_or_agreement(
            counts.boundary_intersection, counts.boundary_union, counts.boundary_union == 0
        ),
        f"{name}_detection_precision": _ratio_or_agreement(matched, predicted, nothing),
        f"{name}_detection_recall": _ratio_or_agreement(matched, true, nothing),
        f"{name}_detection_f1": _ratio_or_agreement(2 * matched, true + predicted, nothing),
    }
    for index, size in enumerate(SIZE_BUCKETS):
        scores[f"{name}_detection_recall_{size}"] = _ratio_or_agreement(
            int(counts.matched_nails[index]),
            int(counts.true_nails[index]),
            counts.predicted_nails[index] == 0,
        )
    if counts.confusion.sum() == 0:  # rule 1: no evidence scores 0.0 (already warned)
        scores = dict.fromkeys(scores, 0.0)
    metrics.update(scores)
    metrics[f"{name}_count_error"] = counts.count_error / counts.images if counts.images else 0.0
    for index, size in enumerate(SIZE_BUCKETS):
        metrics[f"true_{name}s_{size}"] = float(counts.true_nails[index])
    if threshold is not None:
        at = metrics_at_threshold(counts.nail_probability, threshold, name)
        metrics.update({f"{key}_at_threshold": value for key, value in at.items()})
    return metrics
