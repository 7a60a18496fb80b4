"""Make every file a distributed rank writes under one folder traceable to that rank.

Used by tests/test_distributed.py: it puts this folder on ``PYTHONPATH`` and sets
``NAIL_AUDIT_ROOT`` (the run's output folder) and ``NAIL_AUDIT_LOG`` (a folder outside it). Python
imports ``sitecustomize`` at start-up, so every process that torchrun starts (those with ``RANK``
set; the launcher itself has none) then:

- creates files with a rank-specific umask: rank 0 gets 0o022 (files 0644, folders 0755), every
  other rank 0o027 (files 0640, folders 0750). A file's mode then tells which kind of rank created
  it, whatever wrote it: Python, torch.save (C++) or safetensors (Rust).
- appends every Python-level write under the root (open for writing, rename/replace, remove,
  rmdir, rmtree, creating a folder) to ``NAIL_AUDIT_LOG/rank<RANK>.log``, one
  ``<event>\t<path relative to the root>`` line each, via ``sys.addaudithook``. This also catches
  a rank rewriting a file that another rank created, which the mode cannot show.

Without both variables this module does nothing.
"""

import os
import sys

_ROOT = os.environ.get("NAIL_AUDIT_ROOT")
_LOG = os.environ.get("NAIL_AUDIT_LOG")
_RANK = os.environ.get("RANK")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {"os.remove", "os.rmdir", "shutil.rmtree"}


def _under_root(path) -> str | None:
    if isinstance(path, int) or path is None:
        return None
    path = os.path.abspath(os.fsdecode(path))
    if path == _ROOT or path.startswith(_ROOT + os.sep):
        return os.path.relpath(path, _ROOT)
    return None


def _install() -> None:
    os.umask(0o022 if _RANK == "0" else 0o027)
    os.makedirs(_LOG, exist_ok=True)
    # Opened before the hook is installed, and written with os.write, which is not audited.
    log_fd = os.open(os.path.join(_LOG, f"rank{_RANK}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def record(event: str, path) -> None:
        relative = _under_root(path)
        if relative is not None:
            os.write(log_fd, f"{event}\t{relative}\n".encode())

    def hook(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[2], int) and args[2] & _WRITE_FLAGS:
            record(event, args[0])
        elif event == "os.rename":  # also raised by os.replace
            record(event, args[0])
            record(event, args[1])
        elif event == "os.mkdir" and not isinstance(args[0], int) and not os.path.exists(args[0]):
            record(event, args[0])
        elif event in _PATH_EVENTS:
            record(event, args[0])

    sys.addaudithook(hook)


if _ROOT and _LOG and _RANK is not None:
    _ROOT = os.path.abspath(_ROOT)
    _install()
