"""The run's settings: :class:`DataArguments`, :class:`ModelArguments`, :class:`NailTrainingArguments`.

Every knob of ``python run_finetune.py`` is a field of one of these dataclasses (the third is
``transformers.TrainingArguments`` with defaults for this job), with its help text, default
and checks; :mod:`nail_segformer.train.parsing` reads them from the command line and a file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments

from nail_segformer.data import ON_BAD_PAIR_CHOICES, parse_nail_values
from nail_segformer.data.transforms import check_probability, check_side
from nail_segformer.labels import ID2LABEL
from nail_segformer.losses import LOSS_NAMES, parse_class_weights
from nail_segformer.metrics.threshold import THRESHOLD_METRICS
from nail_segformer.model import DEFAULT_CHECKPOINT, MODEL_PRESETS, check_model_reference
from nail_segformer.train.optim import NO_DECAY_RULES, check_head_lr_multiplier

__all__ = ["DataArguments", "ModelArguments", "NailTrainingArguments"]


# Hub strategies that push checkpoint folders (optimizer, RNG state, training_args.bin).
_UNPUBLISHABLE_HUB_STRATEGIES = ("checkpoint", "all_checkpoints")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@dataclass
class DataArguments:
    """Where the photos are and how they are split and augmented."""

    data_root: str | None = field(
        default=None,
        metadata={
            "help": "Folder with Images/<category>/ + Masks/<category>/ (or train/ valid/ test/)."
        },
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Train from a Hugging Face dataset instead of --data_root: a Hub id (read "
            "from the HF cache when offline), a folder written by save_to_disk, or a folder of "
            "Parquet files named by split (train.parquet, validation.parquet). Labels are "
            "class ids: 0 background, 1 nail, 255 ignored (--nail_values names other nail "
            "classes, by id or by the name id2label.json gives them)."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "With a Hub --dataset_name: its configuration."}
    )
    dataset_revision: str | None = field(
        default=None,
        metadata={"help": "With a Hub --dataset_name: a branch, tag or commit (online only)."},
    )
    image_column: str | None = field(
        default=None,
        metadata={
            "help": "With --dataset_name: the photo column (default: image or pixel_values)."
        },
    )
    label_column: str | None = field(
        default=None,
        metadata={
            "help": "With --dataset_name: the label column (default: label, annotation, mask or "
            "segmentation_mask)."
        },
    )
    id_column: str | None = field(
        default=None,
        metadata={
            "help": "With --dataset_name: a column (a file name, an id) that messages, "
            "bad_pairs.json and split_manifest.csv add to a row's name (train row 12)."
        },
    )
    category_column: str | None = field(
        default=None,
        metadata={
            "help": "With --dataset_name: the column a carved validation split is stratified by "
            "(default: category, when the set has it)."
        },
    )
    synthetic_samples: int = field(
        default=0,
        metadata={
            "help": "If > 0 and --data_root is missing or empty, first write a synthetic nail "
            "set of this many photos there (the demo uses this)."
        },
    )
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic set."})
    manifest: str | None = field(
        default=None,
        metadata={"help": "A split_manifest.csv from an earlier run: reuse its exact split."},
    )
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Share of each category held out for validation."}
    )
    test_fraction: float = field(
        default=0.1, metadata={"help": "Share of each category held out for the final test."}
    )
    split_seed: int = field(
        default=42, metadata={"help": "Seed of the train/validation/test split."}
    )
    mask_suffix: str | None = field(
        default=None,
        metadata={
            "help": "What mask file names add to their photo's stem (IMG_1_mask.png beside "
            "IMG_1.jpg: _mask). Default: a suffix every unpaired mask shares is found and used."
        },
    )
    on_bad_pair: str = field(
        default="error",
        metadata={
            "help": "What to do with unusable files: 'error' stops listing every problem, "
            "'skip' trains without them and lists them in bad_pairs.json.",
            "choices": ON_BAD_PAIR_CHOICES,
        },
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Square input size (multiple of 32); default: the checkpoint's processor size."
        },
    )
    crop_scale_min: float = field(
        default=0.3, metadata={"help": "Smallest random crop, as a fraction of the photo's area."}
    )
    train_crop_size: int | None = field(
        default=None,
        metadata={
            "help": "Train on square patches of this side (multiple of 32, at most --image_size) "
            "cut from the augmented --image_size input, instead of whole images: more steps "
            "for the same compute. Evaluation always sees whole images."
        },
    )
    nail_crop_probability: float = field(
        default=0.7,
        metadata={"help": "With --train_crop_size: share of patches drawn around a nail."},
    )
    hflip_probability: float = field(default=0.5, metadata={"help": "Horizontal flip probability."})
    rotate_limit: float = field(
        default=15.0, metadata={"help": "Largest random rotation (degrees)."}
    )
    photometric_augmentation: bool = field(
        default=True,
        metadata={
            "help": "Colour jitter, blur and JPEG re-compression of training photos, as phone "
            "photos vary; false keeps crops, flips and rotations only."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training pairs (for quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N validation/test pairs."}
    )
    nail_values: str | None = field(
        default=None,
        metadata={
            "help": "Mask values that mean nail, comma-separated (e.g. '2' for class-index "
            "masks, '#ff0000' for a colour): exactly those are nail, 255 is ignored unless "
            "listed, the rest is background. Default: each mask is read by the convention its "
            "values show (README: Your data; docs/data.md)."
        },
    )
    resize_cache: bool = field(
        default=True,
        metadata={
            "help": "Decode each training photo once, shrunk to the working size, into an Arrow "
            "cache that later runs and every process reuse; false decodes the files every epoch."
        },
    )
    resize_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of the resize cache; default: $HF_DATASETS_CACHE/nail_segformer."
        },
    )
    prune_resize_cache: bool = field(
        default=False,
        metadata={
            "help": "Remove the resize caches built for other photos or settings from the cache "
            "folder (by default they are kept, since another configuration may use them, and "
            "listed in the log with their size)."
        },
    )

    def __post_init__(self):
        if (self.data_root is None) == (self.dataset_name is None):
            raise ValueError(
                "pass one of --data_root (the folder holding Images/ and Masks/) and "
                "--dataset_name (a Hugging Face dataset)"
            )
        if self.dataset_name is not None:
            for name in ("manifest", "mask_suffix"):
                if getattr(self, name) is not None:
                    raise ValueError(f"--{name} reads a --data_root folder, not --dataset_name")
            if self.synthetic_samples:
                raise ValueError("--synthetic_samples writes a --data_root folder")
            for entry in (self.nail_values or "").split(","):
                if entry.strip().startswith("#"):
                    raise ValueError(
                        "with --dataset_name, --nail_values lists class ids or names, not colours"
                    )
        else:
            for name in (
                "image_column",
                "label_column",
                "category_column",
                "id_column",
                "dataset_config_name",
                "dataset_revision",
            ):
                if getattr(self, name) is not None:
                    raise ValueError(f"--{name} reads a --dataset_name dataset, not --data_root")
        if self.synthetic_samples < 0:
            raise ValueError(f"--synthetic_samples must be >= 0, got {self.synthetic_samples}")
        # Choices are checked by argparse (and parsing, for a config file). Sides and
        # probabilities by the functions that use them: called here too, a bad value is a
        # usage error before anything is loaded.
        for name in ("image_size", "train_crop_size"):
            if getattr(self, name) is not None:
                check_side(f"--{name}", getattr(self, name))
        if not 0.0 < self.crop_scale_min <= 1.0:
            raise ValueError(f"--crop_scale_min must be in (0, 1], got {self.crop_scale_min}")
        check_probability("--nail_crop_probability", self.nail_crop_probability)
        check_probability("--hflip_probability", self.hflip_probability)
        if not 0.0 <= self.rotate_limit <= 180.0:
            raise ValueError(f"--rotate_limit must be in [0, 180], got {self.rotate_limit}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        if self.manifest is not None and not Path(self.manifest).is_file():
            raise ValueError(f"--manifest {self.manifest} does not exist")
        if self.dataset_name is None:  # a dataset's class names are looked up as it is read
            parse_nail_values(self.nail_values)  # raises ValueError naming --nail_values


@dataclass
class ModelArguments:
    """Which network to start from and which loss to train it with."""

    model_name_or_path: str = field(
        default=DEFAULT_CHECKPOINT,
        metadata={"help": "SegFormer checkpoint (Hub id or local folder) to fine-tune."},
    )
    from_scratch_preset: str | None = field(
        default=None,
        metadata={
            "help": "Train from random weights at this size instead of fine-tuning.",
            "choices": sorted(MODEL_PRESETS),
        },
    )
    model_revision: str | None = field(
        default=None, metadata={"help": "Branch, tag or commit of a Hub checkpoint."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where Hub downloads are cached."}
    )
    loss: str = field(
        default="ce",
        metadata={"help": "Loss on upsampled logits, ignoring 255.", "choices": LOSS_NAMES},
    )
    class_weights: str = field(
        default="none",
        metadata={
            "help": "'none', 'auto' (median-frequency weights from the training masks), or one "
            "weight per class, comma-separated (e.g. '1,5')."
        },
    )
    dice_weight: float = field(
        default=1.0, metadata={"help": "Weight of the Dice/Lovasz term in dice_ce and lovasz_ce."}
    )

    def __post_init__(self):
        if self.from_scratch_preset is None:
            check_model_reference(
                self.model_name_or_path,
                "--model_name_or_path",
                "check the path, or train from scratch with --from_scratch_preset",
            )
        parse_class_weights(self.class_weights, len(ID2LABEL))
        if self.dice_weight < 0:
            raise ValueError(f"--dice_weight must be >= 0, got {self.dice_weight}")


@dataclass
class NailTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with defaults that suit fine-tuning SegFormer on a small binary set.

    The defaults, in one place: SegFormer's fine-tuning recipe (paper section 4.1, MMSegmentation's
    segformer configs): AdamW at 6e-5, weight decay 0.01 except on normalisation layers, the
    decode head at 10x the learning rate, 5% linear warm-up then linear decay to 0 (polynomial
    decay of power 1); evaluate and save every epoch and keep the checkpoint with the
    best nail IoU; streaming metrics (``batch_eval_metrics``) so evaluation memory does not grow
    with the validation set; ``remove_unused_columns=False`` because the on-the-fly transform
    needs the file columns.
    """

    output_dir: str | None = field(
        default="outputs/nail-segformer", metadata={"help": "Where checkpoints and the model go."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start afresh in a non-empty output_dir: its old content is moved to a "
            "sibling '<output_dir>.bak-<time>' folder, never deleted."
        },
    )
    learning_rate: float = field(default=6e-5, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup_steps: float = field(
        default=0.05, metadata={"help": "Warm-up steps, or a fraction of all steps if < 1."}
    )
    num_train_epochs: float = field(default=50.0, metadata={"help": "Training epochs."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Batch size per device."})
    per_device_eval_batch_size: int = field(
        default=8, metadata={"help": "Eval batch size per device."}
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints kept (the best one is always kept)."}
    )
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Finish with the best checkpoint's weights."}
    )
    metric_for_best_model: str | None = field(
        default="iou_nail", metadata={"help": "Metric that picks the best checkpoint."}
    )
    greater_is_better: bool | None = field(
        default=True, metadata={"help": "Whether a larger metric_for_best_model is better."}
    )
    threshold_metric: str = field(
        default="iou",
        metadata={
            "help": "Nail pixel figure the nail threshold (P(nail) above which a pixel is nail, "
            "saved as nail_threshold in config.json) maximises on the validation split: iou, "
            "dice, or F-beta (f0.5 favours precision, f2 recall).",
            "choices": list(THRESHOLD_METRICS),
        },
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep False: the transform reads the file columns."}
    )
    batch_eval_metrics: bool = field(
        default=True, metadata={"help": "Stream metrics batch by batch (constant memory)."}
    )
    average_tokens_across_devices: bool = field(
        default=False,
        metadata={"help": "Must stay False: token averaging would rescale a segmentation loss."},
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={
            "help": "Keep False: every SegFormer parameter takes part in each forward pass, and "
            "True makes DDP search the graph for unused ones at every step."
        },
    )
    dataloader_pin_memory: bool | None = field(
        default=None,
        metadata={"help": "Pin batches in page-locked memory (default: when a GPU is present)."},
    )
    dataloader_num_workers: int = field(
        default=2, metadata={"help": "Data loading worker processes."}
    )
    head_lr_multiplier: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the decode head as a multiple of --learning_rate "
            "(SegFormer's recipe: 10). Default: 10 when fine-tuning a checkpoint, 1 with "
            "--from_scratch_preset."
        },
    )
    no_weight_decay_for: str | None = field(
        default=None,
        metadata={
            "help": "Parameters without weight decay: 'norm' (normalisation layers and position "
            "blocks: SegFormer's recipe), 'norm_and_bias' (also every bias: the Trainer's rule), "
            "'none'. Default: 'norm' when fine-tuning a checkpoint, 'norm_and_bias' with "
            "--from_scratch_preset.",
            "choices": list(NO_DECAY_RULES),
        },
    )
    dataloader_persistent_workers: bool | None = field(
        default=None,
        metadata={
            "help": "Keep the data-loading workers between epochs (default: on when "
            "--dataloader_num_workers > 0). Off, a small data set restarts them every few steps "
            "and the first batch of each epoch waits for them."
        },
    )
    disable_tqdm: bool | None = field(
        default=None,
        metadata={
            "help": "Hide the progress bar (default: when the output is not a terminal; the log "
            "then gets a progress line with steps per second and time left every logging_steps)."
        },
    )

    def __post_init__(self):
        # Defaults that depend on the machine or on other flags, resolved before
        # TrainingArguments checks combinations. (HfArgumentParser ignores default_factory on
        # bool fields, so None stands for "decide here".)
        if self.dataloader_pin_memory is None:
            self.dataloader_pin_memory = _cuda_available()
        if self.dataloader_persistent_workers is None:
            self.dataloader_persistent_workers = self.dataloader_num_workers > 0  # needs workers
        if self.disable_tqdm is None:
            self.disable_tqdm = not sys.stderr.isatty()
        if self.head_lr_multiplier is not None:
            check_head_lr_multiplier("--head_lr_multiplier", self.head_lr_multiplier)
        if self.average_tokens_across_devices:
            # The Trainer would count label pixels as tokens and multiply our per-batch mean
            # loss by the number of processes.
            raise ValueError(
                "--average_tokens_across_devices true would multiply the segmentation loss by "
                "the number of processes; it only serves token-averaged language-model losses, "
                "keep it false"
            )
        if getattr(self.hub_strategy, "value", self.hub_strategy) in _UNPUBLISHABLE_HUB_STRATEGIES:
            raise ValueError(
                f"--hub_strategy {self.hub_strategy} would publish whole checkpoint folders, "
                "whose training_args.bin holds local paths; use 'every_save' (the default) or "
                "'end', and resume from the local output folder"
            )
        super().__post_init__()
