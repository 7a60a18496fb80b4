"""``transformers.Trainer`` with the fixes this package depends on.

transformers 5.x saves SegFormer checkpoints under legacy key names but reloads them, on
``resume_from_checkpoint`` and ``load_best_model_at_end``, with a non-strict ``load_state_dict``
that silently restores only a handful of tensors (upstream issue #43701). With
``average_tokens_across_devices`` (its default) it multiplies a custom loss by the number of
processes under DDP, counting label pixels as tokens; it pickles its
arguments, Hub token included, into every checkpoint, and pushes everything at the top of the
output folder, local paths and the user's file names included. :class:`NailTrainer` reloads
checkpoints through ``from_pretrained`` (which converts the names) and refuses any missing,
unexpected or mismatched tensor, hands the Trainer a copy of its arguments without token
averaging, without the Hub token and with the Trainer's own pushing off (``--push_to_hub`` is
:class:`~nail_segformer.train.push.HubPush`, a public callback), and builds SegFormer's
fine-tuning parameter groups (decode head at a multiple of the learning rate, no weight decay on
normalisation layers) through the Trainer's own optimizer creation.

Private parts of the Trainer this module relies on, each for a reason the public API cannot
serve; a later change that must add one adds it here:

- ``_load_from_checkpoint`` and ``_load_best_model``: reload strictly through
  ``from_pretrained`` (transformers issue #43701, above); DeepSpeed and FSDP keep the Trainer's.
- ``_save``: the final model is written beside the old one and moved in with atomic renames, so
  a crash mid-save never leaves half a model in the run folder.
- ``create_optimizer`` imports ``transformers.trainer_optimizer.has_mixed_dtensor`` and
  ``is_optimizer_factory`` (module-level helpers, not exported) to fall back to the Trainer's
  groups for optimizers that build their own.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from pathlib import Path

import torch
from transformers import Trainer

from nail_segformer.train.optim import OptimizerRecipe, optimizer_parameter_groups
from nail_segformer.train.push import HubPush

__all__ = ["NailTrainer", "load_checkpoint_weights"]

logger = logging.getLogger(__name__)


def load_checkpoint_weights(model: torch.nn.Module, checkpoint_dir: str | os.PathLike) -> None:
    """Copy every tensor of a saved checkpoint into ``model``, strictly.

    The checkpoint is read with ``from_pretrained`` (safetensors only, local files only), which
    maps saved key names onto the current module names. ``from_pretrained`` itself fills a
    missing tensor with random values and only warns, so its loading report is checked, then
    ``load_state_dict(strict=True)`` compares names and shapes with ``model``.

    Raises:
        RuntimeError: the checkpoint does not hold exactly the model's tensors (the message
            lists the missing, unexpected and mismatched ones).
    """
    reloaded, info = type(model).from_pretrained(
        str(checkpoint_dir),
        use_safetensors=True,
        local_files_only=True,
        output_loading_info=True,
        # Report shape mismatches in `info` (listed below) instead of a message without names.
        ignore_mismatched_sizes=True,
    )
    problems = {
        kind: sorted(map(str, info.get(kind) or ()))
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")
    }
    problems = {kind: names for kind, names in problems.items() if names}
    if problems:
        raise RuntimeError(
            f"checkpoint {checkpoint_dir} does not match the model: "
            + "; ".join(f"{kind.replace('_', ' ')}: {names}" for kind, names in problems.items())
            + ". It was written by another model or damaged; resume from another checkpoint "
            "(--resume_from_checkpoint) or start afresh (--overwrite_output_dir)."
        )
    model.load_state_dict(reloaded.state_dict(), strict=True)
    logger.info("restored %d tensors from %s", len(reloaded.state_dict()), checkpoint_dir)


class NailTrainer(Trainer):
    """``Trainer`` for SegFormer segmentation; see the module docstring for what it changes.

    Args:
        args: ``TrainingArguments``. Under ``push_to_hub`` the run is published by
            :attr:`hub_push`, a :class:`~nail_segformer.train.push.HubPush` callback built from
            the ``hub_*`` fields; the Trainer itself gets a copy without pushing or token.
        optimizer_recipe: parameter groups of the optimizer; default: the plain Trainer's (one
            learning rate, no decay on normalisation layers and biases).
        **kwargs: passed to ``Trainer``.
    """

    # Our loss functions return a per-batch mean; let the Trainer divide by accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model=None,
        args=None,
        *,
        optimizer_recipe: OptimizerRecipe | None = None,
        **kwargs,
    ):
        self.optimizer_recipe = optimizer_recipe or OptimizerRecipe()
        self.hub_push: HubPush | None = None
        if args is not None and (
            args.push_to_hub or args.hub_token or args.average_tokens_across_devices
        ):
            if args.push_to_hub:
                self.hub_push = HubPush.from_training_args(args)
            # The Trainer pickles its arguments into training_args.bin of every checkpoint, and
            # its own push would publish the whole output folder through private methods.
            # Token averaging (TrainingArguments' default is on) would count label pixels as
            # tokens and multiply our per-batch mean loss by the number of processes.
            args = copy.copy(args)
            args.push_to_hub = False
            args.hub_token = None
            args.average_tokens_across_devices = False
        super().__init__(model=model, args=args, **kwargs)
        if self.hub_push is not None:
            self.add_callback(self.hub_push)

    def create_optimizer(self, model=None):
        """The Trainer's optimizer (``--optim``), over :func:`optimizer_parameter_groups`."""
        from transformers.trainer_optimizer import has_mixed_dtensor, is_optimizer_factory
        from transformers.utils import is_sagemaker_mp_enabled

        opt_model = self.model if model is None else model
        if self.optimizer is not None:
            return self.optimizer
        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(
                self.args, opt_model
            )
        if (
            is_optimizer_factory(optimizer_cls)
            or {"params", "model", "optimizer_dict"} & set(optimizer_kwargs)
            or is_sagemaker_mp_enabled()
            or has_mixed_dtensor(opt_model.parameters())
        ):
            # Optimizers that build their own groups (GaLore, LOMO, layer-wise, Muon...), or
            # parameters sharded over several device meshes, which the Trainer splits itself.
            logger.warning(
                "this optimizer set-up (--optim %s) builds its own parameter groups: the decode "
                "head learning-rate multiplier and the no-decay rule are not applied",
                self.args.optim,
            )
            return super().create_optimizer(model)
        recipe = self.optimizer_recipe
        decay_names = set(self.get_decay_parameter_names(opt_model))
        groups = optimizer_parameter_groups(
            opt_model, self.args.learning_rate, self.args.weight_decay, recipe, decay_names
        )
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        logger.info(
            "optimizer %s: %s",
            optimizer_cls.__name__,
            "; ".join(
                f"{g['name']}: {sum(p.numel() for p in g['params']):,} parameters at lr "
                f"{g['lr']:g}, weight decay {g['weight_decay']:g}"
                for g in groups
            ),
        )
        return self.optimizer

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

    def _save(self, output_dir=None, state_dict=None):
        target = Path(output_dir or self.args.output_dir)
        if target.resolve() != Path(self.args.output_dir).resolve() or not self.args.should_save:
            return super()._save(output_dir, state_dict)
        # The final model goes to the run folder, where an earlier good model may stand: write
        # it beside, then move each file into place with an atomic rename, weights last, so a
        # crash leaves either the old model or the new one, never a half-written file.
        staging = target / "_staging_model"
        shutil.rmtree(staging, ignore_errors=True)
        super()._save(str(staging), state_dict)
        names = sorted(os.listdir(staging), key=lambda name: name.endswith(".safetensors"))
        for name in names:
            os.replace(staging / name, target / name)
        staging.rmdir()
