"""Pixel metrics from a confusion matrix: IoU, Dice, precision, recall, accuracy.

Everything here is derived from one ``[num_labels, num_labels]`` confusion matrix (rows = true
label, columns = predicted label) summed over all evaluated pixels, so the numbers are
dataset-level like the Hub's ``mean_iou`` metric, and evaluation never holds all logits in memory.

Degenerate cases (0/0 ratios) are resolved by these rules, in this order:

1. No counted pixel at all (every reference pixel ignored): every value is 0.0 and a warning is
   logged. No evidence must never look like a perfect model to ``metric_for_best_model``.
2. Means (``mean_iou``, ``mean_accuracy``) average only the classes whose ratio is defined, i.e.
   they skip the 0/0 classes exactly like ``evaluate``'s nanmean; they equal the ``mean_iou``
   metric's numbers whenever those are finite.
3. A reported per-class ratio with a zero denominator is 1.0 when the class is absent from both
   references and predictions (nothing to find, nothing predicted: perfect agreement) and 0.0
   otherwise (recall of a class that was only predicted, precision of a class that was never
   predicted but is present). Reported values are therefore always finite floats, which JSON,
   Trainer logs and best-model comparisons (where NaN never compares greater) can hold.
"""

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from nail_segformer.labels import IGNORE_INDEX, NAIL

logger = logging.getLogger(__name__)

__all__ = [
    "ConfusionMatrixAccumulator",
    "compute_class_scores",
    "compute_confusion_matrix",
    "compute_metrics_from_confusion",
]

# Up to this many classes, the confusion matrix is counted pair by pair (num_labels**2 passes
# over boolean maps), which beats an int64 bincount; above it, the bincount is cheaper.
_DIRECT_COUNT_MAX_LABELS = 4

# Integer dtypes torch compares natively; maps in others (uint16 from 16-bit PNGs, uint32) are
# widened before counting, since torch has no comparison kernels for them.
_COMPARABLE_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _as_tensor(values: Any) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values
    # torch takes neither negative strides (flipped views) nor, without a warning, read-only
    # arrays (e.g. memory-mapped datasets); a copy is cheap by comparison.
    array = np.ascontiguousarray(values)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _comparable(values: torch.Tensor) -> torch.Tensor:
    if values.is_floating_point() or values.dtype in _COMPARABLE_DTYPES:
        return values
    return values.long()


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise numerator / denominator with NaN where the denominator is 0."""
    result = np.full(numerator.shape, np.nan)
    defined = denominator > 0
    result[defined] = numerator[defined] / denominator[defined]
    return result


def _mean_of_defined(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else 0.0


def _check_id2label(id2label: Mapping[int, str]) -> dict[int, str]:
    labels = {int(key): str(name) for key, name in id2label.items()}
    if sorted(labels) != list(range(len(labels))) or not labels:
        raise ValueError(
            f"id2label must map every class id 0 .. num_labels - 1 to a name, got keys "
            f"{sorted(labels)}; pass the model config's id2label, e.g. data.ID2LABEL"
        )
    if len(set(labels.values())) != len(labels):
        raise ValueError(f"id2label names must be unique (they become metric keys), got {labels}")
    return labels


def compute_confusion_matrix(
    predictions: np.ndarray | torch.Tensor,
    references: np.ndarray | torch.Tensor,
    num_labels: int,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Count (true label, predicted label) pairs over all counted pixels.

    Pixels whose reference is ``ignore_index``, negative (the Trainer pads labels with -100
    across processes) or ``>= num_labels`` are not counted. Torch inputs are counted on their
    own device (only the small matrix is copied back).

    Args:
        predictions: Predicted class indices in ``[0, num_labels)``, any shape, e.g. (N, H, W).
        references: True class indices, same shape as ``predictions``.
        num_labels: Number of classes.
        ignore_index: Reference value to skip.

    Returns:
        int64 array of shape (num_labels, num_labels): rows are true labels, columns predictions.

    Raises:
        ValueError: If the shapes differ or a counted prediction is outside ``[0, num_labels)``.
    """
    predictions = _as_tensor(predictions)
    references = _as_tensor(references).to(predictions.device)
    if predictions.shape != references.shape:
        raise ValueError(
            f"predictions shape {tuple(predictions.shape)} != references shape "
            f"{tuple(references.shape)}: upsample logits to the label size before the argmax "
            "(StreamingSegmentationMetrics does this)"
        )
    references = _comparable(references).reshape(-1)
    predictions = _comparable(predictions).reshape(-1)
    counted = (references >= 0) & (references < num_labels) & (references != ignore_index)
    if predictions.numel():
        low, high = torch.aminmax(predictions)
        if low < 0 or high >= num_labels:  # then look closer: only counted pixels must be valid
            _check_counted_predictions(predictions[counted], num_labels)
    if num_labels <= _DIRECT_COUNT_MAX_LABELS:
        # Counting each (true, predicted) pair with boolean masks reads the maps in their own
        # dtype; the bincount below needs int64 copies and a gather of the counted pixels,
        # which made it ~6x slower for our two classes.
        truths = [counted & (references == label) for label in range(num_labels)]
        predicted = [predictions == label for label in range(num_labels)]
        counts = torch.stack([torch.count_nonzero(t & p) for t in truths for p in predicted])
    else:
        pairs = torch.where(
            counted, references.long() * num_labels + predictions.long(), num_labels**2
        )
        counts = torch.bincount(pairs, minlength=num_labels**2 + 1)[: num_labels**2]
    return counts.reshape(num_labels, num_labels).cpu().numpy().astype(np.int64)


def _check_counted_predictions(predictions: torch.Tensor, num_labels: int) -> None:
    if predictions.numel() and (predictions.min() < 0 or predictions.max() >= num_labels):
        raise ValueError(
            f"predictions must be class indices in [0, {num_labels}), got values from "
            f"{int(predictions.min())} to {int(predictions.max())}; pass argmaxed logits"
        )


def compute_class_scores(
    intersection: np.ndarray, predicted: np.ndarray, labelled: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-class ratios from pixel areas, NaN where a ratio is 0/0.

    The one place the pixel formulas live: :func:`compute_metrics_from_confusion` and the
    bundled ``mean_iou`` evaluate module both use it.

    Args:
        intersection: (num_labels,) pixels both labelled and predicted as the class.
        predicted: (num_labels,) pixels predicted as the class.
        labelled: (num_labels,) pixels labelled as the class.

    Returns:
        float64 arrays ``iou`` (intersection / union), ``accuracy`` (intersection / labelled,
        i.e. recall), ``precision`` (intersection / predicted) and ``dice``
        (2 intersection / (labelled + predicted)).
    """
    intersection = np.asarray(intersection, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    labelled = np.asarray(labelled, dtype=np.float64)
    return {
        "iou": _ratio(intersection, labelled + predicted - intersection),
        "accuracy": _ratio(intersection, labelled),
        "precision": _ratio(intersection, predicted),
        "dice": _ratio(2 * intersection, labelled + predicted),
    }


def compute_metrics_from_confusion(
    confusion: np.ndarray,
    id2label: Mapping[int, str],
    positive_label: int | None = NAIL,
) -> dict[str, float]:
    """Turn a confusion matrix into named, finite segmentation metrics.

    See the module docstring for how 0/0 ratios are resolved.

    Args:
        confusion: (num_labels, num_labels) counts, rows true labels, columns predictions.
        id2label: Class id -> name for every class; names become key suffixes/prefixes.
        positive_label: Class id that also gets Dice, precision and recall (the nail class);
            None skips them.

    Returns:
        ``mean_iou``, ``mean_accuracy``, ``overall_accuracy``, ``iou_<name>`` and
        ``accuracy_<name>`` (per-class recall) for every class, plus ``<name>_dice``,
        ``<name>_precision`` and ``<name>_recall`` for the positive class. All in [0, 1].

    Raises:
        ValueError: If ``confusion`` is not square with one row per ``id2label`` entry, or
            ``positive_label`` is not a class id.
    """
    labels = _check_id2label(id2label)
    confusion = np.asarray(confusion, dtype=np.int64)
    if confusion.shape != (len(labels), len(labels)):
        raise ValueError(
            f"confusion matrix shape {confusion.shape} does not match {len(labels)} classes in "
            f"id2label {labels}"
        )
    if positive_label is not None and positive_label not in labels:
        raise ValueError(
            f"positive_label={positive_label} is not a class id; valid ids: {sorted(labels)} "
            "(or None to skip dice/precision/recall)"
        )

    labelled = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    scores = compute_class_scores(np.diag(confusion), predicted, labelled)
    iou, accuracy = scores["iou"], scores["accuracy"]
    total = float(confusion.sum())

    if total == 0:
        logger.warning(
            "no pixel was counted: every reference pixel equals the ignore index; reporting 0.0 "
            "for all metrics (check that the masks use 0 = background, 1 = nail, 255 = ignore)"
        )
        absent_from_both = np.zeros(len(labels), dtype=bool)
    else:
        absent_from_both = (labelled == 0) & (predicted == 0)

    def report(values: np.ndarray, index: int) -> float:
        if not math.isnan(values[index]):
            return float(values[index])
        return 1.0 if absent_from_both[index] else 0.0

    metrics = {
        "mean_iou": _mean_of_defined(iou),
        "mean_accuracy": _mean_of_defined(accuracy),
        "overall_accuracy": float(np.trace(confusion) / total) if total else 0.0,
    }
    for index, name in labels.items():
        metrics[f"iou_{name}"] = report(iou, index)
        metrics[f"accuracy_{name}"] = report(accuracy, index)
    if positive_label is not None:
        name = labels[positive_label]
        metrics[f"{name}_dice"] = report(scores["dice"], positive_label)
        metrics[f"{name}_precision"] = report(scores["precision"], positive_label)
        metrics[f"{name}_recall"] = report(accuracy, positive_label)
    return metrics


class ConfusionMatrixAccumulator:
    """Running confusion matrix over batches of predicted and true class maps.

    Args:
        id2label: Class id -> name for every class (sets ``num_labels``).
        ignore_index: Reference value to skip; negative references are always skipped.
        positive_label: Class id that gets Dice/precision/recall in ``compute``; None skips them.
    """

    def __init__(
        self,
        id2label: Mapping[int, str],
        ignore_index: int = IGNORE_INDEX,
        positive_label: int | None = NAIL,
    ) -> None:
        self.id2label = _check_id2label(id2label)
        self.num_labels = len(self.id2label)
        self.ignore_index = ignore_index
        self.positive_label = positive_label
        self._confusion = np.zeros((self.num_labels, self.num_labels), dtype=np.int64)

    @property
    def confusion(self) -> np.ndarray:
        """A copy of the counts so far, shape (num_labels, num_labels), rows true labels."""
        return self._confusion.copy()

    def update(
        self, predictions: np.ndarray | torch.Tensor, references: np.ndarray | torch.Tensor
    ) -> None:
        """Add a batch of class-index maps (same shape, e.g. (N, H, W)) to the counts."""
        self._confusion += compute_confusion_matrix(
            predictions, references, self.num_labels, self.ignore_index
        )

    def compute(self) -> dict[str, float]:
        """Metrics of everything added since the last reset (see compute_metrics_from_confusion)."""
        return compute_metrics_from_confusion(self._confusion, self.id2label, self.positive_label)

    def reset(self) -> None:
        """Forget all counts, e.g. before the next evaluation."""
        self._confusion[:] = 0
