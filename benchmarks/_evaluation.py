"""Sections 3 and 4: evaluation memory and time, and the mean-IoU computation itself.

Section 3, memory: each evaluation runs in its own process, so that ``ru_maxrss`` (peak
resident set size) belongs to that evaluation alone:

- ``streaming``: the package's way, ``trainer.evaluate()`` with ``batch_eval_metrics=True`` and
  :class:`nail_segformer.metrics.StreamingSegmentationMetrics` (a confusion matrix per batch);
- ``usual``: ``batch_eval_metrics=False`` with the Hugging Face semantic-segmentation example's
  ``compute_metrics`` (:class:`ExampleComputeMetrics`): the Trainer keeps every logit and label,
  then they are upsampled and argmaxed at once and given to ``evaluate``'s ``mean_iou`` (the
  package's offline copy, ``load_mean_iou()``).

Section 3, time: :func:`job_eval_time` alternates ``evaluate()`` with bare forward passes.

Section 4 times :func:`nail_segformer.metrics.compute_confusion_matrix` (through the streaming
accumulator) against a plain numpy per-class intersection/union over the same maps.
"""

from __future__ import annotations

import time

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SEED, child_main, seed_everything


class ExampleComputeMetrics:
    """``compute_metrics`` of transformers' ``run_semantic_segmentation.py``, with our labels.

    Upsamples all logits to the label size at once, argmaxes, and hands the maps to
    ``evaluate``'s ``mean_iou`` (ignore index 255 here instead of the example's 0).
    """

    def __init__(self, num_labels: int, ignore_index: int):
        from nail_segformer.metrics import load_mean_iou

        self.metric = load_mean_iou()
        self.num_labels = num_labels
        self.ignore_index = ignore_index

    def __call__(self, eval_pred) -> dict[str, float]:
        import torch
        from torch import nn

        with torch.no_grad():
            logits, labels = eval_pred
            logits_tensor = torch.from_numpy(logits)
            logits_tensor = nn.functional.interpolate(
                logits_tensor, size=labels.shape[-2:], mode="bilinear", align_corners=False
            ).argmax(dim=1)
            pred_labels = logits_tensor.detach().cpu().numpy()
            metrics = self.metric.compute(
                predictions=pred_labels,
                references=labels,
                num_labels=self.num_labels,
                ignore_index=self.ignore_index,
                reduce_labels=False,
            )
        per_category_iou = metrics.pop("per_category_iou").tolist()
        metrics.pop("per_category_accuracy")
        metrics.update({f"iou_{i}": v for i, v in enumerate(per_category_iou)})
        return metrics


def _eval_dataset_dict(data_root: str, n: int):
    """The first ``n`` photos of ``data_root`` as both splits (train is only needed to build)."""
    from datasets import Dataset, DatasetDict, Features, Image

    photos = sorted((__import__("pathlib").Path(data_root) / "Images").rglob("*.jpg"))[:n]
    if len(photos) < n:
        raise ValueError(f"{data_root} holds {len(photos)} photos, {n} are needed")
    masks = [str(p).replace("/Images/", "/Masks/").rsplit(".", 1)[0] + ".png" for p in photos]
    features = Features({"image": Image(), "label": Image()})
    split = Dataset.from_dict(
        {"image": [str(p) for p in photos], "label": masks}, features=features
    )
    return DatasetDict({"train": split, "validation": split})


def _eval_trainer(
    data_root: str,
    out_dir: str,
    preset: str,
    size: int,
    n: int,
    batch: int,
    workers: int,
    batch_eval_metrics: bool,
):
    from nail_segformer.train import parse_args
    from nail_segformer.train.build import build_model_and_processor, build_trainer

    argv = [
        "--data_root", data_root, "--output_dir", out_dir,
        "--from_scratch_preset", preset, "--image_size", str(size),
        "--per_device_eval_batch_size", str(batch), "--dataloader_num_workers", str(workers),
        "--batch_eval_metrics", str(batch_eval_metrics).lower(),
        "--use_cpu", "true", "--seed", str(SEED), "--disable_tqdm", "true",
    ]  # fmt: skip
    data_args, model_args, training_args = parse_args(argv)
    model, processor = build_model_and_processor(model_args, data_args, training_args.seed)
    trainer, datasets = build_trainer(
        model, processor, _eval_dataset_dict(data_root, n), data_args, model_args, training_args
    )  # fmt: skip
    model.eval()
    return trainer, model, datasets["validation"]


def job_eval_memory(
    data_root: str,
    out_dir: str,
    mode: str,
    preset: str,
    size: int,
    n: int,
    batch: int,
    workers: int,
) -> dict:
    """One ``trainer.evaluate()`` of ``n`` images in this fresh process: peak RSS and seconds."""
    import resource

    import psutil
    import torch

    from nail_segformer.data import ID2LABEL, IGNORE_INDEX

    if mode not in ("streaming", "usual"):
        raise ValueError(f"mode must be 'streaming' or 'usual', got {mode!r}")
    seed_everything()
    trainer, model, validation = _eval_trainer(
        data_root, out_dir, preset, size, n, batch, workers, batch_eval_metrics=mode == "streaming"
    )
    if mode == "usual":
        trainer.compute_metrics = ExampleComputeMetrics(len(ID2LABEL), IGNORE_INDEX)
    with torch.inference_mode():  # first-call allocations, alike for both modes
        model(pixel_values=torch.from_numpy(validation[0]["pixel_values"])[None])
    rss_before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    metrics = trainer.evaluate()
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_before": rss_before,
        "mean_iou": metrics.get("eval_mean_iou"),
        "n": n,
    }


def job_eval_time(
    data_root: str,
    out_dir: str,
    preset: str,
    size: int,
    n: int,
    batch: int,
    workers: int,
    rounds: int,
) -> dict:
    """``trainer.evaluate()`` (streaming) against bare forward passes, in alternating rounds.

    ``bare_loader`` runs the model over the Trainer's own evaluation DataLoader (same loading,
    same workers) and nothing else; ``bare_tensors`` runs it over the same images preprocessed
    beforehand. Each keeps its fastest round.
    """
    import torch

    seed_everything()
    trainer, model, validation = _eval_trainer(
        data_root, out_dir, preset, size, n, batch, workers, batch_eval_metrics=True
    )
    inputs = [
        torch.stack([torch.from_numpy(v) for v in validation[i : i + batch]["pixel_values"]])
        for i in range(0, n, batch)
    ]

    def evaluate():
        trainer.evaluate()

    def bare_loader():
        with torch.inference_mode():
            for batch_inputs in trainer.get_eval_dataloader():
                model(pixel_values=batch_inputs["pixel_values"])

    def bare_tensors():
        with torch.inference_mode():
            for pixel_values in inputs:
                model(pixel_values=pixel_values)

    bare_tensors()  # first-call allocations
    best = {}
    for _ in range(rounds):
        for name, run in (("evaluate", evaluate), ("bare_loader", bare_loader),
                          ("bare_tensors", bare_tensors)):  # fmt: skip
            start = time.perf_counter()
            run()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    return {**best, "n": n, "torch_threads": torch.get_num_threads()}


def job_malloc_ab(
    data_root: str,
    out_dir: str,
    preset: str,
    size: int,
    n: int,
    batch: int,
    workers: int,
    train_preset: str,
    train_steps: int,
    rounds: int,
) -> dict:
    """What the entry points' fixed mmap threshold costs in time, A/B in one process.

    glibc lets ``mallopt`` change the threshold at any time, so this process alternates a fixed
    1 MiB threshold (``nail_segformer.runtime.MMAP_THRESHOLD``) with a fixed 32 MiB one (where
    glibc's dynamic threshold ends up after the first large frees) around the same work: ``trainer.evaluate()`` on ``n`` images,
    and training steps of ``train_preset`` on one in-memory batch. Fastest round (evaluate) or
    median step (training) of each; minor page faults count the extra mapping work.
    """
    import ctypes
    import resource
    import statistics

    import torch
    from transformers import default_data_collator

    from nail_segformer.data import ID2LABEL
    from nail_segformer.losses import SegmentationLoss
    from nail_segformer.model import build_model

    libc = ctypes.CDLL("libc.so.6")
    from nail_segformer.runtime import MMAP_THRESHOLD

    thresholds = {"1 MiB": MMAP_THRESHOLD, "32 MiB": 32 << 20}
    seed_everything()
    trainer, model, validation = _eval_trainer(
        data_root, out_dir, preset, size, n, batch, workers, batch_eval_metrics=True
    )
    train_model = build_model(train_preset, ID2LABEL, seed=SEED).train()
    optimizer = torch.optim.AdamW(train_model.parameters(), lr=6e-5)
    loss_fn = SegmentationLoss("ce").as_trainer_loss()
    tensors = default_data_collator(validation.__getitems__(list(range(batch))))

    def train_step():
        loss_fn(train_model(pixel_values=tensors["pixel_values"]), tensors["labels"]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    train_step()
    evaluate_s = dict.fromkeys(thresholds, float("inf"))
    step_s = {name: [] for name in thresholds}
    step_faults = {name: [] for name in thresholds}
    for _ in range(rounds):
        for name, threshold in thresholds.items():
            libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD
            start = time.perf_counter()
            trainer.evaluate()
            evaluate_s[name] = min(evaluate_s[name], time.perf_counter() - start)
    for _ in range(train_steps):
        for name, threshold in thresholds.items():
            libc.mallopt(-3, threshold)
            before, start = faults(), time.perf_counter()
            train_step()
            step_s[name].append(time.perf_counter() - start)
            step_faults[name].append(faults() - before)
    return {
        "evaluate_s": evaluate_s,
        "train_step_s": {k: statistics.median(v) for k, v in step_s.items()},
        "train_step_faults": {k: statistics.median(v) for k, v in step_faults.items()},
    }


# --------------------------------------------------------------------------- section 4


def reference_mean_iou(predictions, references, num_labels: int, ignore_index: int):
    """Per-class IoU with boolean masks, summed over maps (the ``mean_iou`` script's definition).

    Returns:
        ``(per_class_iou, mean_iou)``; classes with an empty union are NaN and skipped.
    """
    import numpy as np

    intersection = np.zeros(num_labels, dtype=np.int64)
    union = np.zeros(num_labels, dtype=np.int64)
    for prediction, reference in zip(predictions, references, strict=True):
        counted = reference != ignore_index
        for label in range(num_labels):
            predicted = (prediction == label) & counted
            labelled = reference == label
            intersection[label] += np.count_nonzero(predicted & labelled)
            union[label] += np.count_nonzero(predicted | labelled)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = intersection / union
    return iou, float(np.nanmean(iou))


def make_maps(count: int, size: int, seed: int = SEED):
    """Predicted and true class maps: blobs of nail in background, an ignored border, 10% noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    references = np.zeros((count, size, size), dtype=np.uint8)
    predictions = np.zeros_like(references)
    for i in range(count):
        cy, cx, r = rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size, size * 0.15
        references[i] = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).astype(np.uint8)
        shifted = (yy - cy - size * 0.03) ** 2 + (xx - cx) ** 2 < (r * 1.1) ** 2
        noise = rng.random((size, size)) < 0.1
        predictions[i] = (shifted ^ noise).astype(np.uint8)
        border = max(1, size // 32)
        references[i, :border] = 255
        references[i, :, -border:] = 255
    return predictions, references


def job_metric(count: int, size: int, batch: int, rounds: int) -> dict:
    """Section 4: the package's confusion matrix against the numpy reference.

    ``ConfusionMatrixAccumulator`` calls :func:`nail_segformer.metrics.compute_confusion_matrix`
    once per batch, as evaluation does. The two run in turn ``rounds`` times in this process and
    each keeps its fastest round, so a burst of load on a shared machine hits both alike or
    neither.
    """
    import numpy as np

    from nail_segformer.data import ID2LABEL, IGNORE_INDEX
    from nail_segformer.metrics import ConfusionMatrixAccumulator

    predictions, references = make_maps(count, size)

    def ours():
        accumulator = ConfusionMatrixAccumulator(ID2LABEL)
        for i in range(0, count, batch):
            accumulator.update(predictions[i : i + batch], references[i : i + batch])
        result = accumulator.compute()
        return np.array(
            [result[f"iou_{name}"] for name in ID2LABEL.values()] + [result["mean_iou"]]
        )

    def reference():
        iou, mean_iou = reference_mean_iou(predictions, references, len(ID2LABEL), IGNORE_INDEX)
        return np.append(iou, mean_iou)

    methods = {"ours": ours, "reference": reference}
    best = dict.fromkeys(methods, float("inf"))
    values = {}
    for _ in range(rounds):
        for name, method in methods.items():
            start = time.perf_counter()
            values[name] = method()
            best[name] = min(best[name], time.perf_counter() - start)
    return {
        "ours_s": best["ours"],
        "reference_s": best["reference"],
        "max_abs_diff": float(np.abs(values["ours"] - values["reference"]).max()),
        "mean_iou": float(values["reference"][-1]),
        "pixels": int(predictions.size),
    }


if __name__ == "__main__":
    child_main(
        {
            "eval_memory": job_eval_memory,
            "eval_time": job_eval_time,
            "malloc_ab": job_malloc_ab,
            "metric": job_metric,
        }
    )
