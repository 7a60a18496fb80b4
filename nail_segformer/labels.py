"""The label convention every part of the package shares: background 0, nail 1, ignore 255.

No label reduction anywhere: 0 stays background. 255 marks pixels the loss and the metrics skip
(SegFormer's ``semantic_loss_ignore_index``). Logits meet labels at the labels' size, brought
there by :func:`upsample_logits`. This module imports nothing of ours, so any stage may use it.
"""

from collections.abc import Sequence

BACKGROUND = 0
NAIL = 1
IGNORE_INDEX = 255
ID2LABEL: dict[int, str] = {BACKGROUND: "background", NAIL: "nail"}
LABEL2ID: dict[str, int] = {name: idx for idx, name in ID2LABEL.items()}

__all__ = ["BACKGROUND", "NAIL", "IGNORE_INDEX", "ID2LABEL", "LABEL2ID", "upsample_logits"]


def upsample_logits(logits, size: Sequence[int]):
    """Resize logits (N, C, h, w) to (N, C, *size), bilinear with ``align_corners=False``.

    The same resize as ``SegformerImageProcessor.post_process_semantic_segmentation`` and the
    model's own loss; logits that already have that size are returned unchanged.
    """
    import torch.nn.functional as F

    size = tuple(int(side) for side in size)
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
