"""SegFormer's fine-tuning parameter groups: the decode head at a multiple of the learning rate,
no weight decay on normalisation layers (paper section 4.1; MMSegmentation's segformer configs).

:class:`~nail_segformer.train.trainer.NailTrainer` builds the optimizer from these groups
through the Trainer's own ``create_optimizer``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["NO_DECAY_RULES", "OptimizerRecipe", "optimizer_parameter_groups"]

# Which parameters get no weight decay:
# - "norm": SegFormer's recipe (MMSegmentation's `decay_mult=0` for `norm` and `pos_block`):
#   the weights and biases of every normalisation layer, and position blocks (MiT has none;
#   matched by name for encoders that do). Every other bias decays, as in that recipe.
# - "norm_and_bias": the Trainer's own rule (`Trainer.get_decay_parameter_names`): normalisation
#   layers and every bias.
# - "none": every parameter decays.
NO_DECAY_RULES = ("norm", "norm_and_bias", "none")
_NORM_LAYERS = tuple(
    getattr(torch.nn, name)
    for name in (
        "LayerNorm", "GroupNorm", "RMSNorm", "SyncBatchNorm",
        *(f"{lazy}{kind}Norm{d}d" for lazy in ("", "Lazy") for kind in ("Batch", "Instance")
          for d in (1, 2, 3)),
    )
)  # fmt: skip
# SegformerForSemanticSegmentation's decode head; the rest is the MiT encoder.
_HEAD_PREFIX = "decode_head."


@dataclass(frozen=True)
class OptimizerRecipe:
    """How the parameters are grouped for the optimizer.

    Args:
        head_lr_multiplier: the decode head's learning rate as a multiple of the base rate.
        no_decay: which parameters get no weight decay, one of :data:`NO_DECAY_RULES`.
    """

    head_lr_multiplier: float = 1.0
    no_decay: str = "norm_and_bias"

    def __post_init__(self):
        if self.no_decay not in NO_DECAY_RULES:
            raise ValueError(f"no_decay must be one of {NO_DECAY_RULES}, got {self.no_decay!r}")
        check_head_lr_multiplier("head_lr_multiplier", self.head_lr_multiplier)


def check_head_lr_multiplier(name: str, value: float) -> None:
    """Raise ``ValueError`` unless the head's learning-rate multiplier is positive."""
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def optimizer_parameter_groups(
    model: torch.nn.Module,
    learning_rate: float,
    weight_decay: float,
    recipe: OptimizerRecipe,
    decay_names: set[str] | None = None,
) -> list[dict]:
    """Split the trainable parameters into groups by learning rate and weight decay.

    Args:
        model: a ``SegformerForSemanticSegmentation`` (the head is ``decode_head.*``).
        learning_rate: the base learning rate (encoder).
        weight_decay: the weight decay of the parameters that decay.
        recipe: head multiplier and no-decay rule.
        decay_names: for ``recipe.no_decay == "norm_and_bias"``, the names the Trainer decays
            (``Trainer.get_decay_parameter_names``); ignored by the other rules.

    Returns:
        Non-empty parameter groups, each with ``params``, ``lr``, ``weight_decay`` and a
        ``name`` such as ``"head, no decay"``: the encoder's first (so the Trainer logs the base
        rate), decaying before non-decaying as in the Trainer. With a multiplier of 1 the head
        is not split off, so the ``norm_and_bias`` rule gives exactly the Trainer's own two
        groups, and checkpoints of runs that used them resume.
    """
    from transformers.trainer_pt_utils import get_parameter_names

    if recipe.no_decay == "norm":
        # The Trainer's own helper: every parameter outside normalisation layers and position
        # blocks.
        decay_names = set(get_parameter_names(model, _NORM_LAYERS, [r"pos_block"]))
    elif recipe.no_decay == "norm_and_bias" and decay_names is None:
        raise ValueError("the 'norm_and_bias' rule needs the Trainer's decay_names")
    split_head = recipe.head_lr_multiplier != 1.0
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decays = recipe.no_decay == "none" or name in decay_names
        head = split_head and name.startswith(_HEAD_PREFIX)
        groups.setdefault((head, not decays), []).append(param)
    part = {(False, False): "all", (False, True): "encoder", (True, True): "head"}
    return [
        {
            "params": groups[key],
            "lr": learning_rate * (recipe.head_lr_multiplier if key[0] else 1.0),
            "weight_decay": 0.0 if key[1] else weight_decay,
            "name": f"{part[key[0], split_head]}, {'no decay' if key[1] else 'decay'}",
        }
        for key in sorted(groups)  # encoder before head, then decay before no decay
    ]
