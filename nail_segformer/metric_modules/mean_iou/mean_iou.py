"""Mean Intersection-over-Union for semantic segmentation, as a self-contained ``evaluate`` metric.

Drop-in offline replacement for the Hub's ``evaluate.load("mean_iou")``: same arguments, same
output keys, same dataset-level definition. Load it with ``evaluate.load(<path to this file>)``
(``nail_segformer.metrics.load_mean_iou`` does that). It imports only numpy, datasets and
evaluate, because ``evaluate`` copies the script into its modules cache and imports it from there.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Intersection-over-Union (IoU, Jaccard index) of each class, and their mean over classes.

For class c, IoU = |pred == c and ref == c| / |pred == c or ref == c|. Pixel areas are summed over
all images before dividing (dataset-level IoU, not a mean of per-image IoUs). Pixels whose
reference equals `ignore_index` are dropped. A class absent from both predictions and references
has IoU 0/0 = NaN and is left out of the mean (nanmean); the same holds for accuracies.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of 2-D integer arrays): predicted class index per pixel, one map per image.
    references (`list` of 2-D integer arrays): ground-truth class index per pixel, same shapes.
        Values are stored as uint16: map negative padding such as -100 to `ignore_index` first.
    num_labels (`int`): number of classes; class indices are 0 .. num_labels - 1.
    ignore_index (`int`): reference value whose pixels are dropped (e.g. 255).
    nan_to_num (`int` or `float`, *optional*): if given, every NaN in the output is replaced by it.
    label_map (`dict[int, int]`, *optional*): old -> new id mapping applied to the references
        before anything else. All entries are applied at once, so swaps such as {0: 1, 1: 0}
        work (the Hub script applies them one after the other).
    reduce_labels (`bool`, default False): for datasets whose 0 means "unlabelled": reference 0
        becomes 255 and every other reference id is decreased by 1 (255 stays 255). Applied after
        `label_map`. Predictions are never changed.

Returns:
    `dict`:
    - `mean_iou` (`float`): mean of the per-class IoUs, NaN classes skipped.
    - `mean_accuracy` (`float`): mean of the per-class accuracies (recall), NaN classes skipped.
    - `overall_accuracy` (`float`): correctly classified pixels / counted pixels.
    - `per_category_iou` (`ndarray` of shape (num_labels,)): IoU of each class.
    - `per_category_accuracy` (`ndarray` of shape (num_labels,)): accuracy (recall) of each class.

Predictions or references outside 0 .. num_labels - 1 (and not `ignore_index`) belong to no class:
they add to no class area, so such a reference pixel still counts its prediction's area.

Examples:
    >>> import numpy as np
    >>> mean_iou = evaluate.load("path/to/mean_iou.py")
    >>> predicted = [np.array([[1, 1], [0, 0]])]
    >>> ground_truth = [np.array([[1, 0], [0, 255]])]
    >>> results = mean_iou.compute(predictions=predicted, references=ground_truth,
    ...                            num_labels=2, ignore_index=255)
    >>> round(float(results["mean_iou"]), 4)
    0.5
"""

_CITATION = ""


def _remap(reference: np.ndarray, label_map: dict) -> np.ndarray:
    # Look the new ids up from the untouched reference so that chained or swapped entries
    # do not feed into each other.
    remapped = reference.copy()
    for old_id, new_id in label_map.items():
        remapped[reference == int(old_id)] = int(new_id)
    return remapped


def _shift_down(reference: np.ndarray) -> np.ndarray:
    # 0 is "unlabelled" in such datasets: it joins the ignore value 255, which must stay 255.
    shifted = reference - 1
    shifted[(reference == 0) | (reference == 255)] = 255
    return shifted


def _class_areas(prediction, reference, num_labels, ignore_index, label_map, reduce_labels):
    """Per-class pixel counts of one image: (intersection, predicted area, reference area)."""
    prediction = np.asarray(prediction, dtype=np.int64)
    reference = np.asarray(reference, dtype=np.int64)
    if prediction.shape != reference.shape:
        raise ValueError(
            f"prediction shape {prediction.shape} != reference shape {reference.shape}: "
            "resize predictions to the reference size before computing mean_iou"
        )
    if label_map:
        reference = _remap(reference, label_map)
    if reduce_labels:
        reference = _shift_down(reference)

    kept = reference != ignore_index
    prediction = prediction[kept]
    reference = reference[kept]

    pred_in_range = (prediction >= 0) & (prediction < num_labels)
    ref_in_range = (reference >= 0) & (reference < num_labels)
    hits = ref_in_range & (prediction == reference)

    def count(values):
        return np.bincount(values, minlength=num_labels)[:num_labels]

    return count(reference[hits]), count(prediction[pred_in_range]), count(reference[ref_in_range])


def _mean_iou(predictions, references, num_labels, ignore_index, label_map, reduce_labels):
    intersection = np.zeros(num_labels, dtype=np.int64)
    predicted = np.zeros(num_labels, dtype=np.int64)
    labelled = np.zeros(num_labels, dtype=np.int64)
    for prediction, reference in zip(predictions, references, strict=True):
        inter, pred, ref = _class_areas(
            prediction, reference, num_labels, ignore_index, label_map, reduce_labels
        )
        intersection += inter
        predicted += pred
        labelled += ref
    union = predicted + labelled - intersection

    # 0/0 is NaN on purpose: it marks classes with nothing to score, which nanmean skips.
    with np.errstate(divide="ignore", invalid="ignore"):
        per_category_iou = intersection / union
        per_category_accuracy = intersection / labelled
        overall_accuracy = np.float64(intersection.sum()) / np.float64(labelled.sum())
    return {
        "mean_iou": _nanmean(per_category_iou),
        "mean_accuracy": _nanmean(per_category_accuracy),
        "overall_accuracy": overall_accuracy,
        "per_category_iou": per_category_iou,
        "per_category_accuracy": per_category_accuracy,
    }


def _nanmean(values: np.ndarray) -> np.float64:
    defined = values[~np.isnan(values)]
    return np.float64(defined.mean()) if defined.size else np.float64(np.nan)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MeanIoU(evaluate.Metric):
    """Dataset-level per-class and mean IoU for semantic segmentation maps."""

    def _info(self):
        segmentation_map = datasets.Sequence(datasets.Sequence(datasets.Value("uint16")))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # uint16 like the Hub metric: holds class ids and the usual ignore value 255.
            features=datasets.Features(
                {"predictions": segmentation_map, "references": segmentation_map}
            ),
            reference_urls=["https://en.wikipedia.org/wiki/Jaccard_index"],
        )

    def _compute(
        self,
        predictions,
        references,
        num_labels: int,
        ignore_index: int,
        nan_to_num=None,
        label_map=None,
        reduce_labels: bool = False,
    ):
        results = _mean_iou(
            predictions, references, num_labels, ignore_index, label_map, reduce_labels
        )
        if nan_to_num is not None:
            results = {key: np.nan_to_num(value, nan=nan_to_num) for key, value in results.items()}
        return results
