"""A process-wide memory option that the package's entry points set for their own process.

glibc raises its mmap threshold whenever a large block is freed; from then on evaluation's
per-batch buffers (logits, upsampled maps, batches from data-loader workers) come from a heap that
never shrinks, and peak memory grew by up to ~3 MB per evaluated image (``benchmarks/RESULTS.md``,
"Process options"). A fixed 1 MiB threshold maps and unmaps those buffers instead and keeps
evaluation memory flat. It is set by ``python -m nail_segformer.predict`` and by a training run
on a GPU. A training run on the CPU leaves glibc's default: there the fixed threshold made each
step of the CPU demo about 1.3x slower (page faults for every activation buffer), and CPU runs
evaluate small sets.

``OMP_WAIT_POLICY=PASSIVE``, the other option measured there, is not set: it steadied CPU steps
on cores shared with other jobs, but made the CPU demo about 1.3x slower on an idle machine. On a
busy shared machine, export it yourself before starting Python.

A value the user already set (``MALLOC_MMAP_THRESHOLD_``) is kept, and
``NAIL_SEGFORMER_PROCESS_OPTIONS=0`` turns the option off.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

__all__ = ["SWITCH", "MMAP_THRESHOLD", "configure_cli_process"]

logger = logging.getLogger(__name__)

SWITCH = "NAIL_SEGFORMER_PROCESS_OPTIONS"
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number


def _fix_mmap_threshold(threshold: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False


def configure_cli_process(training_device: str | None = None) -> dict[str, str]:
    """Fix glibc's mmap threshold for this process, as the module docstring explains.

    Args:
        training_device: for a training run, the type of its device (``"cuda"``, ``"cpu"``,
            ...): nothing is set when it is ``"cpu"``. ``None`` for prediction and evaluation.

    Returns:
        What was set, e.g. ``{"M_MMAP_THRESHOLD": "1048576"}``; empty when nothing was.
    """
    if os.environ.get(SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return {}
    if training_device == "cpu" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return {}
    if not _fix_mmap_threshold(MMAP_THRESHOLD):
        return {}
    logger.debug("glibc mmap threshold fixed at %d bytes", MMAP_THRESHOLD)
    return {"M_MMAP_THRESHOLD": str(MMAP_THRESHOLD)}
