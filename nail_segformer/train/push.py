"""``--push_to_hub``: checkpoints in the background, then the evaluated model, through ``nail_segformer.hub``.

The Trainer's own pushing stays off (:class:`~nail_segformer.train.trainer.NailTrainer` hands the
Trainer a copy of the arguments without it): it would publish the whole output folder, with the
user's file names and local paths, through private methods that any release may rename.
:class:`HubPush` is a public ``TrainerCallback`` instead:

- ``--hub_strategy every_save``: each checkpoint's model files go up from a staged copy (hard
  links, made in ``on_save`` while the checkpoint exists), in a background thread, one commit
  after the other. The Trainer deletes older checkpoints (``--save_total_limit``) before it calls
  ``on_save``, and may delete this one at the next save while its upload still runs; the staged
  copy is what keeps the upload whole. A save while an upload runs is skipped unless
  ``--hub_always_push``, which queues it.
- A save that ends training early is not pushed as a checkpoint: after a stop by signal the
  process must exit soon, and :meth:`HubPush.stopped` tells the user how to push by hand; after
  early stopping the final push follows at once.
- :meth:`HubPush.push_final` waits for queued uploads, then publishes :data:`PUBLISHED_FILES`.

The uploads run in a daemon thread, not in ``huggingface_hub``'s ``run_as_future`` executor:
Python waits for that executor's thread at exit, so a slow upload would hold a stopped run past
a pre-emption grace period. :meth:`HubPush.wait` bounds the wait instead.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from nail_segformer.hub import PushError, matching_files, push_folder, push_later_hint

__all__ = ["CHECKPOINT_FILES", "PUBLISHED_FILES", "HubPush"]

logger = logging.getLogger(__name__)

# What a push publishes, relative to the output folder: what loads the model, then the card and
# the metrics. Everything else stays local: run_args.json and training_args.bin hold local
# paths, split_manifest.csv and bad_pairs.json the user's file names, trainer_state.json the
# best checkpoint's local path, checkpoint-*/ the optimizer and RNG state.
CHECKPOINT_FILES = (
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*-of-*.safetensors",
    "preprocessor_config.json",
)
PUBLISHED_FILES = (
    *CHECKPOINT_FILES,
    "README.md",
    "all_results.json",
    "train_results.json",
    "validation_results.json",
    "test_results.json",
)

# Staged copies of checkpoints being uploaded; the leading "_" keeps them out of every push.
_STAGING_PREFIX = "_hub_staging-"


def _stage(checkpoint: Path, output_dir: Path) -> Path:
    """Hard links (copies where the file system has none) of a checkpoint's model files."""
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=output_dir))
    for name in matching_files(checkpoint, CHECKPOINT_FILES):
        try:
            os.link(checkpoint / name, staging / name)
        except OSError:
            shutil.copy2(checkpoint / name, staging / name)
    return staging


class HubPush(TrainerCallback):
    """Publishes a run on the Hub: checkpoints as they are saved, then the final model.

    Only the main process pushes; the others never touch the Hub.

    Args:
        repo_id: ``user/name``, or a bare name for the token owner's namespace.
        every_save: push each checkpoint (``--hub_strategy every_save``); else only the end.
        always_push: queue a checkpoint push behind one still running instead of skipping it.
        private: ``--hub_private_repo`` (``None``: the Hub's default).
        revision: ``--hub_revision``, the branch to push to.
        token: ``--hub_token``; default the token ``huggingface_hub`` finds.
        push: the function that publishes a folder (:func:`nail_segformer.hub.push_folder`).
    """

    def __init__(
        self,
        repo_id: str,
        *,
        every_save: bool = True,
        always_push: bool = False,
        private: bool | None = None,
        revision: str | None = None,
        token: str | None = None,
        push: Callable[..., str] = push_folder,
    ):
        self.repo_id = repo_id
        self.every_save = every_save
        self.always_push = always_push
        self.private = private
        self.revision = revision
        self._token = token
        self._push = push
        self.error: PushError | None = None  # the first failed push; later ones are skipped
        self._jobs: queue.Queue = queue.Queue()
        self._pending: list[Future] = []
        self._worker: threading.Thread | None = None
        self._output_dir: Path | None = None  # the run's folder, known from the first save

    @classmethod
    def from_training_args(cls, args) -> HubPush:
        """The push the ``--push_to_hub`` / ``--hub_*`` flags ask for."""
        from transformers.trainer_utils import HubStrategy

        # As the Trainer names it: the output folder's name, in the token owner's namespace.
        repo_id = args.hub_model_id or Path(args.output_dir).absolute().name
        return cls(
            repo_id,
            every_save=args.hub_strategy == HubStrategy.EVERY_SAVE,
            always_push=args.hub_always_push,
            private=args.hub_private_repo,
            revision=args.hub_revision,
            token=args.hub_token,
        )

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}({self.repo_id!r}, every_save={self.every_save})"

    # ------------------------------------------------------------------ background uploads

    def _run_jobs(self) -> None:
        while True:
            future, job, cleanup = self._jobs.get()
            result = error = None
            try:
                result = job()
            except BaseException as err:  # noqa: BLE001 - handed to whoever waits
                error = err
            finally:
                cleanup()
            # The failure is recorded before anyone waiting on the future wakes up.
            if error is None:
                future.set_result(result)
            else:
                self._note_failure(error)
                future.set_exception(error)

    def _submit(self, job: Callable[[], str], cleanup: Callable[[], None]) -> Future:
        if self._worker is None:
            self._worker = threading.Thread(target=self._run_jobs, name="hub-push", daemon=True)
            self._worker.start()
        future: Future = Future()
        future.set_running_or_notify_cancel()  # never cancelled: a queued push runs or fails
        self._pending.append(future)
        self._jobs.put((future, job, cleanup))
        return future

    def _note_failure(self, err: BaseException) -> None:
        if self.error is not None:
            return
        if not isinstance(err, PushError):  # a bug or a file error in staging
            err = PushError(f"pushing to the Hub failed ({type(err).__name__}: {err})")
        self.error = err
        logger.error(
            "%s. Training goes on, without further pushes; every file stays in %s. After the "
            "run, push the final model with: %s",
            err,
            self._output_dir,
            self.hint(self._output_dir),
        )

    def busy(self) -> bool:
        """Whether an upload is queued or running."""
        self._pending = [f for f in self._pending if not f.done()]
        return bool(self._pending)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for queued uploads, at most ``timeout`` seconds in all; ``True`` when none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for future in list(self._pending):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                future.exception(timeout=left)
            except FutureTimeout:
                return False
        return not self.busy()

    # ------------------------------------------------------------------ Trainer events

    def on_save(self, args, state, control, **kwargs):
        if not (self.every_save and state.is_world_process_zero) or self.error is not None:
            return
        if control.should_training_stop and state.global_step < state.max_steps:
            return  # a stop by signal or early stopping (see the module docstring)
        if self.busy() and not self.always_push:
            logger.info(
                "checkpoint %d is not pushed: the previous push is still uploading "
                "(--hub_always_push true queues it)",
                state.global_step,
            )
            return
        output_dir = Path(args.output_dir)
        checkpoint = output_dir / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if self._output_dir is None:
            # Left by a run that was killed mid-upload (the run lock keeps out a live one).
            for stale in output_dir.glob(f"{_STAGING_PREFIX}*"):
                shutil.rmtree(stale, ignore_errors=True)
        self._output_dir = output_dir
        staging = _stage(checkpoint, output_dir)
        if args.save_strategy == "steps":
            message = f"Training in progress, step {state.global_step}"
        else:
            message = f"Training in progress, epoch {int(state.epoch or 0)}"
        self._submit(
            lambda: self._push_staged(staging, checkpoint.name, message),
            lambda: shutil.rmtree(staging, ignore_errors=True),
        )

    def _publish(self, folder: str | os.PathLike, patterns: tuple[str, ...], message: str) -> str:
        return self._push(
            folder,
            self.repo_id,
            patterns,
            commit_message=message,
            private=self.private,
            revision=self.revision,
            token=self._token,
        )

    def _push_staged(self, staging: Path, checkpoint: str, message: str) -> str:
        try:
            return self._publish(staging, CHECKPOINT_FILES, message)
        except PushError as err:  # name the checkpoint, not the staged copy that goes away
            raise PushError(
                f"pushing to the Hub failed ({checkpoint} to {self.repo_id}: {err.reason})",
                err.reason,
            ) from err

    # ------------------------------------------------------------------ the end of a run

    def push_final(self, output_dir: str | os.PathLike, commit_message: str) -> str:
        """Wait for the checkpoint uploads, then publish the final model, card and metrics.

        Returns:
            The repo's id, namespace included.

        Raises:
            PushError: this push or an earlier one failed; every local file is kept, and the
                message holds the ``hf upload`` command that publishes the same files.
        """
        self.wait()  # a checkpoint's commit landing after the final one would replace the model
        if self.error is None:
            try:
                return self._publish(output_dir, PUBLISHED_FILES, commit_message)
            except PushError as err:
                self.error = err
        raise PushError(
            f"pushing to the Hub failed: the model was not pushed to {self.repo_id} "
            f"({self.error.reason}); it is complete in {output_dir}. Push it with: "
            f"{self.hint(output_dir)}",
            self.error.reason,
        )

    def hint(self, output_dir: str | os.PathLike) -> str:
        """The command that pushes a finished run folder by hand (the files a push publishes)."""
        return push_later_hint(self.repo_id, output_dir, PUBLISHED_FILES)

    def stopped(self, checkpoint: str | os.PathLike | None, timeout: float) -> None:
        """Report, when a signal stops the run, what reached the Hub and how to push the rest.

        The stopping save is not pushed (a rerun resumes and pushes as it goes). Uploads still
        running get at most ``timeout`` seconds, so that the process exits inside a pre-emption
        grace period; one still running then is abandoned with its daemon thread.

        Args:
            checkpoint: the checkpoint the stop saved (``None`` when none was saved).
            timeout: seconds to wait for running uploads.
        """
        if self.busy() and not self.wait(timeout):
            logger.warning(
                "a checkpoint upload was still running %.0f s after the stop and is abandoned",
                timeout,
            )
        elif self.error is not None:
            logger.warning("a checkpoint push failed before the stop: %s", self.error.reason)
        if checkpoint is not None:
            logger.warning(
                "%s is not pushed; a rerun resumes from it and pushes as it goes. To publish "
                "it now: %s",
                Path(checkpoint).name,
                push_later_hint(self.repo_id, checkpoint, CHECKPOINT_FILES),
            )
