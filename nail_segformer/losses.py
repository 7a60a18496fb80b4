"""Segmentation losses: pure functions on logits, one ``nn.Module`` to pick them by name.

The functions take logits (N, C, H, W) already at label size and labels (N, H, W) int64 whose
``ignore_index`` pixels (default ``data.IGNORE_INDEX`` = 255) take no part in the loss and get
no gradient. Each returns a scalar mean over the counted pixels (Dice and Lovász: over the
classes present in the batch). When every pixel is ignored they return ``logits.sum() * 0``:
zero, yet still part of the graph, so ``backward()`` and distributed gradient sync keep working.

``SegmentationLoss`` upsamples SegFormer's 1/4-resolution logits to the label size first and
exposes ``as_trainer_loss()`` for ``Trainer(compute_loss_func=...)``.
"""

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nail_segformer.labels import IGNORE_INDEX, upsample_logits

logger = logging.getLogger(__name__)

__all__ = [
    "LOSS_NAMES",
    "SegmentationLoss",
    "compute_class_weights",
    "cross_entropy_loss",
    "dice_loss",
    "focal_loss",
    "lovasz_softmax_loss",
    "parse_class_weights",
    "upsample_logits",
]

LOSS_NAMES = ("ce", "dice_ce", "focal", "lovasz", "lovasz_ce")


def parse_class_weights(text: str, num_classes: int) -> list[float] | str | None:
    """``--class_weights`` read: ``None`` for ``none``, ``"auto"``, or one weight per class.

    Raises:
        ValueError: anything else, or weights that :class:`SegmentationLoss` would refuse.
    """
    if text in ("none", "auto"):
        return None if text == "none" else text
    try:
        weights = [float(w) for w in text.split(",")]
        _check_weights(torch.tensor(weights), weights)
    except ValueError:
        weights = []
    if len(weights) != num_classes:
        raise ValueError(
            f"--class_weights must be 'none', 'auto' or {num_classes} non-negative numbers "
            f"separated by commas, got {text!r}"
        )
    return weights


def _check_weights(weights: torch.Tensor, given: Sequence[float]) -> None:
    if weights.ndim != 1 or not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(
            f"class_weights must be finite non-negative numbers, one per class, got {list(given)}"
        )


def _check_shapes(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.ndim != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"expected logits (N, C, H, W) and labels (N, H, W) of the same N, H, W, got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}; upsample the logits first "
            "(upsample_logits, or SegmentationLoss which does it)"
        )


def _weights_tensor(
    class_weights: Sequence[float] | torch.Tensor | None, logits: torch.Tensor
) -> torch.Tensor | None:
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float32, device=logits.device)
    if weights.shape != (logits.shape[1],):
        raise ValueError(
            f"class_weights needs one weight per class ({logits.shape[1]}), got {weights.tolist()}"
        )
    return weights


def _counted_pixels(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits (P, C) and labels (P,) of the pixels that are not ignored."""
    _check_shapes(logits, labels)
    num_classes = logits.shape[1]
    flat_logits = logits.float().movedim(1, -1).reshape(-1, num_classes)
    flat_labels = labels.reshape(-1)
    counted = flat_labels != ignore_index
    flat_logits, flat_labels = flat_logits[counted], flat_labels[counted].long()
    if flat_labels.numel() and (flat_labels.min() < 0 or flat_labels.max() >= num_classes):
        raise ValueError(
            f"labels must be class ids in [0, {num_classes}) or ignore_index={ignore_index}, got "
            f"values from {int(flat_labels.min())} to {int(flat_labels.max())}"
        )
    return flat_logits, flat_labels


def cross_entropy_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Pixel-wise cross-entropy, averaged over counted pixels (weighted mean if weighted).

    Args:
        logits: (N, C, H, W) at label size.
        labels: (N, H, W) class ids, or ``ignore_index``.
        class_weights: One weight per class; the mean divides by the summed weights of the
            counted pixels, as ``torch.nn.functional.cross_entropy`` does.
        ignore_index: Label value that is skipped.
    """
    _check_shapes(logits, labels)
    if not (labels != ignore_index).any():
        return logits.sum() * 0
    weights = _weights_tensor(class_weights, logits)
    return F.cross_entropy(logits.float(), labels.long(), weight=weights, ignore_index=ignore_index)


def focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 2.0,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017): cross-entropy scaled by ``(1 - p_true) ** gamma``.

    Normalised like weighted cross-entropy (divided by the summed weights of counted pixels),
    so ``gamma=0`` gives exactly ``cross_entropy_loss``.

    Args:
        logits: (N, C, H, W) at label size.
        labels: (N, H, W) class ids, or ``ignore_index``.
        gamma: Focusing exponent >= 0; larger values down-weight well-classified pixels more.
        class_weights: One weight per class (the alpha of the paper), or None for 1.
        ignore_index: Label value that is skipped.
    """
    flat_logits, flat_labels = _counted_pixels(logits, labels, ignore_index)
    if flat_labels.numel() == 0:
        return logits.sum() * 0
    log_p_true = flat_logits.log_softmax(dim=1).gather(1, flat_labels[:, None]).squeeze(1)
    p_true = log_p_true.exp()
    pixel_losses = -((1 - p_true) ** gamma) * log_p_true
    weights = _weights_tensor(class_weights, logits)
    if weights is None:
        return pixel_losses.mean()
    pixel_weights = weights[flat_labels]
    return (pixel_weights * pixel_losses).sum() / pixel_weights.sum()


def dice_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    smooth: float = 0.0,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Soft Dice loss on softmax probabilities: mean of ``1 - Dice`` over classes in the batch.

    Dice of class c is ``(2 * sum(p_c * g_c) + smooth) / (sum(p_c) + sum(g_c) + smooth)`` with
    sums over all counted pixels of the batch. Classes absent from the batch's labels are left
    out: their Dice is 0/0, and with smoothing it would be near 0 for a handful of false-positive
    pixels, i.e. a loss near 1 from almost nothing; the cross-entropy term of ``dice_ce`` already
    penalises those pixels.

    Args:
        logits: (N, C, H, W) at label size.
        labels: (N, H, W) class ids, or ``ignore_index``.
        ignore_index: Label value that is skipped.
        smooth: Added to numerator and denominator.
        eps: Lower bound of the denominator, against division by zero.
    """
    flat_logits, flat_labels = _counted_pixels(logits, labels, ignore_index)
    if flat_labels.numel() == 0:
        return logits.sum() * 0
    probs = flat_logits.softmax(dim=1)
    truth = F.one_hot(flat_labels, probs.shape[1]).to(probs.dtype)
    overlap = (probs * truth).sum(dim=0)
    sizes = probs.sum(dim=0) + truth.sum(dim=0)
    dice = (2 * overlap + smooth) / (sizes + smooth).clamp_min(eps)
    present = truth.sum(dim=0) > 0
    return (1 - dice[present]).mean()


def _lovasz_jaccard_gradient(truth_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss, one row per class.

    ``truth_sorted`` (K, P) holds the 0/1 ground truth of each class, ordered by decreasing
    error. Taking the first i pixels as the mispredicted set M_i, the Jaccard loss is
    ``1 - |G minus M_i| / |G union M_i|``; the gradient is its increment from M_{i-1} to M_i.
    """
    positives = truth_sorted.sum(dim=1, keepdim=True)
    intersection = positives - truth_sorted.cumsum(dim=1)
    union = positives + (1 - truth_sorted).cumsum(dim=1)
    jaccard_loss = 1 - intersection / union
    return torch.diff(jaccard_loss, dim=1, prepend=torch.zeros_like(positives))


def lovasz_softmax_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Lovász-Softmax loss (Berman et al., CVPR 2018), a convex surrogate of ``1 - IoU``.

    For each class present in the batch's labels: errors ``|g_c - p_c|`` of all counted pixels
    are sorted in decreasing order and dotted with the gradient of the Lovász extension of the
    Jaccard loss; the result is averaged over those classes. With one-hot probabilities it equals
    the mean over present classes of ``1 - IoU_c`` computed on the whole batch.

    Args:
        logits: (N, C, H, W) at label size.
        labels: (N, H, W) class ids, or ``ignore_index``.
        ignore_index: Label value that is skipped.
    """
    flat_logits, flat_labels = _counted_pixels(logits, labels, ignore_index)
    if flat_labels.numel() == 0:
        return logits.sum() * 0
    probs = flat_logits.softmax(dim=1)
    truth = F.one_hot(flat_labels, probs.shape[1]).to(probs.dtype)
    present = truth.sum(dim=0) > 0
    # One row per present class; all classes are sorted in one call.
    truth, probs = truth[:, present].T, probs[:, present].T
    errors_sorted, order = (truth - probs).abs().sort(dim=1, descending=True)
    gradient = _lovasz_jaccard_gradient(truth.gather(1, order))
    return (errors_sorted * gradient).sum(dim=1).mean()


def compute_class_weights(pixel_counts: Sequence[int]) -> list[float]:
    """Per-class loss weights from training-label pixel counts (index = class id).

    Median frequency balancing (Eigen & Fergus 2015): with f_c the share of class c among
    counted pixels, class c weighs ``median(f) / f_c``, so the median class gets 1.

    A class with zero pixels has no defined frequency; it gets the largest weight of the other
    classes (it is at least that rare) and a warning is logged. Its weight only matters if the
    class shows up later, as cross-entropy weights act on the true class of each pixel.

    Args:
        pixel_counts: Non-negative pixel count of every class, e.g. [background, nail].

    Returns:
        One positive float per class.

    Raises:
        ValueError: On negative counts, or no counted pixel at all.
    """
    counts = torch.as_tensor(list(pixel_counts), dtype=torch.float64)
    if counts.ndim != 1 or len(counts) == 0 or (counts < 0).any() or counts.sum() == 0:
        raise ValueError(
            f"pixel_counts must be non-negative per-class counts with at least one pixel, got "
            f"{list(pixel_counts)}"
        )
    seen = counts > 0
    frequencies = counts[seen] / counts[seen].sum()
    # The mean of the two middle values for an even count, as in the paper's median.
    weights = frequencies.quantile(0.5) / frequencies
    result = torch.full_like(counts, float(weights.max()))
    result[seen] = weights
    if not seen.all():
        missing = torch.nonzero(~seen).flatten().tolist()
        logger.warning(
            "classes %s have no pixels in pixel_counts; giving them the largest weight %.4g",
            missing,
            float(weights.max()),
        )
    return result.tolist()


class SegmentationLoss(nn.Module):
    """Segmentation loss chosen by name, for low-resolution logits and full-size labels.

    Names (``LOSS_NAMES``):

    - ``ce``: cross-entropy (what ``SegformerForSemanticSegmentation`` uses by default).
    - ``dice_ce``: cross-entropy + ``dice_weight`` * soft Dice.
    - ``focal``: focal loss with gamma 2.
    - ``lovasz``: Lovász-Softmax alone.
    - ``lovasz_ce``: cross-entropy + ``dice_weight`` * Lovász-Softmax.

    Args:
        name: One of ``LOSS_NAMES``.
        class_weights: One weight per class for the cross-entropy or focal term (see
            ``compute_class_weights``); not allowed with ``lovasz``, which has no such term.
        ignore_index: Label value that is skipped.
        dice_weight: Weight >= 0 of the region term (Dice or Lovász) in ``dice_ce``/``lovasz_ce``.

    Raises:
        ValueError: On an unknown name, a negative ``dice_weight``, or weights with ``lovasz``.
    """

    def __init__(
        self,
        name: str = "ce",
        class_weights: Sequence[float] | None = None,
        ignore_index: int = IGNORE_INDEX,
        dice_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if name not in LOSS_NAMES:
            raise ValueError(f"unknown loss name {name!r}; valid names: {', '.join(LOSS_NAMES)}")
        if dice_weight < 0:
            raise ValueError(f"dice_weight must be >= 0, got {dice_weight}")
        if name == "lovasz" and class_weights is not None:
            raise ValueError(
                "class_weights act on a cross-entropy term, which 'lovasz' does not have; "
                "use 'lovasz_ce' or drop the class weights"
            )
        self.name = name
        self.ignore_index = ignore_index
        self.dice_weight = dice_weight
        weights = None
        if class_weights is not None:
            weights = torch.tensor(list(class_weights), dtype=torch.float32)
            _check_weights(weights, class_weights)
        self.register_buffer("class_weights", weights)

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, ignore_index={self.ignore_index}, dice_weight={self.dice_weight}"
        )

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of logits (N, C, h, w), upsampled to the size of labels (N, H, W)."""
        logits = upsample_logits(logits, labels.shape[-2:])
        ignore = self.ignore_index
        if self.name == "focal":
            return focal_loss(logits, labels, class_weights=self.class_weights, ignore_index=ignore)
        if self.name == "lovasz":
            return lovasz_softmax_loss(logits, labels, ignore_index=ignore)
        loss = cross_entropy_loss(logits, labels, self.class_weights, ignore_index=ignore)
        if self.name == "dice_ce":
            loss = loss + self.dice_weight * dice_loss(logits, labels, ignore_index=ignore)
        elif self.name == "lovasz_ce":
            loss = loss + self.dice_weight * lovasz_softmax_loss(
                logits, labels, ignore_index=ignore
            )
        return loss

    def compute_trainer_loss(
        self, outputs: Any, labels: torch.Tensor | None, num_items_in_batch: Any = None
    ) -> torch.Tensor:
        """Loss from model outputs, with the signature of ``Trainer(compute_loss_func=...)``.

        Returns the per-batch mean; ``num_items_in_batch`` is accepted and not used. The Trainer
        does not divide a ``compute_loss_func`` loss by the gradient-accumulation steps, so the
        caller has to do that scaling.
        """
        if labels is None:
            raise ValueError(
                "SegmentationLoss needs labels but got None: keep the 'labels' column in the "
                "dataset (TrainingArguments(remove_unused_columns=False) if it is dropped)"
            )
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        return self(logits, labels)

    def as_trainer_loss(self) -> Callable[..., torch.Tensor]:
        """This loss as a function ``(outputs, labels, num_items_in_batch=None) -> loss``."""
        return self.compute_trainer_loss
