"""Fine-tune (or train from scratch) a SegFormer on an Images/Masks folder with the ``Trainer``.

Entry point: ``python run_finetune.py [config.yaml|config.json] [--flag value ...]``. Every knob
is a field of :class:`DataArguments`, :class:`ModelArguments` or :class:`NailTrainingArguments`
(``transformers.TrainingArguments`` with defaults for this job); flags override the file.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser, TrainingArguments
from transformers.training_args import ParallelMode

from nail_segformer import _run_dir
from nail_segformer._trainer import StopOnSignal
from nail_segformer.data import ID2LABEL, ON_BAD_PAIR_CHOICES, load_splits, write_manifest
from nail_segformer.losses import CLASS_WEIGHT_METHODS, LOSS_NAMES
from nail_segformer.metrics import HEADLINE_METRICS
from nail_segformer.model import DEFAULT_CHECKPOINT, MODEL_PRESETS

__all__ = [
    "MANIFEST_NAME",
    "RUN_ARGS_NAME",
    "BAD_PAIRS_NAME",
    "format_metrics_table",
    "DataArguments",
    "ModelArguments",
    "NailTrainingArguments",
    "parse_args",
    "main",
]

logger = logging.getLogger(__name__)

RUN_ARGS_NAME = "run_args.json"
MANIFEST_NAME = "split_manifest.csv"
BAD_PAIRS_NAME = "bad_pairs.json"


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
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training pairs (for quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N validation/test pairs."}
    )

    def __post_init__(self):
        if self.data_root is None:
            raise ValueError("--data_root is required: the folder holding Images/ and Masks/")
        if self.synthetic_samples < 0:
            raise ValueError(f"--synthetic_samples must be >= 0, got {self.synthetic_samples}")
        if self.on_bad_pair not in ON_BAD_PAIR_CHOICES:
            raise ValueError(
                f"--on_bad_pair must be one of {ON_BAD_PAIR_CHOICES}, got {self.on_bad_pair!r}"
            )
        if self.image_size is not None and (self.image_size < 32 or self.image_size % 32):
            raise ValueError(
                f"--image_size must be a multiple of 32, at least 32; got {self.image_size}"
            )
        if not 0.0 < self.crop_scale_min <= 1.0:
            raise ValueError(f"--crop_scale_min must be in (0, 1], got {self.crop_scale_min}")
        if self.train_crop_size is not None:
            if self.train_crop_size < 32 or self.train_crop_size % 32:
                raise ValueError(
                    "--train_crop_size must be a multiple of 32, at least 32; got "
                    f"{self.train_crop_size}"
                )
            if self.image_size is not None and self.train_crop_size > self.image_size:
                raise ValueError(
                    f"--train_crop_size ({self.train_crop_size}) must not exceed --image_size "
                    f"({self.image_size})"
                )
        if not 0.0 <= self.nail_crop_probability <= 1.0:
            raise ValueError(
                f"--nail_crop_probability must be in [0, 1], got {self.nail_crop_probability}"
            )
        if not 0.0 <= self.hflip_probability <= 1.0:
            raise ValueError(f"--hflip_probability must be in [0, 1], got {self.hflip_probability}")
        if not 0.0 <= self.rotate_limit <= 180.0:
            raise ValueError(f"--rotate_limit must be in [0, 180], got {self.rotate_limit}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        if self.manifest is not None and not Path(self.manifest).is_file():
            raise ValueError(f"--manifest {self.manifest} does not exist")


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
            "help": "Train from random weights at this size instead of fine-tuning "
            f"({', '.join(sorted(MODEL_PRESETS))}).",
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
        if self.from_scratch_preset is not None and self.from_scratch_preset not in MODEL_PRESETS:
            raise ValueError(
                f"--from_scratch_preset must be one of {sorted(MODEL_PRESETS)}, got {self.from_scratch_preset!r}"
            )
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"--loss must be one of {LOSS_NAMES}, got {self.loss!r}")
        if self.class_weights not in ("none", "auto"):
            try:
                weights = [float(w) for w in self.class_weights.split(",")]
            except ValueError:
                weights = []
            if len(weights) != len(ID2LABEL) or any(w < 0 for w in weights):
                raise ValueError(
                    f"--class_weights must be 'none', 'auto' or {len(ID2LABEL)} non-negative numbers "
                    f"separated by commas, got {self.class_weights!r}"
                )
        if self.dice_weight < 0:
            raise ValueError(f"--dice_weight must be >= 0, got {self.dice_weight}")


@dataclass
class NailTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with defaults that suit fine-tuning SegFormer on a small binary set.

    The defaults, in one place: AdamW at 6e-5 (the SegFormer paper's rate) with 5% linear
    warm-up then linear decay; evaluate and save every epoch and keep the checkpoint with the
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
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep False: the transform reads the file columns."}
    )
    batch_eval_metrics: bool = field(
        default=True, metadata={"help": "Stream metrics batch by batch (constant memory)."}
    )
    average_tokens_across_devices: bool = field(
        default=False,
        metadata={"help": "Keep False: token averaging would rescale a segmentation loss."},
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={
            "help": "Keep False: every SegFormer parameter takes part in each forward pass, and "
            "True makes DDP search the graph for unused ones at every step."
        },
    )
    dataloader_pin_memory: bool = field(
        default_factory=_cuda_available,
        metadata={"help": "Pin batches in page-locked memory (default: when a GPU is present)."},
    )
    dataloader_num_workers: int = field(
        default=2, metadata={"help": "Data loading worker processes."}
    )


def parse_args(argv: list[str] | None = None):
    """Parse ``[config.yaml|config.json] [--flag value ...]`` into the three dataclasses.

    A config file gives defaults for any field of the three dataclasses; command-line flags
    override it.

    Raises:
        ValueError: the config file names an unknown field (the valid names are listed).
    """
    parser = HfArgumentParser((DataArguments, ModelArguments, NailTrainingArguments))
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0].endswith((".json", ".yaml", ".yml")):
        config = _read_config_file(argv.pop(0))
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"unknown setting(s) {unknown} in the config file; valid names are the flags of "
                "`python run_finetune.py --help`"
            )
        parser.set_defaults(**config)
    data_args, model_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    return data_args, model_args, training_args


def _read_config_file(path: str) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith(".json"):
        config = json.loads(text)
    else:
        import yaml

        config = yaml.safe_load(text)
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a mapping of setting names to values")
    return config


def setup_logging(training_args: TrainingArguments) -> None:
    """Configure the root logger and the HF libraries once, at the process's log level.

    With the default ``--log_level passive`` the libraries stay at warnings while this package
    logs its one-off facts (data, model, resume) at info on the main process.
    """
    import datasets
    import transformers

    level = training_args.get_process_log_level()
    ours = (
        logging.INFO if training_args.log_level == "passive" and training_args.should_log else level
    )
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        level=min(level, ours),
    )
    logging.getLogger("nail_segformer").setLevel(ours)
    transformers.utils.logging.set_verbosity(level)
    datasets.utils.logging.set_verbosity(max(level, logging.WARNING))


def effective_batch_size(training_args: TrainingArguments) -> int:
    """Photos per optimizer step: per-device batch x devices x gradient accumulation steps."""
    return (
        training_args.train_batch_size  # per-device batch x GPUs of this process
        * training_args.world_size
        * training_args.gradient_accumulation_steps
    )


def check_launch(training_args: TrainingArguments) -> None:
    """Stop when a launcher started several processes that the Trainer did not join up.

    ``torchrun`` and ``accelerate launch`` set ``WORLD_SIZE``. On a machine without GPUs the
    Trainer joins the processes (over gloo) only with ``--use_cpu true``; otherwise each would
    train alone on all the data and write to the same output folder. Logs the effective batch.

    Raises:
        ValueError: ``WORLD_SIZE`` > 1 but the Trainer runs one independent process each.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.parallel_mode == ParallelMode.NOT_PARALLEL:
        raise ValueError(
            f"{launched} processes were launched (WORLD_SIZE={launched}) but the Trainer does not "
            f"join them (device {training_args.device}); on a machine without GPUs add "
            "--use_cpu true, so that they train together over the gloo backend"
        )
    logger.info(
        "batch: %d per device x %d process(es) x %d accumulation step(s) = %d photos per step",
        training_args.per_device_train_batch_size,
        training_args.world_size,
        training_args.gradient_accumulation_steps,
        effective_batch_size(training_args),
    )


def ensure_data(data_args: DataArguments) -> None:
    """Write the synthetic set into ``data_root`` when asked to and the folder is empty."""
    root = Path(data_args.data_root)
    if data_args.synthetic_samples == 0 or (root.is_dir() and any(root.iterdir())):
        return
    from nail_segformer.synthetic import generate_dataset

    logger.info("writing %d synthetic photos to %s", data_args.synthetic_samples, root)
    generate_dataset(root, n=data_args.synthetic_samples, seed=data_args.synthetic_seed)


def load_data(data_args: DataArguments, output_dir: str, resuming: bool, write: bool = True):
    """Discover, check and split the data; write the manifest and any skipped-file report.

    A resumed run reuses the manifest in ``output_dir``, so it trains on the same split. Only
    the process that saves (``write``) writes files.

    Returns:
        ``(dataset_dict, pairs)``.
    """
    manifest = data_args.manifest
    saved_manifest = Path(output_dir) / MANIFEST_NAME
    if manifest is None and resuming and saved_manifest.is_file():
        manifest = str(saved_manifest)
        logger.info("resuming: reusing the split in %s", manifest)
    dataset_dict, pairs, scan = load_splits(
        data_args.data_root,
        validation_fraction=data_args.validation_fraction,
        test_fraction=data_args.test_fraction,
        seed=data_args.split_seed,
        on_bad_pair=data_args.on_bad_pair,
        manifest=manifest,
    )
    if write:
        if scan is not None and scan.problems:
            report = [asdict(p) for p in scan.problems]
            (Path(output_dir) / BAD_PAIRS_NAME).write_text(json.dumps(report, indent=2))
            logger.warning("listed %d skipped file(s) in %s", len(report), BAD_PAIRS_NAME)
        if Path(manifest or "") != saved_manifest:
            write_manifest(pairs, saved_manifest, data_args.data_root)
    for split, limit in (("train", data_args.max_train_samples),) + tuple(
        (s, data_args.max_eval_samples) for s in ("validation", "test")
    ):
        if limit is not None and split in dataset_dict and len(dataset_dict[split]) > limit:
            dataset_dict[split] = dataset_dict[split].select(range(limit))
    sizes = {split: len(ds) for split, ds in dataset_dict.items()}
    logger.info(
        "data: %s pairs per split, categories %s",
        sizes,
        dataset_dict["train"].features["category"].names,
    )
    return dataset_dict, pairs


def build_model_and_processor(model_args: ModelArguments, data_args: DataArguments, seed: int):
    """The model (fine-tuned checkpoint or from-scratch preset) and its image processor."""
    from nail_segformer.model import build_model, count_parameters, hub_loading_kwargs, load_model
    from nail_segformer.transforms import load_image_processor

    if model_args.from_scratch_preset:
        model = build_model(model_args.from_scratch_preset, ID2LABEL, seed=seed)
        processor = load_image_processor(None, size=data_args.image_size or 512)
        source = f"preset {model_args.from_scratch_preset}"
    else:
        name = model_args.model_name_or_path
        model = load_model(name, ID2LABEL, model_args.model_revision, model_args.cache_dir)
        kwargs = hub_loading_kwargs(
            name, "image processor", model_args.model_revision, model_args.cache_dir
        )
        processor = load_image_processor(
            name,
            size=data_args.image_size,
            revision=model_args.model_revision,
            cache_dir=model_args.cache_dir,
            **kwargs,
        )
        source = name
    logger.info(
        "model: %s, %.2fM parameters, labels %s", source, count_parameters(model) / 1e6, ID2LABEL
    )
    return model, processor


def build_loss(model_args: ModelArguments, train_dataset):
    """The ``SegmentationLoss`` named by ``--loss``, with class weights resolved."""
    from nail_segformer.losses import SegmentationLoss

    weights = None
    if model_args.class_weights == "auto":
        weights = _auto_class_weights(train_dataset)
    elif model_args.class_weights != "none":
        weights = [float(w) for w in model_args.class_weights.split(",")]
    if weights is not None:
        logger.info("class weights: %s", dict(zip(ID2LABEL.values(), weights, strict=True)))
    return SegmentationLoss(
        model_args.loss, class_weights=weights, dice_weight=model_args.dice_weight
    )


# Masks read to estimate class frequencies; a sample is enough and keeps start-up short.
_CLASS_WEIGHT_SAMPLE = 256


def _auto_class_weights(train_dataset) -> list[float]:
    import numpy as np

    from nail_segformer.data import load_labels
    from nail_segformer.losses import compute_class_weights

    paths = train_dataset.cast_column("label", _undecoded())["label"][:_CLASS_WEIGHT_SAMPLE]
    counts = np.zeros(len(ID2LABEL), dtype=np.int64)
    for value in paths:
        counts += np.bincount(load_labels(value["path"]).ravel(), minlength=len(ID2LABEL))
    return compute_class_weights(counts.tolist(), method=CLASS_WEIGHT_METHODS[0])


def _undecoded():
    from datasets import Image

    return Image(decode=False)


def build_trainer(
    model, processor, dataset_dict, data_args, model_args, training_args, card_writer
):
    """A :class:`~nail_segformer._trainer.NailTrainer` with transforms, loss and metrics wired."""
    from transformers import default_data_collator

    from nail_segformer._trainer import NailTrainer
    from nail_segformer.metrics import StreamingSegmentationMetrics
    from nail_segformer.transforms import attach_transforms, build_train_transforms, processor_size

    height, width = processor_size(processor)
    crop = data_args.train_crop_size
    if crop is not None and crop > min(height, width):
        raise ValueError(
            f"--train_crop_size ({crop}) must not exceed the processor's size {height}x{width}"
        )
    augment = build_train_transforms(
        height,
        width,
        scale=(data_args.crop_scale_min, 1.0),
        hflip=data_args.hflip_probability,
        rotate_limit=data_args.rotate_limit,
        crop_size=crop,
        nail_crop_p=data_args.nail_crop_probability,
    )
    # The pipeline already returns the training size; a second resize would only cost time.
    datasets = attach_transforms(dataset_dict, processor, augment, train_resize=False)
    loss = build_loss(model_args, dataset_dict["train"])
    return NailTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        processing_class=processor,
        data_collator=default_data_collator,
        compute_loss_func=loss.as_trainer_loss(),
        compute_metrics=StreamingSegmentationMetrics(ID2LABEL),
        card_writer=card_writer,
    ), datasets


def save_run_args(output_dir: str, data_args, model_args, training_args) -> None:
    """Write the resolved arguments (Hub token redacted) to ``output_dir/run_args.json``."""
    payload = {
        "data": asdict(data_args),
        "model": asdict(model_args),
        "training": training_args.to_dict(),  # replaces every *_token value with a placeholder
    }
    (Path(output_dir) / RUN_ARGS_NAME).write_text(json.dumps(payload, indent=2, default=str))


def format_metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    """A small text table: one row per metric, one column per split."""
    splits = list(metrics)
    keys = [k for k in HEADLINE_METRICS if any(k in metrics[s] for s in splits)]
    lines = [f"{'metric':<18}" + "".join(f"{s:>12}" for s in splits)]
    for key in keys:
        lines.append(
            f"{key:<18}" + "".join(f"{metrics[s].get(key, float('nan')):>12.4f}" for s in splits)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run a whole fine-tune: parse, check data, build, train, evaluate, save, card, push.

    Returns:
        Final metrics per split (``validation``, and ``test`` when there is a test split).
    """
    data_args, model_args, training_args = parse_args(argv)
    setup_logging(training_args)
    check_launch(training_args)
    resume_from, _lock = _run_dir.prepare_output_dir(training_args)  # held until exit
    with training_args.main_process_first(desc="synthetic data", local=False):
        ensure_data(data_args)
    dataset_dict, _ = load_data(
        data_args,
        training_args.output_dir,
        resuming=resume_from is not None,
        write=training_args.should_save,
    )
    if training_args.should_save:
        save_run_args(training_args.output_dir, data_args, model_args, training_args)
    model, processor = build_model_and_processor(model_args, data_args, training_args.seed)
    card = _run_dir.CardContext(model_args, training_args, dataset_dict, data_args)
    trainer, datasets = build_trainer(
        model, processor, dataset_dict, data_args, model_args, training_args, card.write
    )
    stopper = StopOnSignal()
    trainer.add_callback(stopper)
    try:
        train_result = trainer.train(resume_from_checkpoint=resume_from)
    finally:
        stopper.restore()
    if stopper.received is not None:
        logger.warning(
            "stopped by %s at step %d after saving a checkpoint; run the same command again to resume",
            signal.Signals(stopper.received).name,
            trainer.state.global_step,
        )
        raise SystemExit(128 + stopper.received)
    # Without pushing: under --push_to_hub the Trainer pushes on every public save_model(), which
    # would publish a card without metrics; the push at the end carries the evaluated model.
    trainer.save_model(_internal_call=True)
    trainer.save_state()
    trainer.save_metrics("train", train_result.metrics)

    metrics = {}
    for split in ("validation", "test"):
        if split in datasets:
            result = trainer.evaluate(datasets[split], metric_key_prefix=split)
            trainer.save_metrics(split, result)
            metrics[split] = {k.removeprefix(f"{split}_"): v for k, v in result.items()}
    card.metrics = metrics
    if trainer.is_world_process_zero():
        card.write(training_args.output_dir)
        print(format_metrics_table(metrics))
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="nail_segformer: final model")
    return metrics
