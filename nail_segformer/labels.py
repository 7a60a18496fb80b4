"""The label convention every part of the package shares: background 0, nail 1, ignore 255.

No label reduction anywhere: 0 stays background. 255 marks pixels the loss and the metrics skip
(SegFormer's ``semantic_loss_ignore_index``). This module imports nothing of ours, so any stage
may use it.
"""

BACKGROUND = 0
NAIL = 1
IGNORE_INDEX = 255
ID2LABEL: dict[int, str] = {BACKGROUND: "background", NAIL: "nail"}
LABEL2ID: dict[str, int] = {name: idx for idx, name in ID2LABEL.items()}

__all__ = ["BACKGROUND", "NAIL", "IGNORE_INDEX", "ID2LABEL", "LABEL2ID"]
