"""``transformers.Trainer`` with the fixes this package depends on.

transformers 5.x saves SegFormer checkpoints under legacy key names but reloads them, on
``resume_from_checkpoint`` and ``load_best_model_at_end``, with a non-strict ``load_state_dict``
that silently restores only a handful of tensors (upstream issue #43701). It also multiplies a
custom loss by the number of processes under DDP when it counts label tokens, and pickles its
arguments, Hub token included, into every checkpoint and every pushed folder. :class:`NailTrainer`
reloads checkpoints through ``from_pretrained`` (which converts the names) and checks that every
tensor arrived, never counts label "tokens", and keeps the Hub token out of its arguments.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import torch
from transformers import Trainer

__all__ = ["NailTrainer", "load_checkpoint_weights"]

logger = logging.getLogger(__name__)


def load_checkpoint_weights(model: torch.nn.Module, checkpoint_dir: str | os.PathLike) -> None:
    """Copy every tensor of a saved checkpoint into ``model``, strictly.

    The checkpoint is read with ``from_pretrained`` (safetensors only, local files only), which
    maps saved key names onto the current module names; ``load_state_dict(strict=True)`` then
    raises if any tensor is missing or unexpected.

    Raises:
        RuntimeError: the checkpoint does not hold exactly the model's tensors.
    """
    reloaded = type(model).from_pretrained(
        str(checkpoint_dir), use_safetensors=True, local_files_only=True
    )
    model.load_state_dict(reloaded.state_dict(), strict=True)
    logger.info("restored %d tensors from %s", len(reloaded.state_dict()), checkpoint_dir)


class NailTrainer(Trainer):
    """``Trainer`` for SegFormer segmentation; see the module docstring for what it changes.

    Args:
        card_writer: called with the output folder whenever the Trainer would write its own
            model card (before a push), so the pushed README is this package's card.
        **kwargs: passed to ``Trainer``.
    """

    # Our loss functions return a per-batch mean; let the Trainer divide by accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self, model=None, args=None, *, card_writer: Callable[[str], None] | None = None, **kwargs
    ):
        if args is not None and args.hub_token:
            # The Trainer pickles `args` into training_args.bin in every checkpoint and pushed
            # folder. huggingface_hub reads HF_TOKEN when it needs a token, so the token lives
            # there instead and never reaches a file.
            os.environ["HF_TOKEN"] = args.hub_token
            args.hub_token = None
        super().__init__(model=model, args=args, **kwargs)
        self.card_writer = card_writer

    def _get_num_items_in_batch(self, batch_samples, device):
        # Counting label pixels only serves token-averaged LM losses; for us it would make the
        # Trainer rescale the loss by the number of processes.
        return None

    def _uses_plain_weights(self) -> bool:
        return not (self.is_deepspeed_enabled or self.is_fsdp_enabled)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if not self._uses_plain_weights():
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        load_checkpoint_weights(model if model is not None else self.model, resume_from_checkpoint)

    def _load_best_model(self):
        if not self._uses_plain_weights():
            return super()._load_best_model()
        logger.info(
            "loading the best model from %s (%s = %s)",
            self.state.best_model_checkpoint,
            self.args.metric_for_best_model,
            self.state.best_metric,
        )
        load_checkpoint_weights(self.model, self.state.best_model_checkpoint)

    def create_model_card(self, *args, **kwargs):
        if self.card_writer is not None and self.is_world_process_zero():
            self.card_writer(self.args.output_dir)
