"""Segmentation metrics from a confusion matrix, streamed batch by batch during evaluation.

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
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nail_segformer.labels import IGNORE_INDEX, NAIL

logger = logging.getLogger(__name__)

__all__ = [
    "HEADLINE_METRICS",
    "MEAN_IOU_MODULE",
    "ConfusionMatrixAccumulator",
    "StreamingSegmentationMetrics",
    "compute_confusion_matrix",
    "compute_metrics_from_confusion",
    "load_mean_iou",
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

MEAN_IOU_MODULE = Path(__file__).resolve().parent / "metric_modules" / "mean_iou" / "mean_iou.py"

# Up to this many classes, the confusion matrix is counted pair by pair (num_labels**2 passes
# over boolean maps), which beats an int64 bincount; above it, the bincount is cheaper.
_DIRECT_COUNT_MAX_LABELS = 4

# Logits are upsampled this many images at a time, so that a whole eval set handed over at once
# (non-batched Trainer mode) is never upsampled in one piece.
_UPSAMPLE_CHUNK = 8


# Integer dtypes torch compares natively; maps in others (uint16 from 16-bit PNGs, uint32) are
# widened before counting, since torch has no comparison kernels for them.
_COMPARABLE_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _as_tensor(values: Any) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values
    array = np.asarray(values)
    # torch warns on read-only arrays (e.g. memory-mapped datasets); a copy is cheap by comparison.
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

    true_positive = np.diag(confusion).astype(np.float64)
    labelled = confusion.sum(axis=1).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    union = labelled + predicted - true_positive
    total = float(confusion.sum())

    iou = _ratio(true_positive, union)
    accuracy = _ratio(true_positive, labelled)
    precision = _ratio(true_positive, predicted)
    dice = _ratio(2 * true_positive, labelled + predicted)

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
        "overall_accuracy": float(true_positive.sum() / total) if total else 0.0,
    }
    for index, name in labels.items():
        metrics[f"iou_{name}"] = report(iou, index)
        metrics[f"accuracy_{name}"] = report(accuracy, index)
    if positive_label is not None:
        name = labels[positive_label]
        metrics[f"{name}_dice"] = report(dice, positive_label)
        metrics[f"{name}_precision"] = report(precision, positive_label)
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


class StreamingSegmentationMetrics:
    """``compute_metrics`` for the HF Trainer that streams a confusion matrix over eval batches.

    With ``TrainingArguments(batch_eval_metrics=True)`` the Trainer calls this once per eval
    batch with torch tensors and ``compute_result=True`` on the last one: each call upsamples
    the logits (N, C, h, w) to the label size (N, H, W) exactly like
    ``SegformerImageProcessor.post_process_semantic_segmentation`` (bilinear,
    ``align_corners=False``), argmaxes and counts; the last call returns the metrics and resets
    for the next evaluation. Called without ``compute_result`` (default Trainer mode, whole eval
    set as numpy arrays) it counts and returns the metrics at once. Predictions that are already
    integer class maps with the labels' shape (e.g. from ``preprocess_logits_for_metrics``) are
    counted as they are.

    Args:
        id2label: Class id -> name for every class; names become metric key parts.
        ignore_index: Label value to skip; the Trainer's -100 padding is always skipped.
        positive_label: Class id that also gets Dice/precision/recall; None skips them.
    """

    def __init__(
        self,
        id2label: Mapping[int, str],
        ignore_index: int = IGNORE_INDEX,
        positive_label: int | None = NAIL,
    ) -> None:
        self.accumulator = ConfusionMatrixAccumulator(id2label, ignore_index, positive_label)

    def __call__(self, eval_pred: Any, compute_result: bool | None = None) -> dict[str, float]:
        """Count one batch (or a whole eval set); return metrics when the evaluation ends.

        Args:
            eval_pred: ``EvalPrediction`` (or a ``(predictions, label_ids)`` pair) whose
                predictions are logits (N, C, h, w), or a tuple starting with them, and whose
                label_ids are (N, H, W) class indices.
            compute_result: False: count and return {}; True: count, return the metrics of the
                whole evaluation and reset; None (non-batched mode): same as True.

        Returns:
            {} while the evaluation goes on, else the ``compute_metrics_from_confusion`` dict.
        """
        if hasattr(eval_pred, "predictions"):
            predictions, labels = eval_pred.predictions, eval_pred.label_ids
        else:
            predictions, labels = eval_pred
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        self._update(_as_tensor(predictions), _as_tensor(labels))
        if compute_result is False:
            return {}
        metrics = self.accumulator.compute()
        self.accumulator.reset()
        return metrics

    def reset(self) -> None:
        """Drop counts of an evaluation that was interrupted before its last batch."""
        self.accumulator.reset()

    def _update(self, predictions: torch.Tensor, labels: torch.Tensor) -> None:
        labels = labels.to(predictions.device)
        if predictions.ndim == labels.ndim and not predictions.is_floating_point():
            self.accumulator.update(predictions, labels)
            return
        if predictions.ndim != 4 or labels.ndim != 3 or len(predictions) != len(labels):
            raise ValueError(
                f"expected logits (N, C, h, w) and labels (N, H, W), got shapes "
                f"{tuple(predictions.shape)} and {tuple(labels.shape)}"
            )
        size = tuple(labels.shape[-2:])
        for start in range(0, len(predictions), _UPSAMPLE_CHUNK):
            logits = predictions[start : start + _UPSAMPLE_CHUNK].float()
            if tuple(logits.shape[-2:]) != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            self.accumulator.update(logits.argmax(dim=1), labels[start : start + _UPSAMPLE_CHUNK])


def load_mean_iou(**kwargs: Any) -> Any:
    """Load the bundled ``mean_iou`` evaluate metric offline (same API as the Hub's).

    ``evaluate`` copies the script into ``HF_MODULES_CACHE`` and creates a folder under
    ``HF_METRICS_CACHE`` (or ``cache_dir``), so both must be writable.

    Args:
        **kwargs: Passed to ``evaluate.load``, e.g. ``keep_in_memory=True`` or ``cache_dir``.

    Returns:
        The ``evaluate.EvaluationModule``; call ``.compute(predictions=..., references=...,
        num_labels=..., ignore_index=255)``.

    Raises:
        PermissionError: If a cache folder is not writable; the message names the variables to set.
    """
    import evaluate  # slow to import, and only this helper needs it

    try:
        return evaluate.load(str(MEAN_IOU_MODULE), **kwargs)
    except PermissionError as error:
        raise PermissionError(
            f"evaluate could not write its cache while loading {MEAN_IOU_MODULE}: {error}. Set "
            "HF_HOME (or HF_MODULES_CACHE and HF_METRICS_CACHE) to a writable folder before "
            "importing evaluate, or pass cache_dir=... for the metric data"
        ) from error
