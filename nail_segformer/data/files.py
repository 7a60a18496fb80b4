"""Reading photos and masks from disk: decoding, EXIF orientation and mask-to-label conversion.

Both the training transforms and ``predict`` load files through these functions, so a photo
means the same thing in training and in use.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Files that operating systems and sync tools drop next to photos; never data.
_OS_FILES = {".ds_store", "thumbs.db", "desktop.ini", "icon\r"}

# EXIF orientations 5..8 swap width and height.
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}


class ImageReadError(ValueError):
    """A photo or mask that cannot be decoded; the message names the file."""


def is_hidden_or_os_file(path: str | os.PathLike) -> bool:
    """True for dot-files, macOS resource forks (``._x``) and OS litter such as ``Thumbs.db``."""
    name = Path(path).name
    return name.startswith(".") or name.lower() in _OS_FILES


def read_header(path: str | os.PathLike) -> tuple[int, int, str]:
    """Read a file's header only (no pixels).

    Returns:
        ``(width, height, mode)`` as the photo is meant to be seen, i.e. after its EXIF
        orientation is applied.

    Raises:
        ImageReadError: the file is not an image PIL can identify.
    """
    try:
        with Image.open(path) as im:
            width, height = im.size
            mode = im.mode
            # PngImageFile.getexif() decodes the whole image first, in case an eXIf chunk
            # follows the pixel data; the base method reads what the header carried, which is
            # where PNG writers (and PNG's 3rd edition) put it.
            orientation = Image.Image.getexif(im).get(_EXIF_ORIENTATION_TAG, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"cannot decode {path}: {err}") from err
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return width, height, mode


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode a photo as RGB, rotated by its EXIF orientation.

    Raises:
        ImageReadError: the file is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as im:
            im.load()
            image = ImageOps.exif_transpose(im)
            return image.convert("RGB") if image.mode != "RGB" else image.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"cannot decode photo {path}: {err}") from err


def mask_to_labels(mask: Image.Image) -> np.ndarray:
    """Turn a mask of any PIL mode into a ``uint8`` label map with values {0: background, 1: nail}.

    Rules, chosen so that every common way of saving a binary mask means what its author meant:

    - A mask whose stored values are only 0 and 1 (index masks, 1-bit masks, ``P`` masks with
      indices 0/1) is taken as labels directly.
    - Otherwise a pixel is nail when it is at least half of the mode's range: 128 for 8-bit,
      32768 for 16-bit, 0.5 for float in [0, 1]. A 16-bit or float mask whose values never exceed
      255 is treated as 8-bit data, since a wider container does not change what was drawn.
    - Colour masks (``RGB``, ``P`` with a colour palette) use the brightest channel, so a red or
      green nail on black counts as nail; an alpha channel multiplies in, so a transparent
      background is background.

    Anti-aliased edges are thereby thresholded at half range. 255 is never passed through: the
    loss would read it as "ignore" and silently drop those pixels.
    """
    mask = ImageOps.exif_transpose(mask)
    if mask.mode == "P":
        indices = np.asarray(mask)
        if indices.size and indices.max() <= 1:
            return indices.astype(np.uint8)
        mask = mask.convert("RGBA")
    if mask.mode == "1":
        return np.asarray(mask, dtype=np.uint8)
    if mask.mode in ("RGBA", "LA", "PA"):
        mask = mask.convert("RGBA")
        rgba = np.asarray(mask).astype(np.float32)
        values = rgba[..., :3].max(axis=-1) * (rgba[..., 3] / 255.0)
    elif mask.mode in ("RGB", "CMYK", "YCbCr", "LAB", "HSV"):
        values = np.asarray(mask.convert("RGB")).max(axis=-1)
    else:  # L, I, I;16*, F
        values = np.asarray(mask)
        if values.ndim == 3:
            values = values.max(axis=-1)
    values = np.asarray(values)
    if values.size and values.min() >= 0 and values.max() <= 1 and _is_integral(values):
        return values.astype(np.uint8)
    return (values >= _half_range(values)).astype(np.uint8)


def _is_integral(values: np.ndarray) -> bool:
    return values.dtype.kind in "iub" or bool(np.all(np.mod(values, 1) == 0))


def _half_range(values: np.ndarray) -> float:
    peak = float(values.max()) if values.size else 0.0
    if values.dtype.kind == "f" and peak <= 1.0:
        return 0.5
    if peak <= 255:
        return 128
    return 32768


def load_labels(path: str | os.PathLike) -> np.ndarray:
    """Decode a mask file into a ``uint8`` {0, 1} label map (see :func:`mask_to_labels`).

    Raises:
        ImageReadError: the file is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as im:
            im.load()
            return mask_to_labels(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"cannot decode mask {path}: {err}") from err
