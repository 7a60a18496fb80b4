"""A progress line in the log when there is no progress bar (output not a terminal)."""

from __future__ import annotations

import logging
import time

from transformers import TrainerCallback

__all__ = ["ProgressLogCallback", "format_duration"]

logger = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """``"1 h 02 min"``, ``"8 min 05 s"`` or ``"42 s"``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


class ProgressLogCallback(TrainerCallback):
    """Every ``logging_steps``: step, share done, steps per second and time left, in one line.

    The rate is measured since the previous line, so it reflects the current speed (evaluation
    pauses are left out of it); time left extrapolates that rate. Active only while the progress
    bar is off, so a terminal shows one or the other.
    """

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._last: tuple[float, int] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = (self._clock(), state.global_step)

    def on_evaluate(self, args, state, control, **kwargs):
        # An evaluation is not training speed: restart the rate after it.
        self._last = (self._clock(), state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not args.disable_tqdm or not state.is_world_process_zero or self._last is None:
            return
        now, step = self._clock(), state.global_step
        then, previous = self._last
        if step <= previous or now <= then:
            return
        rate = (step - previous) / (now - then)
        self._last = (now, step)
        total = state.max_steps
        logger.info(
            "step %d/%d (%.0f%%), %.2f steps/s, about %s left",
            step,
            total,
            100.0 * step / max(total, 1),
            rate,
            format_duration((total - step) / rate),
        )
