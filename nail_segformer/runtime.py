"""Process-wide options that the package's command-line entry points set at start.

Called by ``python run_finetune.py`` (``python -m nail_segformer.train``) and
``python -m nail_segformer.predict`` before torch is imported; library users are not affected.
Both options were measured in ``benchmarks/RESULTS.md`` ("Process options"):

- ``OMP_WAIT_POLICY=PASSIVE``: torch's OpenMP threads otherwise spin while they wait for one
  another; when data-loader workers or other programs share the cores, a spinning thread holds
  the core its peer needs, and CPU steps slowed down 1.6-3x, erratically. Idle, the difference
  was inside the run-to-run spread. libgomp reads it once, when torch loads it.
- glibc's ``M_MMAP_THRESHOLD`` fixed at 1 MiB: glibc otherwise raises the threshold whenever a
  large block is freed, after which evaluation's per-batch buffers come from a heap that never
  shrinks, and with data-loader workers peak memory grew by ~3 MB per evaluated image.

A value the user already set (``OMP_WAIT_POLICY``, ``MALLOC_MMAP_THRESHOLD_``) is kept, and
``NAIL_SEGFORMER_PROCESS_OPTIONS=0`` turns both off.
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


def configure_cli_process() -> dict[str, str]:
    """Set the options above unless switched off or already set; returns what was set."""
    if os.environ.get(SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return {}
    applied = {}
    if "OMP_WAIT_POLICY" not in os.environ:
        if "torch" in sys.modules:  # too late: libgomp has read its settings
            logger.debug("torch is already imported; OMP_WAIT_POLICY left unset")
        else:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
            applied["OMP_WAIT_POLICY"] = "PASSIVE"
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ and _fix_mmap_threshold(MMAP_THRESHOLD):
        applied["M_MMAP_THRESHOLD"] = str(MMAP_THRESHOLD)
    return applied
