"""Photos to ``pixel_values`` and low-resolution scores to photo-size maps, without torch.

Prediction with an ONNX model needs neither torch nor transformers, whose imports alone took
longer than the forward passes of a 48-photo folder (``benchmarks/RESULTS.md``). This module
computes what they would, in numpy and PIL:

- :class:`PixelSettings` is ``SegformerImageProcessor``'s preprocessing: resize with PIL and the
  processor's filter, then rescale and normalise. The last two map each of a channel's 256
  levels to one float32 value, so they run as one table lookup on the resized ``uint8`` pixels,
  computed in the processor's own precision (float64 rescale, float32 normalise): the same
  values, bit for bit.
- :func:`resize_bilinear` and :func:`linear_taps` are ``F.interpolate(mode="bilinear",
  align_corners=False)``, its source indices and weights computed in float32 as torch's CPU kernel
  does, applied one axis at a time (width, then height), as that kernel does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image

from nail_segformer.data.transforms import apply_levels, processor_size

__all__ = ["PixelSettings", "linear_taps", "lerp_axis", "resize_bilinear"]

PROCESSOR_FILE = "preprocessor_config.json"
# SegformerImageProcessor's defaults, for keys a saved file leaves out (legacy files do).
_DEFAULTS = {
    "do_resize": True,
    "size": {"height": 512, "width": 512},
    "resample": int(Image.Resampling.BILINEAR),
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
}
# Keys that do not change an RGB photo's pixel values (labels only, or names of classes).
_INERT = {
    "image_processor_type",
    "feature_extractor_type",
    "processor_class",
    "do_reduce_labels",
    "reduce_labels",
    "do_convert_rgb",
}


def _channels(value) -> tuple[float, ...] | None:
    """A mean or std as three floats; None for anything the processor would read differently."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return (float(value),) * 3
    if isinstance(value, list) and len(value) == 3:
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            return tuple(float(v) for v in value)
    return None


@dataclass(frozen=True)
class PixelSettings:
    """What ``SegformerImageProcessor`` does to a photo before the model sees it.

    Attributes:
        size: ``(height, width)`` photos are resized to when ``do_resize``.
        resample: the PIL filter of that resize.
        do_rescale, rescale_factor, do_normalize, image_mean, image_std: as the processor's.
    """

    size: tuple[int, int]
    resample: int
    do_resize: bool
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]

    @classmethod
    def from_processor(cls, processor) -> PixelSettings:
        """The settings of a loaded (transformers) Segformer image processor.

        Raises:
            ValueError: settings predict cannot apply (a size without height and width, a mean
                or std not of one or three channels); the message says which.
        """
        try:
            sides = processor_size(processor)
        except (TypeError, KeyError):  # a size given by its shortest edge, say
            sides = (0, 0)
        if min(sides) <= 0:
            size = processor.size
            raise ValueError(
                f"size is {dict(size) if size else size}; predict needs a height and a width"
            )
        channels = {}
        for name in ("image_mean", "image_std"):
            value = getattr(processor, name)
            channels[name] = _channels(value if isinstance(value, int | float) else list(value))
            if channels[name] is None:
                raise ValueError(f"{name} is {value!r}; give one number or one per RGB channel")
        return cls(
            size=sides,
            resample=int(processor.resample),
            do_resize=bool(processor.do_resize),
            do_rescale=bool(processor.do_rescale),
            rescale_factor=float(processor.rescale_factor),
            do_normalize=bool(processor.do_normalize),
            **channels,
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> PixelSettings | None:
        """Read a ``preprocessor_config.json`` in one of the forms Segformer processors save.

        Returns:
            The settings, or None when the file holds anything else (a key that may change the
            pixels, a size given by its shortest edge, ...): load it with transformers then.
        """
        try:
            with open(path, encoding="utf-8") as file:
                saved = json.load(file)
        except (OSError, ValueError):
            return None
        if not isinstance(saved, dict) or set(saved) - set(_DEFAULTS) - _INERT:
            return None
        config = {**_DEFAULTS, **saved}
        size = config["size"]
        if isinstance(size, int) and not isinstance(size, bool):
            size = {"height": size, "width": size}  # a legacy square side
        if not isinstance(size, dict) or set(size) != {"height", "width"}:
            return None
        sides = (size["height"], size["width"])
        flags = [config[k] for k in ("do_resize", "do_rescale", "do_normalize")]
        mean, std = _channels(config["image_mean"]), _channels(config["image_std"])
        numbers = (config["rescale_factor"], config["resample"], *sides)
        if (
            not all(isinstance(flag, bool) for flag in flags)
            or mean is None
            or std is None
            or not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers)
            or not all(isinstance(side, int) and side > 0 for side in sides)
            or config["resample"] not in [int(r) for r in Image.Resampling]
        ):
            return None
        return cls(
            size=sides,
            resample=int(config["resample"]),
            do_resize=flags[0],
            do_rescale=flags[1],
            rescale_factor=float(config["rescale_factor"]),
            do_normalize=flags[2],
            image_mean=mean,
            image_std=std,
        )

    @cached_property
    def levels(self) -> np.ndarray:
        """(3, 256) float32: the model input of each level of each channel."""
        levels = np.arange(256)
        if self.do_rescale:  # as transformers' rescale: float64 product, then float32
            values = (levels.astype(np.float64) * self.rescale_factor).astype(np.float32)
        else:
            values = levels.astype(np.float32)
        values = np.repeat(values[None], 3, axis=0)
        if self.do_normalize:  # as transformers' normalize: float32 throughout
            mean = np.asarray(self.image_mean, dtype=np.float32)[:, None]
            std = np.asarray(self.image_std, dtype=np.float32)[:, None]
            values = (values - mean) / std
        return values

    def resize(self, image: Image.Image) -> Image.Image:
        """The photo at the model's input size (unchanged without ``do_resize``)."""
        height, width = self.size
        if not self.do_resize or image.size == (width, height):
            return image
        return image.resize((width, height), Image.Resampling(self.resample))

    def normalise(self, image: Image.Image, out: np.ndarray | None = None) -> np.ndarray:
        """(3, H, W) float32 model input of an RGB photo at its own size (into ``out``)."""
        pixels = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
        return apply_levels(self.levels, pixels, out)

    def pixel_values(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, 3, H, W) float32 ``pixel_values``, as ``processor(images)["pixel_values"]``."""
        resized = [self.resize(image) for image in images]
        if len({image.size for image in resized}) > 1:  # no resize: photos keep their sizes
            raise ValueError("photos of different sizes make no batch without do_resize")
        width, height = resized[0].size
        batch = np.empty((len(resized), 3, height, width), np.float32)
        for index, image in enumerate(resized):
            self.normalise(image, out=batch[index])  # written in place: no copy of the batch
        return batch


def linear_taps(
    in_size: int, out_size: int, start: int = 0, stop: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices ``(low, high)`` and weight of ``high`` for output positions
    ``[start, stop)`` of a bilinear resize from ``in_size`` to ``out_size`` positions."""
    stop = out_size if stop is None else stop
    scale = np.float32(in_size / out_size)
    positions = np.arange(start, stop, dtype=np.float32)
    source = np.maximum((positions + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0))
    low = np.minimum(np.floor(source).astype(np.intp), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    weight = np.clip(source - low.astype(np.float32), 0, 1).astype(np.float32)
    return low, high, weight


def lerp_axis(values: np.ndarray, taps, axis: int) -> np.ndarray:
    """``values`` resampled along ``axis`` with :func:`linear_taps`' ``(low, high, weight)``."""
    low, high, weight = taps
    shape = [1] * values.ndim
    shape[axis] = -1
    weight = weight.reshape(shape)
    # In place: two arrays of the output's size at most (a photo-wide pass is the largest).
    out = np.take(values, low, axis=axis)
    out *= 1 - weight
    upper = np.take(values, high, axis=axis)
    upper *= weight
    out += upper
    return out


def resize_bilinear(values: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(..., h, w) float32 maps resized to (..., *size), as ``F.interpolate`` bilinear with
    ``align_corners=False``; maps already that size are returned unchanged."""
    height, width = (int(side) for side in size)
    h, w = values.shape[-2:]
    if (h, w) == (height, width):
        return values
    if w != width:
        values = lerp_axis(values, linear_taps(w, width), axis=-1)
    if h != height:
        values = lerp_axis(values, linear_taps(h, height), axis=-2)
    return values
