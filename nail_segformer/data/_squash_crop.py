"""The training crop of the square aspect policy: random crops of the photo squashed to a square.

Evaluation and inference resize a whole photo to the processor's square, whatever its aspect,
so a 16:9 photo is squeezed sideways. :class:`SquashedRandomResizedCrop` draws its crop in
that squashed frame: its area and aspect ratio are fractions of the unit square, mapped back to
the photo's own pixels. With ``scale=(1, 1)`` the crop is the whole photo, so a sample is the
evaluation input, edges included (albumentations' own ``RandomResizedCrop`` measures aspect in
pixels, cannot fit a 3:4-4:3 crop of full area into a 16:9 photo, and falls back to a centre
crop that never shows the outer quarter).

Crops that shrink are resized with area interpolation (albumentations' ``area_for_downscale``),
which averages like the processor's antialiased resize instead of skipping pixels, so training
sees the pixels evaluation sees; masks use nearest neighbour at pixel centres, as the
processor does.

Imported only by :func:`nail_segformer.data.transforms.build_train_transforms`, since it needs
albumentations at import.
"""

from __future__ import annotations

import math
from typing import Any

import albumentations as A
import cv2

__all__ = ["SquashedRandomResizedCrop"]

_TRIES = 10


class SquashedRandomResizedCrop(A.RandomResizedCrop):
    """``RandomResizedCrop`` whose area and aspect ratio are measured in the squashed square.

    Args:
        size: ``(height, width)`` of the output.
        scale: range of the crop's area, as a fraction of the whole photo.
        ratio: range of the crop's width/height in the squashed frame (on a 16:9 photo a crop
            of ratio 1 is 16:9 in pixels, as the whole photo is at evaluation).
        p: probability of applying it; without it the photo keeps its size.
    """

    def __init__(
        self,
        size: tuple[int, int],
        scale: tuple[float, float] = (0.3, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        p: float = 1.0,
    ):
        super().__init__(
            size=size,
            scale=scale,
            ratio=ratio,
            # INTER_NEAREST samples at pixel corners, half a pixel off the image's resize;
            # NEAREST_EXACT samples at centres, as the processor's (PIL's) nearest does.
            mask_interpolation=cv2.INTER_NEAREST_EXACT,
            area_for_downscale="image",
            p=p,
        )

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, tuple[int, int, int, int]]:
        height, width = params["shape"][:2]
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(_TRIES):
            area = self.py_random.uniform(*self.scale)
            aspect = math.exp(self.py_random.uniform(log_low, log_high))
            crop_w, crop_h = math.sqrt(area * aspect), math.sqrt(area / aspect)
            if crop_w <= 1.0 and crop_h <= 1.0:
                left = self.py_random.random() * (1.0 - crop_w)
                top = self.py_random.random() * (1.0 - crop_h)
                break
        else:  # The whole photo is the crop evaluation sees, so it is the natural fallback.
            left, top, crop_w, crop_h = 0.0, 0.0, 1.0, 1.0
        x_min, y_min = round(left * width), round(top * height)
        x_max = min(width, max(x_min + 1, round((left + crop_w) * width)))
        y_max = min(height, max(y_min + 1, round((top + crop_h) * height)))
        return {"crop_coords": (x_min, y_min, x_max, y_max)}
