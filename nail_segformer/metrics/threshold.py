"""The nail threshold: pixel figures at every cut of P(nail), from one streamed histogram.

A two-class mask is "nail where P(nail) > t"; argmax is t = 0.5. Evaluation counts, beside the
confusion matrix, the counted pixels of each true class per bin of P(nail): bin ``k`` holds the
probabilities above ``THRESHOLDS[k - 1]`` and at most ``THRESHOLDS[k]`` (bin 0: exactly 0).
At the edge ``THRESHOLDS[j]`` the pixels predicted nail are then exactly those of bins above
``j``, so nail IoU, Dice, precision and recall at all 101 edges come from two rows of 102
integers, however many photos were evaluated. The rule is ``>`` everywhere (``Predictor``, the
ONNX runtimes, the demo), and the edges are float32 values, as the probabilities are.

0/0 ratios follow :mod:`nail_segformer.metrics.confusion`: 1.0 when there was no nail to find
and none was predicted, 0.0 otherwise.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "THRESHOLD_METRICS",
    "THRESHOLDS",
    "choose_threshold",
    "metrics_at_threshold",
    "probability_counts",
    "threshold_curve",
]

# 0.00, 0.01, ..., 1.00 as float32, the dtype the probabilities are compared in.
THRESHOLDS = torch.arange(101, dtype=torch.float32) / 100
# Figures a threshold can be chosen by: pixel figures of the nail class (detection and boundary
# figures need the masks themselves).
THRESHOLD_METRICS = ("iou", "dice", "f0.5", "f2")


def probability_counts(
    nail_probability: torch.Tensor, is_nail: torch.Tensor, counted: torch.Tensor | None = None
) -> np.ndarray:
    """Counted pixels per bin of P(nail): row 0 the other classes', row 1 the nails'.

    Args:
        nail_probability: P(nail) per pixel, any shape.
        is_nail: whether each pixel's reference is nail, same shape.
        counted: which pixels count (references not ignored); None counts all.

    Returns:
        (2, 102) int64 counts, the bins as in this module's docstring.
    """
    bins = torch.bucketize(
        nail_probability.float().contiguous(), THRESHOLDS.to(nail_probability.device)
    )
    keys = bins + (len(THRESHOLDS) + 1) * is_nail.long()
    if counted is not None:
        keys = keys[counted]
    counts = torch.bincount(keys.ravel(), minlength=2 * (len(THRESHOLDS) + 1))
    return counts.cpu().numpy().astype(np.int64).reshape(2, -1)


def _ratio(numerator: np.ndarray, denominator: np.ndarray, agree: np.ndarray) -> np.ndarray:
    out = np.where(agree, 1.0, 0.0)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def threshold_curve(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Nail IoU, Dice, precision, recall and F-beta at each of :data:`THRESHOLDS`.

    Args:
        counts: a :func:`probability_counts` histogram (or a sum of them).

    Returns:
        ``threshold`` and one array per figure, each of ``len(THRESHOLDS)`` floats; the
        ``f<beta>`` keys are those of :data:`THRESHOLD_METRICS`.
    """
    counts = np.asarray(counts, dtype=np.int64).reshape(2, -1)
    # Pixels above edge j are those of bins j+1 onwards: reversed cumulative sums.
    above = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1][:, 1:]
    false_positive, true_positive = above[0].astype(float), above[1].astype(float)
    nails = float(counts[1].sum())
    false_negative = nails - true_positive
    nothing = (nails == 0) & (true_positive + false_positive == 0)
    curve = {
        "threshold": THRESHOLDS.numpy().astype(float).round(2),
        "iou": _ratio(true_positive, true_positive + false_positive + false_negative, nothing),
        "precision": _ratio(true_positive, true_positive + false_positive, nothing),
        "recall": _ratio(true_positive, np.full_like(true_positive, nails), nothing),
    }
    for name in ("dice", *[m for m in THRESHOLD_METRICS if m.startswith("f")]):
        beta2 = 1.0 if name == "dice" else float(name[1:]) ** 2
        curve[name] = _ratio(
            (1 + beta2) * true_positive,
            (1 + beta2) * true_positive + beta2 * false_negative + false_positive,
            nothing,
        )
    return curve


def choose_threshold(counts: np.ndarray, metric: str = "iou") -> tuple[float, float]:
    """The edge in (0, 1) where ``metric`` (one of :data:`THRESHOLD_METRICS`) peaks.

    Of equal peaks, the one nearest 0.5 (argmax) wins, so a flat curve keeps argmax.

    Returns:
        ``(threshold, value of metric there)``.

    Raises:
        ValueError: an unknown ``metric``.
    """
    if metric not in THRESHOLD_METRICS:
        raise ValueError(f"threshold metric must be one of {THRESHOLD_METRICS}, got {metric!r}")
    curve = threshold_curve(counts)
    inner = slice(1, len(THRESHOLDS) - 1)  # 0 and 1 would mark every pixel or none
    values, edges = curve[metric][inner], curve["threshold"][inner]
    best = np.flatnonzero(values == values.max())
    pick = best[np.argmin(np.abs(edges[best] - 0.5))]
    return float(edges[pick]), float(values[pick])


def metrics_at_threshold(counts: np.ndarray, threshold: float, name: str = "nail") -> dict:
    """``iou_<name>``, ``<name>_dice``, ``_precision`` and ``_recall`` at one of the edges.

    Raises:
        ValueError: ``threshold`` is not one of :data:`THRESHOLDS` (a multiple of 0.01).
    """
    index = round(threshold * 100)
    if not (0 <= index < len(THRESHOLDS) and abs(index / 100 - threshold) < 1e-6):
        raise ValueError(f"a threshold is one of 0.00, 0.01, ..., 1.00; got {threshold}")
    curve = threshold_curve(counts)
    return {
        f"iou_{name}": float(curve["iou"][index]),
        f"{name}_dice": float(curve["dice"][index]),
        f"{name}_precision": float(curve["precision"][index]),
        f"{name}_recall": float(curve["recall"][index]),
    }
