"""The phases between parsing and training: data, model and processor, loss, Trainer.

Each phase is one function of explicit inputs, called in order by
:func:`nail_segformer.train.pipeline.main`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from nail_segformer.data import load_splits, write_manifest
from nail_segformer.labels import ID2LABEL
from nail_segformer.losses import CLASS_WEIGHT_METHODS
from nail_segformer.train.args import DataArguments, ModelArguments
from nail_segformer.train.run_dir import BAD_PAIRS_NAME, MANIFEST_NAME

__all__ = [
    "ensure_data",
    "load_data",
    "build_model_and_processor",
    "build_loss",
    "optimizer_recipe",
    "build_trainer",
]

logger = logging.getLogger(__name__)


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
    from nail_segformer.data.transforms import load_image_processor
    from nail_segformer.model import build_model, count_parameters, hub_loading_kwargs, load_model

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


# SegFormer's fine-tuning recipe (paper section 4.1; MMSegmentation's segformer configs:
# `lr_mult=10` for the head, `decay_mult=0` for `norm` and `pos_block`). A model trained from
# scratch keeps the plain Trainer's groups: no pretrained encoder to protect from a fast head.
_FINE_TUNING_RECIPE = {"head_lr_multiplier": 10.0, "no_decay": "norm"}
_FROM_SCRATCH_RECIPE = {"head_lr_multiplier": 1.0, "no_decay": "norm_and_bias"}


def optimizer_recipe(model_args: ModelArguments, training_args):
    """The optimizer's parameter groups: the flags, else the defaults for fine-tuning or scratch."""
    from nail_segformer.train.trainer import OptimizerRecipe

    defaults = _FROM_SCRATCH_RECIPE if model_args.from_scratch_preset else _FINE_TUNING_RECIPE
    multiplier = training_args.head_lr_multiplier
    no_decay = training_args.no_weight_decay_for
    return OptimizerRecipe(
        head_lr_multiplier=float(
            defaults["head_lr_multiplier"] if multiplier is None else multiplier
        ),
        no_decay=defaults["no_decay"] if no_decay is None else no_decay,
    )


def build_trainer(
    model, processor, dataset_dict, data_args, model_args, training_args, card_writer
):
    """A :class:`~nail_segformer.train.trainer.NailTrainer` with transforms, loss and metrics wired."""
    from transformers import default_data_collator

    from nail_segformer.data.transforms import (
        attach_transforms,
        build_train_transforms,
        processor_size,
    )
    from nail_segformer.metrics import StreamingSegmentationMetrics
    from nail_segformer.train.trainer import NailTrainer

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
        optimizer_recipe=optimizer_recipe(model_args, training_args),
    ), datasets
