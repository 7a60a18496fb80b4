"""Segmentation metrics: pixel IoU and friends, per-nail detection and boundary IoU.

One definition serves training's validation, ``predict --masks``, the model card and the
benchmarks. Each evaluated image becomes a few additive counts (:func:`compute_counts`); their
sum gives every metric (:func:`compute_metrics_from_counts`). The Trainer hook
(:class:`StreamingSegmentationMetrics`) streams those counts through the bundled ``evaluate``
module, loaded with :func:`load_mean_iou`, which also stands in for the Hub's ``mean_iou``.

Modules, in the order they build on each other: :mod:`.confusion` (pixel metrics from a
confusion matrix and the rules for 0/0 ratios), :mod:`.nails` (nails as connected components,
matched one to one), :mod:`.boundary` (boundary bands), :mod:`.counts` (per-image counts and
all metrics from their sum), :mod:`.streaming` (the Trainer hook and the evaluate module).
"""

from nail_segformer.metrics.boundary import (
    BOUNDARY_DILATION_RATIO,
    boundary_counts,
    boundary_width,
    inner_boundary,
)
from nail_segformer.metrics.confusion import (
    ConfusionMatrixAccumulator,
    compute_class_scores,
    compute_confusion_matrix,
    compute_metrics_from_confusion,
)
from nail_segformer.metrics.counts import (
    HEADLINE_METRICS,
    SegmentationCounts,
    compute_counts,
    compute_metrics_from_counts,
    counts_features,
)
from nail_segformer.metrics.nails import (
    MIN_NAIL_AREA_FRACTION,
    SIZE_BOUNDS,
    SIZE_BUCKETS,
    NailMatching,
    count_nails,
    default_min_nail_area,
    label_nails,
    match_nails,
    size_buckets,
)
from nail_segformer.metrics.streaming import (
    COUNTS_CONFIG,
    MEAN_IOU_MODULE,
    StreamingSegmentationMetrics,
    load_mean_iou,
)

__all__ = [
    "BOUNDARY_DILATION_RATIO",
    "COUNTS_CONFIG",
    "HEADLINE_METRICS",
    "MEAN_IOU_MODULE",
    "MIN_NAIL_AREA_FRACTION",
    "SIZE_BOUNDS",
    "SIZE_BUCKETS",
    "ConfusionMatrixAccumulator",
    "NailMatching",
    "SegmentationCounts",
    "StreamingSegmentationMetrics",
    "boundary_counts",
    "boundary_width",
    "compute_class_scores",
    "compute_confusion_matrix",
    "compute_counts",
    "compute_metrics_from_confusion",
    "compute_metrics_from_counts",
    "count_nails",
    "counts_features",
    "default_min_nail_area",
    "inner_boundary",
    "label_nails",
    "load_mean_iou",
    "match_nails",
    "size_buckets",
]
