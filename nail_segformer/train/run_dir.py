"""The output folder of a run: refuse, resume or move aside, and the model card's context.

Rules (decided before anything is written):

- missing or empty folder: a new run;
- ``--resume_from_checkpoint DIR``: resume from DIR, which must be a complete checkpoint;
- a folder holding a complete ``checkpoint-N``: resume from the newest complete one (a checkpoint
  left half-written by a crash is skipped with a warning);
- any other non-empty folder: refuse, unless ``--overwrite_output_dir``, which moves the old
  content to a sibling ``<output_dir>.bak-<time>`` folder: nothing is ever deleted;
- a folder another live run holds (its ``_run.lock`` is locked): refuse.

The lock is an operating-system file lock (``filelock``) that is released when the process ends, even
by SIGKILL, so a crashed run never blocks the next one. Its name starts with ``_`` so that the
Trainer's Hub push leaves it out.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from nail_segformer.data.files import DiskFullError, disk_full_message, folder_bytes

__all__ = [
    "LOCK_NAME",
    "RUN_ARGS_NAME",
    "MANIFEST_NAME",
    "BAD_PAIRS_NAME",
    "RunDirError",
    "RunLock",
    "CardContext",
    "hub_base_model",
    "is_complete_checkpoint",
    "find_last_checkpoint",
    "how_to_go_on",
    "add_problems",
    "prepare_output_dir",
]

logger = logging.getLogger(__name__)

LOCK_NAME = "_run.lock"
# The lock holder's pid; like the lock, its leading "_" keeps it out of Hub pushes.
PID_NAME = "_run.pid"
RUN_ARGS_NAME = "run_args.json"
MANIFEST_NAME = "split_manifest.csv"
BAD_PAIRS_NAME = "bad_pairs.json"
# Written by Trainer._save_checkpoint; trainer_state.json comes last, after the weights.
_CHECKPOINT_FILES = ("config.json", "model.safetensors", "trainer_state.json")


class RunDirError(RuntimeError):
    """The output folder cannot be used as asked; the message says what to pass instead."""


def is_complete_checkpoint(path: str | Path) -> bool:
    """True when ``path`` holds every file of a checkpoint and they parse.

    Checks the presence of config, weights and trainer state, that the JSON files parse and
    that the weights file is whole.
    """
    path = Path(path)
    if not all((path / name).is_file() for name in _CHECKPOINT_FILES):
        return False
    try:
        json.loads((path / "trainer_state.json").read_text())
        json.loads((path / "config.json").read_text())
        # safetensors checks on open that the header's offsets cover the file exactly, so a
        # file cut short by a crash fails here.
        with safe_open(path / "model.safetensors", framework="pt") as weights:
            names = list(weights.keys())
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        logger.warning("checkpoint %s is damaged (%s)", path, err)
        return False
    return bool(names)


def disk_full_stop(output_dir: str | Path, step: int) -> DiskFullError:
    """The error that ends a run whose checkpoint did not fit on the disk, after cleaning up.

    The Trainer deletes older checkpoints only after a new one is complete, so the newest
    complete checkpoint is still there; the half-written ones after it are removed (they hold
    nothing a resume can use, and their space is what the next try needs).
    """
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    last = find_last_checkpoint(output_dir)
    last_step = int(last.name.rsplit("-", 1)[1]) if last is not None else -1
    removed = []
    for folder in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        number = folder.name.rsplit("-", 1)[1]
        if number.isdigit() and int(number) > last_step and not is_complete_checkpoint(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    needed = folder_bytes(last) if last else None
    message = disk_full_message(output_dir, needed, "a checkpoint")
    if last is not None:
        message += f"; training stopped at step {step} and resumes from {last.name}"
    else:
        message += f"; training stopped at step {step} before any checkpoint was complete"
    if removed:
        message += f" (the half-written {', '.join(sorted(removed))} was removed)"
    return DiskFullError(message)


def how_to_go_on(output_dir: str | Path, what: str = "the file") -> str:
    """What a run stopped by a bad file should do once the file is fixed: resume from the last
    checkpoint, or, with none yet, start over with ``--overwrite_output_dir``."""
    last = find_last_checkpoint(output_dir)
    if last is not None:
        return f"fix or remove {what}, then run the same command again: it resumes from {last.name}"
    return (
        f"no checkpoint was saved yet: replace {what} with a readable copy, then run again "
        "with --overwrite_output_dir"
    )


def add_problems(report_path: str | Path, problems: list[dict]) -> None:
    """Append ``problems`` (dicts of kind, path, message, fix) to a ``bad_pairs.json`` report.

    Entries already listed (same kind and path) are not repeated; the file is replaced
    atomically, so a crash leaves the old report or the new one.
    """
    report_path = Path(report_path)
    try:
        report = json.loads(report_path.read_text())
    except (OSError, json.JSONDecodeError):
        report = []
    listed = {(entry.get("kind"), entry.get("path")) for entry in report}
    report += [p for p in problems if (p["kind"], p["path"]) not in listed]
    staging = report_path.with_name(f"_{report_path.name}.tmp")
    staging.write_text(json.dumps(report, indent=2))
    os.replace(staging, report_path)


def find_last_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete ``checkpoint-N`` in ``output_dir``; incomplete ones are skipped.

    ``transformers``' own :func:`~transformers.trainer_utils.get_last_checkpoint` finds the
    newest; it does not look inside, so a checkpoint half-written by a crash is passed over
    here, and the next older one is tried.
    """
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    newest = get_last_checkpoint(str(output_dir))
    if newest is None:
        return None
    if is_complete_checkpoint(newest):
        return Path(newest)
    logger.warning("skipping %s: it is incomplete (a crash during save?)", newest)
    older = sorted(
        (int(p.name.split("-")[-1]), p)
        for p in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
        if p.is_dir() and p.name.split("-")[-1].isdigit() and str(p) != newest
    )
    for _, path in reversed(older):
        if is_complete_checkpoint(path):
            return path
        logger.warning("skipping %s: it is incomplete (a crash during save?)", path)
    return None


class RunLock:
    """An exclusive lock on an output folder, held for the life of the process.

    A ``filelock.FileLock`` (an OS lock: ``flock`` on Unix, ``msvcrt`` on Windows) that the
    operating system drops when the process ends, even by SIGKILL. The holder's pid is written
    beside it, for the message another run prints.
    """

    def __init__(self, output_dir: str | Path):
        from filelock import FileLock

        self.path = Path(output_dir) / LOCK_NAME
        self._pid_path = Path(output_dir) / PID_NAME
        self._lock = FileLock(str(self.path), timeout=0)

    def holder(self) -> str | None:
        """The pid recorded by the live run holding the lock, or ``None`` if it is free."""
        if not self.path.exists():
            return None
        probe = RunLock(self.path.parent)
        if probe.acquire(blocking_error=False):
            probe.release()
            return None
        return self._recorded_pid()

    def _recorded_pid(self) -> str:
        try:
            return self._pid_path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def acquire(self, blocking_error: bool = True) -> bool:
        """Take the lock; if another process has it, raise (or return False).

        Raises:
            RunDirError: another live run holds the folder and ``blocking_error`` is set.
        """
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            if blocking_error:
                raise RunDirError(
                    f"output_dir {self.path.parent} is in use by another run (pid "
                    f"{self._recorded_pid()}); wait for it to finish or choose another --output_dir"
                ) from None
            return False
        self._pid_path.write_text(str(os.getpid()))
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()


def _is_empty(output_dir: Path) -> bool:
    return not any(p.name not in (LOCK_NAME, PID_NAME) for p in output_dir.iterdir())


def _move_aside(output_dir: Path) -> Path:
    backup = output_dir.with_name(f"{output_dir.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
    suffix = 1
    while backup.exists():
        backup = backup.with_name(f"{backup.name}-{suffix}")
        suffix += 1
    shutil.move(str(output_dir), str(backup))
    logger.warning(
        "--overwrite_output_dir: moved the previous content of %s to %s", output_dir, backup
    )
    return backup


def prepare_output_dir(training_args) -> tuple[str | None, RunLock | None]:
    """Apply the rules in this module's docstring and lock the folder.

    The main process decides and acts first; the others then see the same folder.

    Returns:
        ``(checkpoint to resume from or None, the lock)``; the lock is ``None`` on processes
        other than the main one. Keep it referenced for the whole run.

    Raises:
        RunDirError: the folder is in use by another run, holds something else and
            ``--overwrite_output_dir`` is not set, or ``--resume_from_checkpoint`` is not a
            complete checkpoint.
    """
    output_dir = Path(training_args.output_dir)
    lock = None
    with training_args.main_process_first(desc="prepare output_dir", local=False):
        if training_args.should_save:
            holder = RunLock(output_dir).holder() if output_dir.is_dir() else None
            if holder is not None:
                raise RunDirError(
                    f"output_dir {output_dir} is in use by another run (pid {holder}); wait for "
                    "it to finish or choose another --output_dir"
                )
        resume_from = _decide(output_dir, training_args)
        output_dir.mkdir(parents=True, exist_ok=True)
        if training_args.should_save:
            lock = RunLock(output_dir)
            lock.acquire()
    return resume_from, lock


def _decide(output_dir: Path, training_args) -> str | None:
    requested = training_args.resume_from_checkpoint
    if requested:
        if not is_complete_checkpoint(requested):
            raise RunDirError(
                f"--resume_from_checkpoint {requested} is not a complete checkpoint folder "
                "(it needs config.json, model.safetensors and trainer_state.json)"
            )
        return str(requested)
    if not output_dir.is_dir() or _is_empty(output_dir):
        return None
    if training_args.overwrite_output_dir:
        if training_args.should_save:
            _move_aside(output_dir)
        return None
    last = find_last_checkpoint(output_dir)
    if last is not None:
        logger.info("resuming from %s", last)
        return str(last)
    raise RunDirError(
        f"output_dir {output_dir} is not empty and holds no complete checkpoint to "
        "resume from. Choose another --output_dir, or pass --overwrite_output_dir to "
        f"start afresh (the current content is then moved to {output_dir.name}.bak-<time>)."
    )


def hub_base_model(model_name_or_path: str) -> str | None:
    """``model_name_or_path`` if it names a Hub repo, ``None`` for a local folder.

    The Hub rejects a card whose ``base_model`` is not a model id, and a local path would
    publish the user's folder layout.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from nail_segformer.model import is_local_path

    if is_local_path(model_name_or_path):
        return None
    try:
        validate_repo_id(model_name_or_path)
    except HFValidationError:
        return None
    return model_name_or_path


@dataclass
class CardContext:
    """What the model card needs, gathered during a run; ``write`` renders it to a folder."""

    model_args: Any
    training_args: Any
    dataset_dict: Any
    data_args: Any = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    optimizer_recipe: Any = None  # optim.OptimizerRecipe, once the Trainer is built
    threshold: float | None = None  # the nail threshold chosen on validation; None: argmax

    def write(self, output_dir: str) -> None:
        from nail_segformer.labels import ID2LABEL
        from nail_segformer.train.card import write_model_card

        ta, ma = self.training_args, self.model_args
        hyperparameters = {
            "learning_rate": ta.learning_rate,
            "train_batch_size": ta.per_device_train_batch_size,
            "gradient_accumulation_steps": ta.gradient_accumulation_steps,
            **(
                {"max_steps": ta.max_steps}
                if ta.max_steps > 0
                else {"num_epochs": ta.num_train_epochs}
            ),
            "warmup_steps": ta.warmup_steps,
            "lr_scheduler_type": str(getattr(ta.lr_scheduler_type, "value", ta.lr_scheduler_type)),
            "weight_decay": ta.weight_decay,
            **(
                {
                    "head_lr_multiplier": self.optimizer_recipe.head_lr_multiplier,
                    "no_weight_decay_for": self.optimizer_recipe.no_decay,
                }
                if self.optimizer_recipe is not None
                else {}
            ),
            "loss": ma.loss,
            "class_weights": ma.class_weights,
            "seed": ta.seed,
        }
        if self.data_args is not None:
            hyperparameters["image_size"] = self.data_args.image_size
            hyperparameters["train_crop_size"] = self.data_args.train_crop_size
        train = self.dataset_dict["train"]
        dataset = getattr(self.data_args, "dataset_name", None)
        write_model_card(
            output_dir,
            model_id=ta.hub_model_id or Path(ta.output_dir).name,
            base_model=None if ma.from_scratch_preset else hub_base_model(ma.model_name_or_path),
            preset=ma.from_scratch_preset,
            id2label=ID2LABEL,
            metrics=self.metrics,
            data_summary={
                "pairs": {split: len(ds) for split, ds in self.dataset_dict.items()},
                "categories": getattr(train.features.get("category"), "names", []),
                "dataset": dataset is not None,
                # A Hub id, never a local folder's path (the card is published).
                "hub_dataset": dataset
                if dataset and not Path(dataset).expanduser().exists()
                else None,
            },
            hyperparameters=hyperparameters,
            threshold=self.threshold,
            threshold_metric=ta.threshold_metric,
        )
