"""Evaluation of predicted masks against ground truth for ``predict --masks``.

Masks pair with photos by category folder and file stem, case-insensitively and whatever the
extension, exactly as in :mod:`nail_segformer.data`, and are read with the same loader (any mask
mode to {0, 1}). Scoring uses the training metric's code: each photo becomes
:func:`nail_segformer.metrics.compute_counts` (pixels, nails with the predictor's minimum nail
area, boundary bands), its own figures come from
:func:`~nail_segformer.metrics.compute_metrics_from_counts`, and the data-set figures from the
bundled ``mean_iou`` evaluate module fed every photo's counts, as in training. The comparison is
at the photo's own size, where training's validation compares at the processor size; the two
agree exactly on photos already at the processor size.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from nail_segformer.data import (
    ID2LABEL,
    IGNORE_INDEX,
    NAIL,
    ROOT_CATEGORY,
    list_files_by_key,
    load_labels,
)
from nail_segformer.metrics import (
    COUNTS_CONFIG,
    HEADLINE_METRICS,
    SegmentationCounts,
    compute_counts,
    compute_metrics_from_counts,
    load_mean_iou,
)

__all__ = ["PER_PHOTO_FIELDS", "MaskLookup", "Evaluation", "format_report"]

logger = logging.getLogger(__name__)


class MaskLookup:
    """Finds the mask of a photo under a masks folder (``Masks/<category>/<stem>.*``).

    Raises:
        ValueError: ``masks_dir`` is not a folder.
    """

    def __init__(self, masks_dir: str | os.PathLike):
        self.masks_dir = Path(masks_dir).expanduser()
        if not self.masks_dir.is_dir():
            raise ValueError(f"--masks {self.masks_dir} is not a folder")
        self._files = list_files_by_key(self.masks_dir)

    def find(self, category: str, stem: str) -> Path:
        """The mask file of a photo.

        Raises:
            LookupError: no mask, or several masks share the stem; the message says what to fix.
        """
        files = self._files.get((category.lower(), stem.lower()), [])
        folder = self.masks_dir if category == ROOT_CATEGORY else self.masks_dir / category
        if not files:
            raise LookupError(
                f"no mask for this photo: expected {folder / stem}.png (masks share the photo's "
                "category folder and file stem; see nail_segformer.data)"
            )
        if len(files) > 1:
            raise LookupError(
                f"{len(files)} masks share the stem: {', '.join(map(str, files))}; keep one"
            )
        return files[0]


# Each evaluated photo's figures, as metrics.json lists them; the first four also go into its
# line of predictions.jsonl/csv (outputs.RECORD_FIELDS).
PER_PHOTO_FIELDS = (
    "iou_nail",
    "boundary_iou_nail",
    "true_nails",
    "matched_nails",
    "true_nail_pixels",
    "predicted_nail_pixels",
)


class Evaluation:
    """Counts of evaluated photos: each photo's figures, and the data-set metrics of them all.

    Args:
        min_nail_area: smallest nail in pixels, the predictor's (None: 0.01% of each photo).
    """

    def __init__(self, min_nail_area: int | None = None):
        self.min_nail_area = min_nail_area
        self.per_image: list[dict] = []  # file and PER_PHOTO_FIELDS
        self._counts: list[SegmentationCounts] = []  # a few integers per photo

    def add(self, name: str, mask: np.ndarray, mask_path: str | os.PathLike) -> dict:
        """Count one photo's predicted {0, 1} mask against its mask file.

        Returns:
            The photo's :data:`PER_PHOTO_FIELDS`.

        Raises:
            ImageReadError: the mask cannot be decoded.
            ValueError: the mask's size differs from the photo's.
        """
        labels = load_labels(mask_path)
        if labels.shape != mask.shape:
            raise ValueError(
                f"mask {mask_path} is {labels.shape[1]}x{labels.shape[0]} but the photo is "
                f"{mask.shape[1]}x{mask.shape[0]} (after EXIF rotation); re-export the mask at "
                "the photo's size"
            )
        counts = compute_counts(
            mask, labels, len(ID2LABEL), IGNORE_INDEX, NAIL, min_nail_area=self.min_nail_area
        )
        metrics = compute_metrics_from_counts(counts, ID2LABEL)
        figures = {
            "iou_nail": metrics["iou_nail"],
            "boundary_iou_nail": metrics["boundary_iou_nail"],
            "true_nails": int(counts.true_nails.sum()),
            "matched_nails": int(counts.matched_nails.sum()),
            "true_nail_pixels": int(counts.confusion[NAIL].sum()),
            "predicted_nail_pixels": int(counts.confusion[:, NAIL].sum()),
        }
        self._counts.append(counts)
        self.per_image.append({"file": name, **figures})
        return figures

    def metrics(self) -> dict[str, float]:
        """Data-set metrics (the keys of ``compute_metrics_from_counts``), via the evaluate module.

        With no photo evaluated every value is 0.0 (and a warning is logged), as in training.
        """
        if not self._counts:
            return compute_metrics_from_counts(SegmentationCounts.zeros(len(ID2LABEL)), ID2LABEL)
        module = load_mean_iou(COUNTS_CONFIG, keep_in_memory=True)
        rows = [counts.to_row() for counts in self._counts]
        module.add_batch(**{key: [row[key] for row in rows] for key in rows[0]})
        return module.compute(id2label=ID2LABEL, positive_label=NAIL)

    def per_image_records(self) -> list[dict]:
        """One dict per evaluated photo: file and :data:`PER_PHOTO_FIELDS`."""
        return [dict(record) for record in self.per_image]

    def worst(self, n: int, key: str = "iou_nail") -> list[dict]:
        """The ``n`` photos with the lowest ``key`` (a per-photo field; ties by name)."""
        return sorted(self.per_image, key=lambda record: (record[key], record["file"]))[:n]


def format_report(evaluation: Evaluation, worst: int, metrics: dict[str, float]) -> str:
    """The metrics table, then the ``worst`` photos by nail IoU and by boundary IoU."""
    width = max(map(len, HEADLINE_METRICS)) + 2
    lines = [f"evaluated {len(evaluation.per_image)} photo(s)", f"{'metric':<{width}}{'value':>10}"]
    lines += [f"{key:<{width}}{metrics[key]:>10.4f}" for key in HEADLINE_METRICS]
    for key, title in (("iou_nail", "nail IoU"), ("boundary_iou_nail", "boundary IoU")):
        rows = evaluation.worst(worst, key)
        if not rows:
            continue
        lines += [
            "",
            f"worst {len(rows)} by {title}:",
            f"{'iou_nail':>10}{'boundary':>10}{'nails':>8}{'found':>7}  file",
        ]
        lines += [
            f"{r['iou_nail']:>10.4f}{r['boundary_iou_nail']:>10.4f}{r['true_nails']:>8}"
            f"{r['matched_nails']:>7}  {r['file']}"
            for r in rows
        ]
    return "\n".join(lines)
