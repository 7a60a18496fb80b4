"""The Trainer's ``compute_metrics`` hook, streaming counts through the bundled evaluate module.

``nail_segformer/metric_modules/mean_iou`` is an ``evaluate`` metric with two configurations:
``default`` is a drop-in for the Hub's ``evaluate.load("mean_iou")`` (class maps in, the Hub's
outputs back), and ``counts`` takes one :class:`~nail_segformer.metrics.SegmentationCounts` row
per evaluated batch and computes every metric of the package from their sum. The hook uses
``counts``: each batch adds a few integers, never its maps, so evaluation memory stays flat in
the number of images (the Hub's ``add_batch`` would store every map).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nail_segformer.labels import IGNORE_INDEX, NAIL, upsample_logits
from nail_segformer.metrics.confusion import _as_tensor, _check_id2label
from nail_segformer.metrics.counts import SegmentationCounts, compute_counts

__all__ = ["COUNTS_CONFIG", "MEAN_IOU_MODULE", "StreamingSegmentationMetrics", "load_mean_iou"]

MEAN_IOU_MODULE = (
    Path(__file__).resolve().parent.parent / "metric_modules" / "mean_iou" / "mean_iou.py"
)
COUNTS_CONFIG = "counts"

# Logits are upsampled this many images at a time, so that a whole eval set handed over at once
# (non-batched Trainer mode) is never upsampled in one piece.
_UPSAMPLE_CHUNK = 8


def load_mean_iou(config_name: str | None = None, **kwargs: Any) -> Any:
    """Load the bundled ``mean_iou`` evaluate metric offline.

    ``evaluate`` copies the script into ``HF_MODULES_CACHE`` and, unless ``keep_in_memory``,
    writes the added examples under ``HF_METRICS_CACHE`` (or ``cache_dir``), so both must be
    writable.

    Args:
        config_name: None (or ``"default"``) for the Hub-compatible module taking class maps;
            ``"counts"`` (:data:`COUNTS_CONFIG`) for the streaming one taking
            ``SegmentationCounts.to_row()`` rows.
        **kwargs: Passed to ``evaluate.load``, e.g. ``keep_in_memory=True`` or ``cache_dir``.

    Returns:
        The ``evaluate.EvaluationModule``. Default: ``.compute(predictions=..., references=...,
        num_labels=..., ignore_index=255)``; counts: ``.add_batch(**rows)`` then ``.compute()``.

    Raises:
        PermissionError: If a cache folder is not writable; the message names the variables to set.
    """
    import evaluate  # slow to import (it loads transformers' pipelines)

    try:
        return evaluate.load(str(MEAN_IOU_MODULE), config_name, **kwargs)
    except PermissionError as error:
        raise PermissionError(
            f"evaluate could not write its cache while loading {MEAN_IOU_MODULE}: {error}. Set "
            "HF_HOME (or HF_MODULES_CACHE and HF_METRICS_CACHE) to a writable folder before "
            "importing evaluate, or pass cache_dir=... for the metric data"
        ) from error


class StreamingSegmentationMetrics:
    """``compute_metrics`` for the HF Trainer: per-batch counts into the evaluate module.

    With ``TrainingArguments(batch_eval_metrics=True)`` the Trainer calls this once per eval
    batch with torch tensors and ``compute_result=True`` on the last one: each call upsamples
    the logits (N, C, h, w) to the label size (N, H, W) exactly like
    ``SegformerImageProcessor.post_process_semantic_segmentation`` (bilinear,
    ``align_corners=False``), argmaxes, turns the maps into counts
    (:func:`~nail_segformer.metrics.compute_counts`: pixels, nails, boundary bands) and adds
    them to :attr:`metric`, the ``mean_iou`` evaluate module in its ``counts`` configuration.
    The last call returns ``metric.compute()``, which also empties it for the next evaluation.
    Called without ``compute_result`` (default Trainer mode, whole eval set as numpy arrays)
    it counts and returns the metrics at once. Predictions that are already integer class maps
    with the labels' shape (e.g. from ``preprocess_logits_for_metrics``) are counted as they are.

    Several processes: the Trainer gathers each batch's logits and labels from every process
    (dropping the distributed sampler's padding) before calling this hook on each of them, so
    every process counts the whole batch once and computes the same metrics. The module
    therefore runs single-process (``keep_in_memory``) on each; evaluate's own multi-process
    mode would count each batch once per process on top of the Trainer's gather, and it returns
    the metrics on process 0 only, while the Trainer needs them on every process to pick the
    best checkpoint alike.

    After each evaluation :attr:`last_counts` holds its summed
    :class:`~nail_segformer.metrics.SegmentationCounts`, whose ``nail_probability`` histogram
    gives the figures at every threshold (:mod:`nail_segformer.metrics.threshold`); with
    :attr:`threshold` set, the returned metrics also hold the nail's figures at it.

    Args:
        id2label: Class id -> name for every class; names become metric key parts.
        ignore_index: Label value to skip; the Trainer's -100 padding is always skipped.
        positive_label: The nail class (components, boundary); None scores pixels only.
        min_nail_area: Smallest nail in pixels; None uses 0.01% of the label map's pixels.
    """

    def __init__(
        self,
        id2label: Mapping[int, str],
        ignore_index: int = IGNORE_INDEX,
        positive_label: int | None = NAIL,
        min_nail_area: int | None = None,
    ) -> None:
        self.id2label = _check_id2label(id2label)
        self.ignore_index = ignore_index
        self.positive_label = positive_label
        self.min_nail_area = min_nail_area
        self.metric = load_mean_iou(COUNTS_CONFIG, keep_in_memory=True)
        self._counts: SegmentationCounts | None = None  # of the evaluation under way
        self.threshold: float | None = None  # also report the nail's figures at it
        self.last_counts: SegmentationCounts | None = None

    def __call__(self, eval_pred: Any, compute_result: bool | None = None) -> dict[str, float]:
        """Count one batch (or a whole eval set); return metrics when the evaluation ends.

        Args:
            eval_pred: ``EvalPrediction`` (or a ``(predictions, label_ids)`` pair) whose
                predictions are logits (N, C, h, w), or a tuple starting with them, and whose
                label_ids are (N, H, W) class indices.
            compute_result: False: count and return {}; True: count, return the metrics of the
                whole evaluation and reset; None (non-batched mode): same as True.

        Returns:
            {} while the evaluation goes on, else the ``compute_metrics_from_counts`` dict.
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
        self.last_counts, self._counts = self._counts, None
        return self.metric.compute(
            id2label=self.id2label, positive_label=self.positive_label, threshold=self.threshold
        )

    def reset(self) -> None:
        """Drop counts of an evaluation that was interrupted before its last batch."""
        self._counts = None
        if len(self.metric):
            # evaluate empties a module only by computing it
            self.metric.compute(id2label=self.id2label, positive_label=self.positive_label)

    def _add(self, predictions: torch.Tensor, labels: torch.Tensor, probability=None) -> None:
        counts = compute_counts(
            predictions,
            labels,
            len(self.id2label),
            self.ignore_index,
            self.positive_label,
            self.min_nail_area,
            probability,
        )
        self._counts = counts if self._counts is None else self._counts + counts
        self.metric.add_batch(**{name: [value] for name, value in counts.to_row().items()})

    def _update(self, predictions: torch.Tensor, labels: torch.Tensor) -> None:
        labels = labels.to(predictions.device)
        if predictions.ndim == labels.ndim and not predictions.is_floating_point():
            self._add(predictions, labels)
            return
        if predictions.ndim != 4 or labels.ndim != 3 or len(predictions) != len(labels):
            raise ValueError(
                f"expected logits (N, C, h, w) and labels (N, H, W), got shapes "
                f"{tuple(predictions.shape)} and {tuple(labels.shape)}"
            )
        size = tuple(labels.shape[-2:])
        for start in range(0, len(predictions), _UPSAMPLE_CHUNK):
            logits = predictions[start : start + _UPSAMPLE_CHUNK].float()
            logits = upsample_logits(logits, size)
            probability = None
            if self.positive_label is not None:
                probability = logits.softmax(dim=1)[:, self.positive_label]
            self._add(logits.argmax(dim=1), labels[start : start + _UPSAMPLE_CHUNK], probability)
