"""Photo/mask pairs that fail while training runs: skipped and listed, or the run stops.

Discovery reads headers only, and the resize cache decodes every training pair before step 1,
so a pair fails mid-run only with ``--resize_cache false`` or when a file changes during the
run. Without ``--on_bad_pair skip`` the error itself stops the run, and the pipeline names the
file and how to resume. With it, :class:`SkipBadPairs` wraps the training split: it appends one
JSON line naming the pair to a log in the output folder (data-loader workers are separate
processes, so they share a file opened for appending rather than memory) and serves the next
pair; :func:`merge_skipped` folds the log into ``bad_pairs.json``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from nail_segformer.data.discovery import DataError
from nail_segformer.data.files import PairReadError, relative_to_root

__all__ = ["SkipBadPairs", "add_problems", "merge_skipped"]

logger = logging.getLogger(__name__)

# Consecutive unreadable pairs after which a data folder is taken to be gone, not damaged.
_MAX_CONSECUTIVE_FAILURES = 50
# One record per write call, under the size that POSIX appends keep whole.
_MAX_MESSAGE_CHARS = 1500


class SkipBadPairs:
    """Map-style dataset over a training split that serves the next pair for an unreadable one.

    Args:
        dataset: the split with its transform attached (items are dicts of arrays).
        log_path: the JSON-lines file each skipped pair is appended to.

    Raises (from item access):
        DataError: many pairs in a row cannot be read (the data folder is gone).
    """

    def __init__(self, dataset, log_path: str | os.PathLike):
        self.dataset = dataset
        self.log_path = str(log_path)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        for attempt in range(min(_MAX_CONSECUTIVE_FAILURES, len(self))):
            try:
                return self.dataset[(index + attempt) % len(self)]
            except PairReadError as err:
                logger.warning("skipping an unreadable pair (--on_bad_pair skip): %s", err)
                record = {"image": err.image, "message": str(err)[:_MAX_MESSAGE_CHARS]}
                with open(self.log_path, "a", encoding="utf-8") as log:
                    log.write(json.dumps(record) + "\n")
                last = err
        raise DataError(
            f"{min(_MAX_CONSECUTIVE_FAILURES, len(self))} pairs in a row could not be read (the "
            f"last: {last}); check that the data folder is still there and readable"
        )

    def __getitems__(self, indices: list[int]) -> list[dict]:
        # One transform call for the whole batch (the processor is faster on batches); only a
        # batch with a bad pair falls back to reading its pairs one by one.
        try:
            return self.dataset.__getitems__(list(indices))
        except PairReadError:
            return [self[index] for index in indices]


def add_problems(report_path: str | os.PathLike, problems: list[dict]) -> None:
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


def merge_skipped(
    log_path: str | os.PathLike, report_path: str | os.PathLike, data_root: str | os.PathLike
) -> int:
    """Add the pairs skipped during training to ``report_path`` (``bad_pairs.json``).

    Paths are written relative to ``data_root``, as discovery writes them.

    Returns:
        The number of distinct pairs skipped during training so far (the report is not touched
        when there are none).
    """
    root = Path(data_root).resolve()
    skipped = {}
    try:
        lines = Path(log_path).read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash mid-write names nothing reliably
        if record.get("image"):
            skipped.setdefault(record["image"], record)
    if skipped:
        add_problems(
            report_path,
            [
                {
                    "kind": "skipped during training",
                    "path": relative_to_root(image, root),
                    "message": record["message"].replace(f"{root}{os.sep}", ""),
                    "fix": "fix or replace the file (it was left out of training); then check "
                    "the folder with python -m nail_segformer.data",
                }
                for image, record in sorted(skipped.items())
            ],
        )
    return len(skipped)
