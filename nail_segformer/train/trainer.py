"""``transformers.Trainer`` with the fixes this package depends on.

transformers 5.x saves SegFormer checkpoints under legacy key names but reloads them, on
``resume_from_checkpoint`` and ``load_best_model_at_end``, with a non-strict ``load_state_dict``
that silently restores only a handful of tensors (upstream issue #43701). It also multiplies a
custom loss by the number of processes under DDP when it counts label tokens, pickles its
arguments, Hub token included, into every checkpoint, and pushes everything at the top of the
output folder, local paths and the user's file names included. :class:`NailTrainer` reloads
checkpoints through ``from_pretrained`` (which converts the names) and refuses any missing,
unexpected or mismatched tensor, never counts label "tokens", keeps the Hub token out of its
arguments, pushes only :data:`PUBLISHED_FILES`, and builds SegFormer's fine-tuning parameter
groups (decode head at a multiple of the learning rate, no weight decay on normalisation
layers) through the Trainer's own optimizer creation.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import Trainer

from nail_segformer.train.optim import OptimizerRecipe, optimizer_parameter_groups

__all__ = [
    "PUBLISHED_FILES",
    "NailTrainer",
    "PushError",
    "load_checkpoint_weights",
    "push_later_hint",
]

logger = logging.getLogger(__name__)


class PushError(RuntimeError):
    """A push to the Hub failed; every local file is still in place."""


# What a push publishes, from the top of the output folder: the model, its processor, the card
# and the metrics. Everything else stays local: run_args.json and training_args.bin hold local
# paths, split_manifest.csv and bad_pairs.json the user's file names, trainer_state.json the
# best checkpoint's local path.
PUBLISHED_FILES = (
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*-of-*.safetensors",
    "preprocessor_config.json",
    "README.md",
    "all_results.json",
    "train_results.json",
    "validation_results.json",
    "test_results.json",
)


def push_later_hint(repo_id: str | None, output_dir: str) -> str:
    """The command that pushes a finished run folder by hand (the same files as a push)."""
    includes = " ".join(f'--include "{pattern}"' for pattern in PUBLISHED_FILES)
    return f"hf upload {repo_id or '<user>/<repo>'} {output_dir} . {includes}"


def _published(relative_path: str) -> bool:
    return "/" not in relative_path and any(
        fnmatch.fnmatchcase(relative_path, pattern) for pattern in PUBLISHED_FILES
    )


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
        card_writer: called with the output folder whenever the Trainer would write its own
            model card (before a push), so the pushed README is this package's card.
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
        card_writer: Callable[[str], None] | None = None,
        optimizer_recipe: OptimizerRecipe | None = None,
        **kwargs,
    ):
        self.optimizer_recipe = optimizer_recipe or OptimizerRecipe()
        if args is not None and args.hub_token:
            # The Trainer pickles `args` into training_args.bin in every checkpoint and pushed
            # folder. huggingface_hub reads HF_TOKEN when it needs a token, so the token lives
            # there instead and never reaches a file.
            os.environ["HF_TOKEN"] = args.hub_token
            args.hub_token = None
        self.push_error: str | None = None
        super().__init__(model=model, args=args, **kwargs)
        self.card_writer = card_writer

    # Pushing is a side job: a Hub that is down, a bad token or a missing permission is
    # reported once, with the command to push later, and training carries on.

    def _push_failed(self, err: Exception) -> None:
        if self.push_error is None:
            logger.error(
                "pushing to the Hub failed (%s: %s); training goes on and every file stays in %s. "
                "Push later with: %s",
                type(err).__name__,
                err,
                self.args.output_dir,
                push_later_hint(self.args.hub_model_id, self.args.output_dir),
            )
        self.push_error = f"{type(err).__name__}: {err}"

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

    def init_hf_repo(self, token=None, private=None):
        try:
            super().init_hf_repo(token=token, private=private)
        except Exception as err:  # noqa: BLE001 - any Hub failure must not stop training
            self._push_failed(err)

    def _upload(self, commit_message: str, blocking: bool, revision: str | None = None):
        """Upload :data:`PUBLISHED_FILES` from the output folder, and nothing else."""
        from transformers.utils.hub import hf_api

        folder = Path(self.args.output_dir)
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and _published(p.name))
        return hf_api().upload_folder(
            repo_id=self.hub_model_id,
            folder_path=str(folder),
            commit_message=commit_message,
            token=self.args.hub_token,
            run_as_future=not blocking,
            allow_patterns=names,
            revision=revision or self.args.hub_revision,
        )

    def _push_from_checkpoint(self, checkpoint_folder):
        # The Trainer's version uploads the whole output folder; this one, the published files.
        from transformers.trainer_utils import HubStrategy, SaveStrategy
        from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_NAME

        if (
            self.push_error is not None
            or not self.is_world_process_zero()
            or self.args.hub_strategy == HubStrategy.END
        ):
            return
        if not self.args.hub_always_push and not (
            self.push_in_progress is None or self.push_in_progress.is_done()
        ):
            return
        try:
            self.callback_handler.on_push_begin(self.args, self.state, self.control)
            for name in (CONFIG_NAME, SAFE_WEIGHTS_NAME):
                if os.path.isfile(os.path.join(checkpoint_folder, name)):
                    shutil.copy(
                        os.path.join(checkpoint_folder, name),
                        os.path.join(self.args.output_dir, name),
                    )
            if self.processing_class is not None:
                self.processing_class.save_pretrained(self.args.output_dir)
            if self.args.save_strategy == SaveStrategy.STEPS:
                message = f"Training in progress, step {self.state.global_step}"
            else:
                message = f"Training in progress, epoch {int(self.state.epoch)}"
            job = self._upload(message, blocking=False)
        except Exception as err:  # noqa: BLE001
            self._push_failed(err)
            return
        from transformers.utils.hub import PushInProgress

        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress([job])
        else:
            self.push_in_progress.jobs.append(job)

    def _finish_current_push(self):
        try:
            super()._finish_current_push()
        except Exception as err:  # noqa: BLE001
            self._push_failed(err)
        finally:
            self.push_in_progress = None

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs,
    ):
        """Push the final model, processor, card and metrics (:data:`PUBLISHED_FILES`).

        Raises:
            PushError: the push failed; every local file is kept.
        """
        if token is not None:
            os.environ["HF_TOKEN"] = token  # as in __init__: never into self.args
        if self.push_error is None:
            try:
                self.callback_handler.on_push_begin(self.args, self.state, self.control)
                if self.hub_model_id is None:
                    self.init_hf_repo(private=private)
                self.save_model(_internal_call=True)
                if not self.is_world_process_zero():
                    return None
                self.create_model_card(**kwargs)
                self._finish_current_push()
                if self.push_error is None:
                    return self._upload(commit_message, blocking, revision)
            except Exception as err:  # noqa: BLE001
                self._push_failed(err)
        raise PushError(
            f"the model was not pushed to {self.args.hub_model_id} ({self.push_error}); it is "
            f"complete in {self.args.output_dir}. Push it with: "
            f"{push_later_hint(self.args.hub_model_id, self.args.output_dir)}"
        )

    def get_eval_dataloader(self, eval_dataset=None):
        # With persistent workers the Trainer keeps one evaluation loader under the key "eval"
        # and hands it back for any later Dataset, so the test split would be scored on the
        # validation photos. Only the validation set is evaluated again and again; any other
        # split gets a loader of its own, not kept.
        if (
            eval_dataset is None
            or isinstance(eval_dataset, str)
            or eval_dataset is self.eval_dataset
        ):
            return super().get_eval_dataloader(eval_dataset)
        return self._get_dataloader(
            dataset=eval_dataset,
            description="Evaluation",
            batch_size=self.args.eval_batch_size,
            sampler_fn=self._get_eval_sampler,
            dataloader_key=None,
        )

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

    def create_model_card(self, *args, **kwargs):
        if self.card_writer is not None and self.is_world_process_zero():
            self.card_writer(self.args.output_dir)
