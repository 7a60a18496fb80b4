"""SIGINT/SIGTERM become "save a checkpoint, then stop", agreed by every process of a run.

Under torchrun each process gets its own signal handler, and a cluster's pre-emption notice can
reach the processes at different steps: the one that stops would wait in checkpoint saving while
the others wait in the next step's all-reduce. One tiny all-reduce of the flag at each step's end
makes every process stop at the same step.
"""

from __future__ import annotations

import logging
import signal

import torch
from transformers import TrainerCallback

__all__ = ["StopOnSignal", "agree_on_stop"]

logger = logging.getLogger(__name__)


def agree_on_stop(local_signal: int | None, device: torch.device | str) -> int | None:
    """The stop signal any process received, returned on every process.

    One all-reduce (max) of a single integer over the default process group; without one (a
    single process) it returns ``local_signal``. Every process must call it at the same point.

    Args:
        local_signal: the signal number this process received, or ``None``.
        device: where the collective's tensor lives (the GPU for NCCL, CPU for gloo).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return local_signal
    flag = torch.tensor([local_signal or 0], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


class StopOnSignal(TrainerCallback):
    """Turn SIGINT/SIGTERM into "save a checkpoint, then stop" at the end of the current step.

    Ctrl-C and a cluster's pre-emption notice then cost at most one step of work; rerunning the
    same command resumes from that checkpoint. A second signal interrupts at once.

    With several processes (torchrun, accelerate), each may receive the signal at a different
    step, or only one may receive it. A process that stopped alone would wait in the checkpoint's
    barrier while the others wait in the next step's gradient all-reduce, until the NCCL timeout.
    So at the end of every step the processes agree (:func:`agree_on_stop`, one all-reduce of one
    integer): all stop at the same step, with the same signal in :attr:`stop_signal`.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
        self.received: int | None = None  # the signal this process received
        self.stop_signal: int | None = None  # the signal every process stops with
        self._previous = {}
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        if self.received is not None:
            self.restore()
            raise KeyboardInterrupt
        self.received = signum
        logger.warning(
            "received %s: saving a checkpoint at the end of this step, then stopping "
            "(send it again to stop at once)",
            signal.Signals(signum).name,
        )

    def restore(self) -> None:
        """Put the previous signal handlers back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def agree(self, device: torch.device | str) -> int | None:
        """Agree with the other processes on whether to stop; sets :attr:`stop_signal`.

        Every process must call it at the same point (the callback does, at each step's end).
        """
        agreed = agree_on_stop(self.received, device)
        if agreed is not None and self.received is None and self.stop_signal is None:
            logger.warning(
                "another process received %s: saving a checkpoint at the end of this step, "
                "then stopping",
                signal.Signals(agreed).name,
            )
        self.stop_signal = agreed
        return agreed

    def on_step_end(self, args, state, control, **kwargs):
        if self.agree(args.device) is not None:
            control.should_save = True
            control.should_training_stop = True
        return control
