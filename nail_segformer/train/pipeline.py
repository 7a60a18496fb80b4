"""A whole run, phase by phase: parse, check the data, build, train, evaluate, save, push.

:func:`main` raises on every problem; :mod:`nail_segformer.train.cli` maps the expected ones to
exit codes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from transformers import TrainingArguments
from transformers.training_args import ParallelMode

from nail_segformer.data import DataError, PairReadError
from nail_segformer.data.dataset import undecoded
from nail_segformer.data.files import is_disk_full
from nail_segformer.metrics import HEADLINE_METRICS
from nail_segformer.runtime import configure_cli_process
from nail_segformer.train import run_dir
from nail_segformer.train.build import (
    build_model_and_processor,
    build_trainer,
    check_data_root,
    ensure_data,
    load_data,
)
from nail_segformer.train.parsing import ArgumentsError, resolve_args
from nail_segformer.train.progress import ProgressLogCallback
from nail_segformer.train.run_dir import RUN_ARGS_NAME
from nail_segformer.train.stopping import StopOnSignal

__all__ = [
    "setup_logging",
    "effective_batch_size",
    "check_launch",
    "save_run_args",
    "format_metrics_table",
    "bad_pair_stop",
    "evaluate_splits",
    "save_threshold",
    "main",
]

logger = logging.getLogger(__name__)

FINAL_COMMIT_MESSAGE = "nail_segformer: final model"
# How long a run stopped by a signal waits for a checkpoint upload still running: pre-emption
# grace periods are often 30 s (Kubernetes' default), and the checkpoint has been saved by then.
STOP_UPLOAD_WAIT_S = 15.0


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
        ArgumentsError: ``WORLD_SIZE`` > 1 but the Trainer runs one independent process each.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.parallel_mode == ParallelMode.NOT_PARALLEL:
        raise ArgumentsError(
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
    extra = ("nail_threshold", "iou_nail_at_threshold")  # when a threshold was chosen
    keys = [k for k in (*HEADLINE_METRICS, *extra) if any(k in metrics[s] for s in splits)]
    width = max(map(len, ["metric", *keys])) + 2
    lines = [f"{'metric':<{width}}" + "".join(f"{s:>12}" for s in splits)]
    for key in keys:
        lines.append(
            f"{key:<{width}}"
            + "".join(
                f"{metrics[s][key]:>12.4f}" if key in metrics[s] else f"{'-':>12}" for s in splits
            )
        )
    return "\n".join(lines)


def bad_pair_stop(
    err: PairReadError, output_dir: str, step: int, training_files: Iterable[str] = ()
) -> DataError:
    """The error that ends a run stopped by an unreadable pair: the file and how to go on.

    Args:
        err: what the data loader raised (from a worker, its message holds a traceback, whose
            last line is the original error).
        output_dir: the run's folder, for the checkpoint a rerun resumes from.
        step: the optimizer step training stopped at.
        training_files: the training split's photos and masks; ``--on_bad_pair skip`` is
            offered only for those (evaluation photos are never skipped).
    """
    resume = run_dir.how_to_go_on(output_dir)
    reason = re.sub(r"^[\w.]*Error: ", "", str(err).strip().splitlines()[-1])
    skip = ""
    if any(name in reason for name in training_files):
        skip = (
            "; or add --on_bad_pair skip to train without such pairs (they are then listed in "
            "bad_pairs.json)"
        )
    return DataError(
        f"training stopped at step {step} on an unreadable pair: {reason}. To go on, "
        f"{resume}{skip}."
    )


def evaluate_splits(
    trainer, datasets, threshold_metric: str = "iou"
) -> tuple[dict[str, dict[str, float]], float | None]:
    """Evaluate the trained model on the validation and test splits there are, and choose the
    nail threshold on validation.

    The threshold is the one where ``threshold_metric`` (see
    :data:`~nail_segformer.metrics.threshold.THRESHOLD_METRICS`) peaks on the validation split;
    both splits then also report the nail's pixel figures at it (``*_at_threshold``), beside
    the argmax ones. Each split's metrics are saved (``validation_results.json``,
    ``test_results.json``, ``all_results.json``).

    Returns:
        ``(metrics by split, threshold)``; the threshold is None (argmax) when the validation
        split has no nail pixel to choose it on.
    """
    from nail_segformer.metrics.threshold import choose_threshold, metrics_at_threshold

    # Splits by name: with persistent workers the Trainer keeps one loader per name, where a
    # Dataset passed in would get the loader cached for the validation split.
    trainer.eval_dataset = {s: datasets[s] for s in ("validation", "test") if s in datasets}
    hook, metrics, threshold = trainer.compute_metrics, {}, None
    for split in trainer.eval_dataset:
        result = trainer.evaluate(split, metric_key_prefix=split)
        counts = getattr(hook, "last_counts", None)
        if split == "validation" and counts is not None and counts.nail_probability[1].any():
            threshold, value = choose_threshold(counts.nail_probability, threshold_metric)
            at = metrics_at_threshold(counts.nail_probability, threshold)
            result[f"{split}_nail_threshold"] = threshold
            result.update({f"{split}_{key}_at_threshold": v for key, v in at.items()})
            hook.threshold = threshold  # the test split reports its figures at it too
            logger.info(
                "nail threshold %.2f, chosen on validation by nail %s (%.4f there; nail IoU "
                "%.4f, argmax %.4f)",
                threshold,
                threshold_metric,
                value,
                at["iou_nail"],
                result[f"{split}_iou_nail"],
            )
        elif split == "validation":
            logger.info("no nail pixel in the validation split: the nail threshold stays argmax")
        trainer.save_metrics(split, result)
        metrics[split] = {k.removeprefix(f"{split}_"): v for k, v in result.items()}
    if hasattr(hook, "threshold"):
        hook.threshold = None
    return metrics, threshold


def save_threshold(model, output_dir: str, threshold: float | None) -> None:
    """Write ``nail_threshold`` into the saved model's ``config.json`` (null: argmax).

    Always written, so that a model fine-tuned from one that had a threshold does not keep it.
    """
    model.config.nail_threshold = threshold
    model.config.save_pretrained(output_dir)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run a whole fine-tune: parse, check data, build, train, evaluate, save, card, push.

    Returns:
        Final metrics per split (``validation``, and ``test`` when there is a test split).
    """
    data_args, model_args, training_args, derived = resolve_args(argv)
    setup_logging(training_args)
    for note in derived:  # defaults that followed the user's choices
        logger.info("%s", note)
    check_launch(training_args)
    if configure_cli_process(training_args.device.type):
        logger.info("fixed glibc's mmap threshold for flat evaluation memory (see runtime.py)")
    check_data_root(data_args)
    resume_from, lock = run_dir.prepare_output_dir(training_args)
    try:
        return _run(data_args, model_args, training_args, resume_from)
    finally:
        if lock is not None:  # a library caller may start another run in this process
            lock.release()


def _run(data_args, model_args, training_args, resume_from) -> dict[str, dict[str, float]]:
    """:func:`main` once the output folder is locked: load, build, train, evaluate, save, push."""
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
    card = run_dir.CardContext(model_args, training_args, dataset_dict, data_args)
    trainer, datasets = build_trainer(
        model, processor, dataset_dict, data_args, model_args, training_args
    )
    card.optimizer_recipe = trainer.optimizer_recipe
    trainer.add_callback(ProgressLogCallback())
    stopper = StopOnSignal()
    trainer.add_callback(stopper)
    try:
        train_result = trainer.train(resume_from_checkpoint=resume_from)
        # Once more after the last step, for a signal that came later: every process must
        # leave here the same way, or the others would wait in evaluation's collectives.
        stop_signal = stopper.agree(training_args.device)
        if stop_signal is not None:
            # A process that exits makes torchrun stop the others: leave only once every
            # process has written its part of the checkpoint (the Trainer does not wait).
            trainer.accelerator.wait_for_everyone()
    except OSError as err:
        if not is_disk_full(err):
            raise
        raise run_dir.disk_full_stop(training_args.output_dir, trainer.state.global_step) from err
    except PairReadError as err:
        train = undecoded(dataset_dict["train"])
        files = [v["path"] for column in ("image", "label") for v in train[column]]
        step = trainer.state.global_step
        raise bad_pair_stop(err, training_args.output_dir, step, files) from err
    finally:
        stopper.restore()
    if stop_signal is not None:
        if trainer.hub_push is not None and trainer.is_world_process_zero():
            trainer.hub_push.stopped(
                run_dir.find_last_checkpoint(training_args.output_dir), STOP_UPLOAD_WAIT_S
            )
        logger.warning(
            "stopped by %s at step %d after saving a checkpoint; run the same command again to resume",
            signal.Signals(stop_signal).name,
            trainer.state.global_step,
        )
        raise SystemExit(128 + stop_signal)
    trainer.save_model()
    trainer.save_state()
    trainer.save_metrics("train", train_result.metrics)

    metrics, threshold = evaluate_splits(trainer, datasets, training_args.threshold_metric)
    card.metrics, card.threshold = metrics, threshold
    if trainer.is_world_process_zero():
        save_threshold(trainer.model, training_args.output_dir, threshold)
        card.write(training_args.output_dir)
        print(format_metrics_table(metrics))
    if trainer.hub_push is not None and trainer.is_world_process_zero():
        trainer.hub_push.push_final(training_args.output_dir, FINAL_COMMIT_MESSAGE)
    return metrics
