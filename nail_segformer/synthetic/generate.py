"""Render synthetic samples and write them in the Images/Masks layout; see the package doc."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from nail_segformer.synthetic.paint import (
    paint_background,
    paint_foreground,
    paint_nails,
    paint_skin,
    photograph,
)
from nail_segformer.synthetic.scene import layout_scene

__all__ = [
    "CATEGORIES",
    "IMAGES_DIR",
    "MASKS_DIR",
    "SyntheticSample",
    "render_sample",
    "generate_dataset",
]

logger = logging.getLogger(__name__)

CATEGORIES: tuple[str, ...] = ("1", "2", "3", "4")
IMAGES_DIR = "Images"
MASKS_DIR = "Masks"

# A layout whose nail fraction falls outside these bounds is redrawn, as real nail photos are
# neither nearly empty nor one giant nail.
_FRACTION_BOUNDS = (0.005, 0.08)
_MAX_LAYOUT_TRIES = 12
_MIN_SIDE = 64


@dataclass(frozen=True)
class SyntheticSample:
    """One rendered photo and its nail mask.

    Attributes:
        image: RGB photo.
        mask: ``L`` mask of the same size, 0 = background and 255 = nail.
        n_nails: number of nails, equal to the number of 8-connected components of ``mask``.
        category: one of ``CATEGORIES``.
    """

    image: Image.Image
    mask: Image.Image
    n_nails: int
    category: str


def _category_position(category: str, arg: str) -> int:
    if category not in CATEGORIES:
        raise ValueError(f"unknown {arg} {category!r}; valid categories: {', '.join(CATEGORIES)}")
    return CATEGORIES.index(category)


def _random_size(rng: np.random.Generator) -> tuple[int, int]:
    """Width and height between 320 and 800 px, portrait or landscape."""
    long_side = int(rng.integers(440, 801))
    short_side = int(np.clip(long_side / rng.uniform(1.0, 1.8), 320, long_side))
    return (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)


def render_sample(
    seed: int, index: int, category: str, size: tuple[int, int] | None = None
) -> SyntheticSample:
    """Render one photo and its nail mask.

    Args:
        seed: non-negative seed of the data set.
        index: non-negative sample index; ``(seed, index, category)`` fixes every pixel.
        category: one of ``CATEGORIES``; the module docstring says what each one shows.
        size: ``(width, height)`` in pixels, each at least 64; when None, a random size
            between 320 and 800 px per side, portrait or landscape.

    Returns:
        The sample. Nails cover 0.5-8% of the photo for sizes of about 320 px and more.

    Raises:
        ValueError: if ``seed``, ``index`` or ``size`` is out of range or ``category`` unknown.
    """
    position = _category_position(category, "category")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    if size is not None and (len(size) != 2 or min(size) < _MIN_SIDE):
        raise ValueError(f"size must be (width, height), both >= {_MIN_SIDE}, got {size!r}")
    rng = np.random.default_rng([seed, index, position])
    size = (int(size[0]), int(size[1])) if size is not None else _random_size(rng)
    # Redraw layouts whose nails were mostly cropped or dropped, or that are one giant nail.
    for _ in range(_MAX_LAYOUT_TRIES):
        layout = layout_scene(rng, category, size)
        fraction = layout.mask.mean()
        if layout.nails and _FRACTION_BOUNDS[0] <= fraction <= _FRACTION_BOUNDS[1]:
            break
    canvas = paint_background(rng, category, layout)
    canvas = paint_skin(rng, canvas, layout)
    canvas = paint_nails(rng, canvas, layout)
    canvas = paint_foreground(rng, canvas, category, layout)
    return SyntheticSample(
        image=photograph(rng, canvas),
        mask=Image.fromarray(layout.mask.astype(np.uint8) * 255),
        n_nails=len(layout.nails),
        category=category,
    )


def _refuse_existing(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file, not a folder; choose an empty folder")
    for name in (IMAGES_DIR, MASKS_DIR):
        folder = out_dir / name
        if folder.is_dir() and any(folder.iterdir()):
            raise FileExistsError(
                f"{folder} already contains files; refusing to overwrite a data set. "
                "Choose an empty folder for the synthetic data."
            )


def generate_dataset(
    out_dir: str | os.PathLike,
    n: int = 200,
    seed: int = 0,
    categories: Sequence[str] = CATEGORIES,
    jpeg_quality: int = 90,
) -> list[dict]:
    """Write ``n`` samples to ``out_dir/Images/<category>/`` and ``out_dir/Masks/<category>/``.

    Sample ``i`` goes to ``categories[i % len(categories)]`` with stem ``nail_<category>_<i>``
    (zero-padded to 4 digits), so categories get equal counts (within one) and a smaller ``n``
    gives a prefix of a larger one. Nothing else is written into ``out_dir``.

    Args:
        out_dir: destination folder; created if missing, must not hold ``Images``/``Masks`` files.
        n: number of samples, at least 1.
        seed: non-negative seed; the same seed gives byte-identical files.
        categories: non-empty subset of ``CATEGORIES``, without duplicates.
        jpeg_quality: JPEG quality of the photos, 1-95.

    Returns:
        One record per sample, in index order, with keys ``stem``, ``category``, ``image_path``,
        ``mask_path`` (str), ``width``, ``height``, ``n_nails`` and ``nail_fraction`` (0-1).

    Raises:
        ValueError: if an argument is out of range; the message names its command-line flag.
        FileExistsError: if ``out_dir`` already holds a data set.
    """
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if not 1 <= jpeg_quality <= 95:
        raise ValueError(f"--jpeg_quality must be between 1 and 95, got {jpeg_quality}")
    categories = [str(c) for c in categories]
    if not categories or len(set(categories)) != len(categories):
        raise ValueError(f"--categories must be non-empty without duplicates, got {categories}")
    for category in categories:
        _category_position(category, "category in --categories")
    out_dir = Path(out_dir)
    _refuse_existing(out_dir)
    records = []
    for index in range(n):
        category = categories[index % len(categories)]
        sample = render_sample(seed, index, category)
        stem = f"nail_{category}_{index:04d}"
        image_path = out_dir / IMAGES_DIR / category / f"{stem}.jpg"
        mask_path = out_dir / MASKS_DIR / category / f"{stem}.png"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        sample.image.save(image_path, "JPEG", quality=jpeg_quality)
        sample.mask.save(mask_path, "PNG")
        records.append(
            {
                "stem": stem,
                "category": category,
                "image_path": str(image_path),
                "mask_path": str(mask_path),
                "width": sample.image.width,
                "height": sample.image.height,
                "n_nails": sample.n_nails,
                "nail_fraction": float((np.asarray(sample.mask) > 0).mean()),
            }
        )
    logger.info("wrote %d synthetic samples (seed %d) to %s", n, seed, out_dir)
    return records
