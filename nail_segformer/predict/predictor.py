"""The :class:`Predictor`: photos in, nail masks and per-photo figures out; see the package doc."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from nail_segformer.metrics import count_nails, default_min_nail_area
from nail_segformer.predict.infer import (
    ModelLoadError,
    OnnxRunner,
    Scores,
    TorchRunner,
    load_pixel_settings,
    load_run_model,
    load_run_processor,
    resize_inputs,
    resize_scores,
    resolve_device,
    saved_threshold,
    slide_scores,
)
from nail_segformer.predict.pixels import PixelSettings

__all__ = [
    "MODES",
    "ModelLoadError",
    "Prediction",
    "Predictor",
    "check_options",
    "count_nails",
    "default_min_nail_area",
    "load_run_model",
    "load_run_processor",
]

logger = logging.getLogger(__name__)

MODES = ("resize", "slide")
# Photo pixels of a batch up to which predict_batches overlaps it with the next and the previous
# batch (four 12 MP phone photos are 48 MP); above, the batch alone is in memory.
_OVERLAP_PIXELS = 64_000_000
TTA_CHOICES = ("none", "flip")


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def check_options(
    mode: str = "resize",
    threshold: float | None = None,
    min_nail_area: int | None = None,
    slide_scale: int | None = None,
    window: int | None = None,
    overlap: float = 1 / 3,
    batch_size: int = 4,
) -> None:
    """Check :class:`Predictor`'s settings without loading anything (the command line does so first).

    Raises:
        ValueError: a setting is out of range; the message names its flag and the valid range.
    """
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {MODES}, got {mode!r}")
    if threshold is not None and not 0.0 <= threshold < 1.0:
        raise ValueError(f"--threshold must be in [0, 1), got {threshold}")
    if min_nail_area is not None and min_nail_area < 0:
        raise ValueError(f"--min_nail_area must be >= 0, got {min_nail_area}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"--overlap must be in [0, 1), got {overlap}")
    for name, value in (
        ("batch_size", batch_size),
        ("slide_scale", slide_scale),
        ("window", window),
    ):
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")


@dataclass
class Prediction:
    """The prediction for one photo, at the photo's size.

    Attributes:
        mask: (H, W) uint8, 1 for nail and 0 for background.
        n_nails: nail components of at least the minimum area (see :func:`count_nails`).
        nail_fraction: share of the photo's pixels predicted nail.
        mean_confidence: mean nail probability over predicted nail pixels; None if there are none.
        scores: the model's scores at the size it gave them (see
            :class:`~nail_segformer.predict.infer.Scores`).
    """

    mask: np.ndarray
    n_nails: int
    nail_fraction: float
    mean_confidence: float | None
    scores: Scores

    @property
    def nail_probability(self) -> np.ndarray:
        """(H, W) float32 nail probability in [0, 1], computed when asked (H x W x 4 bytes)."""
        return self.scores.nail_probability()

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])


class Predictor:
    """Nail masks for PIL photos, in batches; build it with :meth:`from_pretrained`.

    Args:
        runner: a model runner (see :mod:`nail_segformer.predict.infer`).
        processor: the run's Segformer image processor, or its
            :class:`~nail_segformer.predict.pixels.PixelSettings`.
        mode: ``resize`` or ``slide``.
        tta: average with the left-right mirrored photo.
        threshold: nail where its probability is above this; None uses the argmax.
        min_nail_area: smallest counted nail in pixels; None uses :func:`default_min_nail_area`.
        slide_scale: slide mode: short side the photo is resized to; None is twice the
            processor's short side.
        window: slide mode: square window side; None is the processor size.
        overlap: slide mode: fraction of a window shared with the next one, in [0, 1).
        batch_size: photos (resize) or windows (slide) per model call.

    Raises:
        ValueError: an argument is out of range (the message names the flag).
    """

    def __init__(
        self,
        runner,
        processor,
        mode: str = "resize",
        tta: bool = False,
        threshold: float | None = None,
        min_nail_area: int | None = None,
        slide_scale: int | None = None,
        window: int | None = None,
        overlap: float = 1 / 3,
        batch_size: int = 4,
    ):
        check_options(
            mode=mode,
            threshold=threshold,
            min_nail_area=min_nail_area,
            slide_scale=slide_scale,
            window=window,
            overlap=overlap,
            batch_size=batch_size,
        )
        if not isinstance(processor, PixelSettings):
            processor = PixelSettings.from_processor(processor)
        self.runner, self.processor = runner, processor
        self.mode, self.tta, self.threshold = mode, tta, threshold
        self.min_nail_area, self.overlap, self.batch_size = min_nail_area, overlap, batch_size
        size = processor.size
        self.window = (window, window) if window else size
        self.slide_scale = slide_scale or 2 * min(size)

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike,
        device: str = "auto",
        onnx: str | os.PathLike | None = None,
        revision: str | None = None,
        threshold: float | str | None = "model",
        **kwargs,
    ) -> Predictor:
        """Load a trained output folder (or Hub id) and its image processor's settings.

        With ``onnx`` and a local folder, neither torch nor transformers is imported.

        Args:
            model: training output folder or Hub id (``hub_loading_kwargs`` fails fast offline).
            device: ``auto``, ``cpu`` or ``cuda``.
            onnx: run this ONNX export with onnxruntime instead of the PyTorch weights; the
                image processor still comes from ``model``.
            revision: Hub branch, tag or commit.
            threshold: ``"model"`` uses the ``nail_threshold`` the run chose on validation
                (the ONNX file's metadata, else ``config.json``; argmax when there is none); a
                number overrides it; ``"argmax"`` or None takes the argmax, as ``pipeline()``.
            **kwargs: the other :class:`Predictor` arguments.

        Raises:
            ModelLoadError: the folder lacks the processor or the weights, or is no SegFormer.
            HubUnavailableError: a Hub id while offline and not cached.
        """
        model = str(model)
        settings = load_pixel_settings(model, revision)
        if onnx is not None:
            runner = OnnxRunner(onnx, device)
        else:
            runner = TorchRunner(load_run_model(model, revision), resolve_device(device))
        if threshold == "model":
            threshold = saved_threshold(model, revision, runner)
        elif threshold == "argmax":
            threshold = None
        predictor = cls(runner, settings, threshold=threshold, **kwargs)
        logger.info(
            "predicting with %s (%s) on %s: mode %s, tta %s, threshold %s",
            model,
            f"ONNX {onnx}" if onnx else "PyTorch",
            runner.device,
            predictor.mode,
            predictor.tta,
            predictor.threshold,
        )
        return predictor

    def predict(self, images: list[Image.Image]) -> list[Prediction]:
        """Predict every photo, ``batch_size`` at a time.

        Args:
            images: photos as they are seen (read files with ``nail_segformer.data.load_image``,
                which applies the EXIF orientation); other modes than RGB are converted.

        Returns:
            One :class:`Prediction` per photo, in order, each at its photo's size.
        """
        batches = (images[i : i + self.batch_size] for i in range(0, len(images), self.batch_size))
        return [prediction for batch in self.predict_batches(batches) for prediction in batch]

    def predict_batches(
        self, batches: Iterable[Sequence[Image.Image]]
    ) -> Iterator[list[Prediction]]:
        """Predict batches of photos as they come, one list of predictions per batch, in order.

        In resize mode three stages overlap: while the model runs on one batch, a background
        thread draws the next batch from ``batches`` and turns it into model input (so reading
        photos inside the iterable overlaps the forward pass too), and another reads the
        previous batch's masks from its scores. PIL, numpy, OpenCV and the runners release the
        GIL. A batch's predictions are yielded once the model has run on the next one. A batch
        of more than 64 MP of photos runs alone, so huge photos are not held three batches at a
        time.

        Args:
            batches: lists of photos as :meth:`predict` takes them; a list may be empty. In
                resize mode a photo may also come as ``(image, (height, width))``: decoded at
                a reduced scale (see :meth:`input_size`), its mask is made at the given size.
        """
        if self.mode != "resize":
            for batch in batches:
                yield [self._finish(self._slide(_rgb(image))) for image in batch]
            return
        source = iter(batches)

        def prepare():
            batch = next(source, None)
            if batch is None:
                return None
            images, sizes = [], []
            for photo in batch:
                image, size = photo if isinstance(photo, tuple) else (photo, None)
                images.append(_rgb(image))
                sizes.append(size or (image.height, image.width))
            return sizes, resize_inputs(self.processor, images, self.tta) if images else None

        def finish(logits, sizes: list[tuple[int, int]]) -> list[Prediction]:
            if not sizes:
                return []
            return [self._finish(one) for one in resize_scores(logits, sizes, self.tta)]

        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict-input") as inputs,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict-masks") as masks,
        ):
            pending, finishing = inputs.submit(prepare), None
            while (prepared := pending.result()) is not None:
                sizes, pixel_values = prepared
                # A batch of huge photos would be held beside the next and the previous one (and
                # their full-size masks): it runs its stages one after another instead.
                overlap = sum(height * width for height, width in sizes) <= _OVERLAP_PIXELS
                if overlap:
                    pending = inputs.submit(prepare)
                logits = self.runner(pixel_values) if sizes else None
                if finishing is not None:
                    yield finishing.result()
                    finishing = None
                if overlap:
                    finishing = masks.submit(finish, logits, sizes)
                else:
                    yield finish(logits, sizes)
                    pending = inputs.submit(prepare)
            if finishing is not None:
                yield finishing.result()

    @property
    def input_size(self) -> tuple[int, int] | None:
        """``(width, height)`` a photo may be decoded down to without changing what the model
        sees much (``load_image(path, reduce_to=...)``); None in slide mode, which needs more.

        Resize mode brings every photo to the model's input size; a JPEG decoded at 1/2, 1/4 or
        1/8 scale but still at least that size gives nearly the same input for a fraction of
        the decoding (``tests/test_predict.py`` bounds the difference in nail IoU).
        """
        if self.mode != "resize" or not self.processor.do_resize:
            return None
        height, width = self.processor.size
        return width, height

    def _slide(self, image: Image.Image) -> Scores:
        return slide_scores(
            self.runner,
            self.processor,
            image,
            self.slide_scale,
            self.window,
            self.overlap,
            self.batch_size,
            self.tta,
        )

    def _finish(self, scores: Scores) -> Prediction:
        """One :class:`Prediction`, read from ``scores`` a band of rows at a time."""
        height, width = scores.size
        mask = np.empty((height, width), np.uint8)
        confidence_sum = 0.0
        for start, nail, probability in scores.bands(self.threshold):
            mask[start : start + nail.shape[0]] = nail
            confidence_sum += float(probability.sum(dtype=np.float64))
        nail_pixels = int(np.count_nonzero(mask))
        return Prediction(
            mask=mask,
            n_nails=count_nails(mask, self.min_nail_area),
            nail_fraction=nail_pixels / mask.size,
            mean_confidence=confidence_sum / nail_pixels if nail_pixels else None,
            scores=scores,
        )
