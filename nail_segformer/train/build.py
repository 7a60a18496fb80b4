"""The phases between parsing and training: data, model and processor, loss, Trainer.

Each phase is one function of explicit inputs, called in order by
:func:`nail_segformer.train.pipeline.main`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from nail_segformer.data import (
    DataError,
    Problem,
    load_splits,
    parse_nail_values,
    write_manifest,
)
from nail_segformer.data.dataset import image_source, undecoded
from nail_segformer.data.files import relative_to_root
from nail_segformer.labels import ID2LABEL
from nail_segformer.train.args import DataArguments, ModelArguments
from nail_segformer.train.parsing import ArgumentsError
from nail_segformer.train.run_dir import BAD_PAIRS_NAME, MANIFEST_NAME, add_problems, how_to_go_on

__all__ = [
    "check_data_root",
    "ensure_data",
    "load_data",
    "build_model_and_processor",
    "build_loss",
    "decode_once",
    "optimizer_recipe",
    "build_trainer",
]

logger = logging.getLogger(__name__)


def check_data_root(data_args: DataArguments) -> None:
    """Stop before anything is written when ``data_root`` is missing and nothing will fill it.

    Raises:
        DataError: no folder at ``data_root`` and ``synthetic_samples`` is 0.
    """
    if data_args.data_root is None:  # a --dataset_name is checked as it is read
        return
    root = Path(data_args.data_root).expanduser()
    if data_args.synthetic_samples == 0 and not root.is_dir():
        raise DataError(
            f"--data_root {root} does not exist or is not a folder: point it at the folder "
            "holding Images/ and Masks/, or add --synthetic_samples N to write a synthetic set there"
        )


def ensure_data(data_args: DataArguments) -> None:
    """Write the synthetic set into ``data_root`` when asked to and the folder is empty."""
    if data_args.synthetic_samples == 0:
        return
    root = Path(data_args.data_root)
    if root.is_dir() and any(root.iterdir()):
        return
    from nail_segformer.synthetic import generate_dataset

    logger.info("writing %d synthetic photos to %s", data_args.synthetic_samples, root)
    generate_dataset(root, n=data_args.synthetic_samples, seed=data_args.synthetic_seed)


def load_data(data_args: DataArguments, output_dir: str, resuming: bool, write: bool = True):
    """Discover, check and split the data; write the manifest and any skipped-file report.

    A resumed run reuses the manifest in ``output_dir``, so it trains on the same split. Only
    the process that saves (``write``) writes files. A ``--dataset_name`` set is read with
    :func:`~nail_segformer.data.from_dataset.load_dataset_splits` instead (its own splits, or a
    validation split carved by seed, the same again on resume).

    Returns:
        ``(dataset_dict, pairs)``; ``pairs`` is None for a ``--dataset_name`` set.
    """
    if data_args.dataset_name is not None:
        from nail_segformer.data.from_dataset import load_dataset_splits, nail_ids, read_id2label

        dataset_dict = load_dataset_splits(
            data_args.dataset_name,
            data_args.image_column,
            data_args.label_column,
            data_args.category_column,
            validation_fraction=data_args.validation_fraction,
            seed=data_args.split_seed,
            config_name=data_args.dataset_config_name,
            revision=data_args.dataset_revision,
            id_column=data_args.id_column,
        )
        id2label = read_id2label(data_args.dataset_name, data_args.dataset_revision)
        ids = nail_ids(data_args.dataset_name, data_args.nail_values, id2label)
        if ids != data_args.nail_values:
            logger.info(
                "--nail_values %s: class id(s) %s (id2label.json)", data_args.nail_values, ids
            )
            data_args.nail_values = ids  # what every reader of the flag parses from here on
        if write:  # which row went to which split (a carved validation split is drawn here)
            _write_row_manifest(dataset_dict, Path(output_dir) / MANIFEST_NAME)
        return _limited(dataset_dict, data_args), None
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
        mask_suffix=data_args.mask_suffix,
    )
    if write:
        if scan is not None and scan.problems:
            report = [asdict(p) for p in scan.problems]
            (Path(output_dir) / BAD_PAIRS_NAME).write_text(json.dumps(report, indent=2))
            logger.warning("listed %d skipped file(s) in %s", len(report), BAD_PAIRS_NAME)
        if Path(manifest or "") != saved_manifest:
            write_manifest(pairs, saved_manifest, data_args.data_root)
    return _limited(dataset_dict, data_args), pairs


def _write_row_manifest(dataset_dict, path: Path) -> None:
    """``split_manifest.csv`` of a dataset run: each row's name and the split it trained in."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["row", "split"])
        for split, dataset in dataset_dict.items():
            writer.writerows([row, split] for row in dataset["row"])


def _limited(dataset_dict, data_args: DataArguments):
    """``--max_train_samples`` and ``--max_eval_samples`` applied, and the sizes logged."""
    for split, limit in (("train", data_args.max_train_samples),) + tuple(
        (s, data_args.max_eval_samples) for s in ("validation", "test")
    ):
        if limit is not None and split in dataset_dict and len(dataset_dict[split]) > limit:
            dataset_dict[split] = dataset_dict[split].select(range(limit))
    sizes = {split: len(ds) for split, ds in dataset_dict.items()}
    category = dataset_dict["train"].features.get("category")
    logger.info(
        "data: %s pairs per split, categories %s", sizes, category.names if category else "none"
    )
    return dataset_dict


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


def build_loss(
    model_args: ModelArguments,
    train_dataset,
    nail_values: tuple | None = None,
    class_ids: bool = False,
):
    """The ``SegmentationLoss`` named by ``--loss``, with class weights resolved (``class_ids``:
    the split's labels are a dataset's class ids)."""
    from nail_segformer.losses import SegmentationLoss, parse_class_weights

    weights = parse_class_weights(model_args.class_weights, len(ID2LABEL))
    if weights == "auto":
        weights = _auto_class_weights(train_dataset, nail_values, class_ids)
    if weights is not None:
        logger.info("class weights: %s", dict(zip(ID2LABEL.values(), weights, strict=True)))
    return SegmentationLoss(
        model_args.loss, class_weights=weights, dice_weight=model_args.dice_weight
    )


# Masks read to estimate class frequencies; a sample is enough and keeps start-up short.
_CLASS_WEIGHT_SAMPLE = 256


def _auto_class_weights(
    train_dataset, nail_values: tuple | None = None, class_ids: bool = False
) -> list[float]:
    """Median-frequency weights from the label pixels of up to ``_CLASS_WEIGHT_SAMPLE`` training
    masks: the resize cache's label maps when the split holds them (each mask was decoded once
    already, to build the cache), else the mask files."""
    import numpy as np

    from nail_segformer.data import ImageReadError, load_labels
    from nail_segformer.data.transforms import CACHED_COLUMNS, decode_cached
    from nail_segformer.losses import compute_class_weights

    sample = train_dataset.select(range(min(_CLASS_WEIGHT_SAMPLE, len(train_dataset))))

    def label_maps():  # one at a time: 256 full-size masks would not fit in memory together
        if CACHED_COLUMNS[1] in sample.column_names:
            for row in sample.select_columns([CACHED_COLUMNS[1]]):
                yield decode_cached(None, row[CACHED_COLUMNS[1]])[1]
            return
        names = ["label", "row"] if "row" in sample.column_names else ["label"]
        for row in undecoded(sample).select_columns(names):  # not the photos' bytes
            try:
                label = image_source(row["label"], row.get("row"))
                yield load_labels(label, nail_values, class_ids=class_ids)
            except ImageReadError:
                continue  # broken since the check: training stops on it, naming it

    counts = np.zeros(len(ID2LABEL), dtype=np.int64)
    for labels in label_maps():
        # minlength 256: ignored pixels (255) are counted apart, then left out.
        counts += np.bincount(labels.ravel(), minlength=256)[: len(ID2LABEL)]
    return compute_class_weights(counts.tolist())


def decode_once(dataset_dict, size: int, processor, data_args: DataArguments, training_args):
    """``dataset_dict`` with every pair decoded once, before the first step.

    With ``--resize_cache`` (the default) the training split is then read from the resize cache
    and the validation and test splits from their evaluation caches
    (:mod:`nail_segformer.data.cache`), built by the main process while the others wait;
    without it, each training pair is only checked. Training pairs that cannot be read stop the
    run here, before training, with every one of them listed; with ``--on_bad_pair skip`` they
    are left out and added to ``bad_pairs.json``. Evaluation pairs are never left out (the
    figures would stop being comparable): one that cannot be read stops the run, named. (A file
    that breaks after this stops the run with its name: see
    :func:`~nail_segformer.train.pipeline.bad_pair_stop`.)

    Raises:
        DataError: some pairs cannot be read (training pairs: with ``--on_bad_pair error``).
    """
    from nail_segformer.data.cache import (
        build_eval_cache,
        build_resized_cache,
        check_pairs,
        default_cache_dir,
        report_other_caches,
    )

    nail_values = parse_nail_values(data_args.nail_values)
    class_ids = data_args.dataset_name is not None
    num_proc = training_args.dataloader_num_workers or None
    cache_dir = data_args.resize_cache_dir
    out, unreadable = dict(dataset_dict), {}
    with training_args.main_process_first(desc="resize cache"):
        if not data_args.resize_cache:
            out["train"], unreadable["train"] = check_pairs(
                out["train"], size, nail_values, num_proc, class_ids
            )
        else:
            out["train"], unreadable["train"] = build_resized_cache(
                out["train"], size, nail_values, cache_dir, num_proc, None, class_ids
            )
            for split in ("validation", "test"):
                if split in out:
                    out[split], unreadable[split] = build_eval_cache(
                        out[split], processor, nail_values, cache_dir, num_proc, None, class_ids
                    )
            folder = cache_dir or default_cache_dir()
            report_other_caches(folder, list(out.values()), data_args.prune_resize_cache)
    where = data_args.data_root or data_args.dataset_name
    if data_args.data_root is not None:  # a dataset's rows are named already
        root = Path(data_args.data_root).resolve()
        unreadable = {
            split: [
                {
                    **p,
                    "path": relative_to_root(p["path"], root),
                    "message": p["message"].replace(f"{root}/", ""),
                }
                for p in problems
            ]
            for split, problems in unreadable.items()
        }
    problems = unreadable["train"]
    stops = {
        s: p
        for s, p in unreadable.items()
        if p and (s != "train" or data_args.on_bad_pair == "error")
    }
    if stops:
        advice = how_to_go_on(training_args.output_dir, "the files listed above")
        if "train" in stops:
            advice += (
                "; or pass --on_bad_pair skip to train without the training pairs (they are then "
                "listed in bad_pairs.json in the output directory)"
            )
        raise DataError(
            "\n".join(
                f"{len(p)} {'training' if s == 'train' else s} pair(s) in {where} cannot be "
                f"read:\n{_listed(p)}"
                for s, p in stops.items()
            )
            + f"\nTo go on, {advice}."
            + ("" if set(stops) == {"train"} else " Evaluation pairs are never left out.")
        )
    if problems:
        logger.warning(
            "leaving out %d unreadable training pair(s) (--on_bad_pair skip), listed in %s",
            len(problems),
            BAD_PAIRS_NAME,
        )
        if training_args.should_save:
            add_problems(Path(training_args.output_dir) / BAD_PAIRS_NAME, problems)
    return type(dataset_dict)(out)


def _listed(problems: list[dict]) -> str:
    return "\n".join(f"  - {Problem(**p)}" for p in problems)


# SegFormer's fine-tuning recipe (paper section 4.1; MMSegmentation's segformer configs:
# `lr_mult=10` for the head, `decay_mult=0` for `norm` and `pos_block`). A model trained from
# scratch keeps the plain Trainer's groups: no pretrained encoder to protect from a fast head.
_FINE_TUNING_RECIPE = {"head_lr_multiplier": 10.0, "no_decay": "norm"}
_FROM_SCRATCH_RECIPE = {"head_lr_multiplier": 1.0, "no_decay": "norm_and_bias"}


def optimizer_recipe(model_args: ModelArguments, training_args):
    """The optimizer's parameter groups: the flags, else the defaults for fine-tuning or scratch."""
    from nail_segformer.train.optim import OptimizerRecipe

    defaults = _FROM_SCRATCH_RECIPE if model_args.from_scratch_preset else _FINE_TUNING_RECIPE
    multiplier = training_args.head_lr_multiplier
    no_decay = training_args.no_weight_decay_for
    return OptimizerRecipe(
        head_lr_multiplier=float(
            defaults["head_lr_multiplier"] if multiplier is None else multiplier
        ),
        no_decay=defaults["no_decay"] if no_decay is None else no_decay,
    )


# build_train_transforms' probabilities of colour jitter, blur and JPEG re-compression.
_NO_PHOTOMETRIC = {"color_p": 0.0, "blur_p": 0.0, "compression_p": 0.0}


def build_trainer(model, processor, dataset_dict, data_args, model_args, training_args):
    """A :class:`~nail_segformer.train.trainer.NailTrainer` with transforms, loss and metrics wired."""
    from transformers import default_data_collator

    from nail_segformer.data.transforms import (
        attach_transforms,
        build_train_transforms,
        processor_size,
        working_size,
    )
    from nail_segformer.metrics import StreamingSegmentationMetrics
    from nail_segformer.train.trainer import NailTrainer

    height, width = processor_size(processor)
    crop = data_args.train_crop_size
    try:
        augment = build_train_transforms(
            height,
            width,
            scale=(data_args.crop_scale_min, 1.0),
            hflip=data_args.hflip_probability,
            rotate_limit=data_args.rotate_limit,
            **({} if data_args.photometric_augmentation else _NO_PHOTOMETRIC),
            crop_size=crop,
            nail_crop_p=data_args.nail_crop_probability,
        )
    except ValueError as err:  # the arguments' own checks passed: the patch is too large
        raise ArgumentsError(
            f"--train_crop_size {crop} must not exceed the input size {height}x{width} "
            "(--image_size, else the checkpoint's processor size)"
        ) from err
    # Photos are brought down once to a size where the smallest crop still needs no upscaling;
    # decoding 12 MP every epoch would cost more than the rest of a sample.
    size = working_size(max(height, width), data_args.crop_scale_min)
    nail_values = parse_nail_values(data_args.nail_values)
    dataset_dict = decode_once(dataset_dict, size, processor, data_args, training_args)
    # The pipeline already returns the training size; a second resize would only cost time.
    class_ids = data_args.dataset_name is not None
    datasets = attach_transforms(
        dataset_dict,
        processor,
        augment,
        False,
        working_size=size,
        nail_values=nail_values,
        class_ids=class_ids,
    )
    loss = build_loss(model_args, dataset_dict["train"], nail_values, class_ids)
    return NailTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        processing_class=processor,
        data_collator=default_data_collator,
        compute_loss_func=loss.as_trainer_loss(),
        compute_metrics=StreamingSegmentationMetrics(ID2LABEL),
        optimizer_recipe=optimizer_recipe(model_args, training_args),
    ), datasets
