"""Section 5: ``Predictor`` (batched) against ``pipeline("image-segmentation")`` on one model.

A randomly initialised model of a preset size is saved with its image processor to a temporary
folder; both sides load that folder, predict the same photos at their own sizes, and the nail
masks are compared pixel for pixel (the pipeline's "nail" segment against ``Prediction.mask``).
"""

from __future__ import annotations

import time

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SEED, child_main, photo_paths, seed_everything


def save_random_model(folder: str, preset: str, size: int) -> None:
    """A random-init SegFormer and its processor, saved the way a training run saves them."""
    from nail_segformer.data import ID2LABEL
    from nail_segformer.data.transforms import load_image_processor
    from nail_segformer.model import build_model

    build_model(preset, ID2LABEL, seed=SEED).save_pretrained(folder)
    load_image_processor(None, size=size).save_pretrained(folder)


def job_inference(
    data_root: str, model_dir: str, preset: str, size: int, n: int, batch: int, rounds: int
) -> dict:
    """Images/s of each side over ``n`` photos (fastest of ``rounds`` alternating rounds), and
    how many mask pixels agree."""
    import logging

    import numpy as np
    import torch
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from nail_segformer.data import ID2LABEL, NAIL, load_image
    from nail_segformer.predict import Predictor

    seed_everything()
    hf_logging.set_verbosity_error()  # the PIL-backend fallback warning, once per load
    logging.getLogger("nail_segformer").setLevel(logging.WARNING)
    save_random_model(model_dir, preset, size)
    photos = [load_image(p) for p in photo_paths(__import__("pathlib").Path(data_root))[:n]]
    predictor = Predictor.from_pretrained(model_dir, device="cpu", batch_size=batch)
    segmenter = pipeline("image-segmentation", model=model_dir, device="cpu")
    predictor.predict(photos[:2])  # warm-up: first calls allocate and pick kernels
    segmenter(photos[:2])

    ours_s = theirs_s = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        ours = predictor.predict(photos)
        ours_s = min(ours_s, time.perf_counter() - start)
        start = time.perf_counter()
        theirs = segmenter(photos)
        theirs_s = min(theirs_s, time.perf_counter() - start)

    nail = ID2LABEL[NAIL]
    references = []
    for photo, segments in zip(photos, theirs, strict=True):
        masks = [np.asarray(s["mask"]) > 0 for s in segments if s["label"] == nail]
        references.append(masks[0] if masks else np.zeros((photo.height, photo.width), bool))
    # The same Predictor one photo per model call, as the pipeline runs: tells whether any
    # difference comes from batching (float rounding in batched kernels) or from the logic.
    one_by_one = Predictor(predictor.runner, predictor.processor, batch_size=1).predict(photos)

    # What batching alone can give: the model's forward pass on the preprocessed photos, in
    # batches of `batch` against one at a time (fastest of `rounds` each).
    pixel_values = predictor.processor(images=photos, return_tensors="np")["pixel_values"]
    forward = {}
    for size_ in (batch, 1):
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for i in range(0, n, size_):
                predictor.runner(pixel_values[i : i + size_])
            best = min(best, time.perf_counter() - start)
        forward[size_] = best
    return {
        "ours_rate": n / ours_s,
        "pipeline_rate": n / theirs_s,
        **_agreement(references, ours, "batched"),
        **_agreement(references, one_by_one, "one_by_one"),
        "photos": n,
        "nail_fraction": float(np.mean([p.nail_fraction for p in ours])),
        "forward_batched_s": forward[batch],
        "forward_one_s": forward[1],
        "ours_s": ours_s,
        "pipeline_s": theirs_s,
        "torch_threads": torch.get_num_threads(),
    }


def _agreement(references, predictions, name: str) -> dict:
    differing = identical = 0
    for reference, prediction in zip(references, predictions, strict=True):
        wrong = int((reference != prediction.mask.astype(bool)).sum())
        differing += wrong
        identical += wrong == 0
    total = sum(r.size for r in references)
    return {
        f"{name}_agreement": 1 - differing / total,
        f"{name}_differing_pixels": differing,
        f"{name}_identical_photos": identical,
    }


if __name__ == "__main__":
    child_main({"inference": job_inference})
