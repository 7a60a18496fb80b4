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

from typing import TYPE_CHECKING

from nail_segformer._lazy import lazy_exports

# Imported on first use: ``count_nails`` (OpenCV) must not bring torch into a torch-free predict.
_EXPORTS = {
    "BOUNDARY_DILATION_RATIO": "nail_segformer.metrics.boundary",
    "COUNTS_CONFIG": "nail_segformer.metrics.streaming",
    "HEADLINE_METRICS": "nail_segformer.metrics.counts",
    "MEAN_IOU_MODULE": "nail_segformer.metrics.streaming",
    "MIN_NAIL_AREA_FRACTION": "nail_segformer.metrics.nails",
    "SIZE_BOUNDS": "nail_segformer.metrics.nails",
    "SIZE_BUCKETS": "nail_segformer.metrics.nails",
    "ConfusionMatrixAccumulator": "nail_segformer.metrics.confusion",
    "NailMatching": "nail_segformer.metrics.nails",
    "SegmentationCounts": "nail_segformer.metrics.counts",
    "StreamingSegmentationMetrics": "nail_segformer.metrics.streaming",
    "boundary_counts": "nail_segformer.metrics.boundary",
    "boundary_width": "nail_segformer.metrics.boundary",
    "compute_class_scores": "nail_segformer.metrics.confusion",
    "compute_confusion_matrix": "nail_segformer.metrics.confusion",
    "compute_counts": "nail_segformer.metrics.counts",
    "compute_metrics_from_confusion": "nail_segformer.metrics.confusion",
    "compute_metrics_from_counts": "nail_segformer.metrics.counts",
    "count_nails": "nail_segformer.metrics.nails",
    "counts_features": "nail_segformer.metrics.counts",
    "default_min_nail_area": "nail_segformer.metrics.nails",
    "inner_boundary": "nail_segformer.metrics.boundary",
    "label_nails": "nail_segformer.metrics.nails",
    "load_mean_iou": "nail_segformer.metrics.streaming",
    "match_nails": "nail_segformer.metrics.nails",
    "size_buckets": "nail_segformer.metrics.nails",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports
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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
