"""Files in and out for :mod:`nail_segformer.predict`: finding photos, writing masks and records.

Inputs are files, folders (searched recursively) or glob patterns. Each photo gets a *category*
by the rules of :mod:`nail_segformer.data`: its folder relative to the folder it was found in
(for a glob, the pattern's folder before the first wildcard), ``root`` for files directly in it.
Outputs mirror that layout: ``masks/<category>/<stem>.png`` and
``overlays/<category>/<stem>.<jpg|png>`` (no category folder for ``root``); a second photo with
the same category and stem (``a.jpg`` beside ``a.png``) gets ``<stem>_2``.
"""

from __future__ import annotations

import csv
import errno
import glob
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from PIL import Image

from nail_segformer.data import ROOT_CATEGORY, is_hidden_or_os_file, portable_path

__all__ = ["InputItem", "expand_inputs", "render_overlay", "OutputWriter", "RECORD_FIELDS"]

logger = logging.getLogger(__name__)

OVERLAY_FORMATS = ("jpg", "png", "none")
RECORD_FIELDS = (
    "file",
    "width",
    "height",
    "nail_fraction",
    "n_nails",
    "mean_confidence",
    "iou_nail",
    "boundary_iou_nail",
    "true_nails",
    "matched_nails",
    "mask",
    "overlay",
    "error",
)
# Nails tinted in cyan, outlined in yellow: colours nail polish and skin rarely have.
_TINT = np.array([0, 255, 255], dtype=np.float32)
_TINT_ALPHA = 0.45
_TINT_ROWS = 512  # rows tinted at a time
_OUTLINE = np.array([255, 255, 0], dtype=np.uint8)
# Outline thickness grows with the photo so it stays visible on 12 MP photos.
_OUTLINE_PIXELS_PER_POINT = 500


@dataclass(frozen=True)
class InputItem:
    """One photo to predict: its path, its category and its output path stem (no suffix)."""

    path: Path
    category: str
    output_stem: PurePosixPath


def _is_inside(path: Path, folders: list[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def _walk(top: Path, skip: list[Path]) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not is_hidden_or_os_file(d) and not _is_inside((here / d).resolve(), skip)
        )
        files += [here / name for name in sorted(filenames) if not is_hidden_or_os_file(name)]
    return files


def _unresolvable(file: Path, err: Exception) -> str:
    if isinstance(err, RuntimeError) or getattr(err, "errno", None) == errno.ELOOP:
        return "a symbolic link that leads back to itself (a loop); remove or repoint it"
    if isinstance(err, FileNotFoundError):
        return "a symbolic link to a file that does not exist; remove or repoint it"
    return f"cannot be opened ({err.strerror or err}); check its permissions"


def _glob_base(pattern: str) -> Path:
    """The folder part of ``pattern`` before its first wildcard."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _category(path: Path, base: Path) -> str:
    try:
        rel = path.parent.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return ROOT_CATEGORY
    return ROOT_CATEGORY if rel == "." else rel


def expand_inputs(
    inputs: Sequence[str], skip: Sequence[str | os.PathLike] = ()
) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Turn ``--input`` values into photos to predict, in a stable order.

    Every file found is listed, whatever its extension: one that is not an image fails later,
    by name. Hidden and OS files (``.DS_Store``, ``Thumbs.db``) and the folders in ``skip``
    (the output and mask folders, when they lie inside an input folder) are left out. A file
    reached twice is predicted once.

    Returns:
        ``(items, failures)``; a failure is ``(input, message)`` for a value matching nothing.
    """
    skip_dirs = [Path(s).resolve() for s in skip]
    found: list[tuple[Path, Path]] = []  # (file, base folder)
    failures = []
    for value in inputs:
        path = Path(value).expanduser()
        if path.is_file():
            found.append((path, path.parent))
        elif path.is_dir():
            found += [(f, path) for f in _walk(path, skip_dirs)]
        elif glob.has_magic(value):
            matches = sorted(glob.glob(str(path), recursive=True))
            base = _glob_base(str(path))
            for match in map(Path, matches):
                if match.is_dir():
                    found += [(f, match) for f in _walk(match, skip_dirs)]
                elif not is_hidden_or_os_file(match.name):
                    found.append((match, base))
            if not matches:
                failures.append((value, "the pattern matches no file"))
        else:
            failures.append((value, "no such file or folder (check --input)"))
    items, seen_files, seen_stems = [], set(), set()
    for file, base in found:
        try:
            resolved = file.resolve(strict=True)
        except (OSError, RuntimeError) as err:  # a loop of links, or a link to nothing
            failures.append((str(file), _unresolvable(file, err)))
            continue
        if resolved in seen_files:
            continue
        seen_files.add(resolved)
        category = _category(file, base)
        folder = PurePosixPath() if category == ROOT_CATEGORY else PurePosixPath(category)
        stem, n = file.stem, 1
        while str(folder / stem).lower() in seen_stems:
            n += 1
            stem = f"{file.stem}_{n}"
        seen_stems.add(str(folder / stem).lower())
        items.append(InputItem(file, category, folder / stem))
    return items, failures


def render_overlay(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """The photo with predicted nails tinted and their outlines drawn.

    Args:
        image: RGB photo, as seen (EXIF orientation applied).
        mask: (H, W) {0, 1} nail mask of the same size.
    """
    nail = mask.astype(bool)
    pixels = np.array(image, dtype=np.uint8)
    # Only nail pixels go through float32, a band of rows at a time: a float copy of a whole
    # 200 MP photo is 2.4 GB, and of its nail pixels up to as much.
    for start in range(0, pixels.shape[0], _TINT_ROWS):
        band, band_nail = pixels[start : start + _TINT_ROWS], nail[start : start + _TINT_ROWS]
        tinted = band[band_nail].astype(np.float32) * (1 - _TINT_ALPHA) + _TINT * _TINT_ALPHA
        band[band_nail] = tinted.round().astype(np.uint8)
    # Nail pixels with a background pixel among their 8 neighbours (outside the photo counts as
    # background), thickened by a 4-connected dilation: OpenCV, which counting nails loads anyway.
    border = {"borderType": cv2.BORDER_CONSTANT, "borderValue": 0}
    nail_u8 = nail.view(np.uint8)
    outline = nail_u8 - cv2.erode(nail_u8, np.ones((3, 3), np.uint8), **border)  # 0 or 1
    thickness = max(image.width, image.height) // _OUTLINE_PIXELS_PER_POINT
    if thickness > 0 and outline.any():
        cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
        outline = cv2.dilate(outline, cross, iterations=thickness, **border)
    pixels[outline.astype(bool)] = _OUTLINE
    return Image.fromarray(pixels)


class OutputWriter:
    """Writes masks, overlays and the ``predictions.jsonl`` / ``predictions.csv`` records.

    Records are appended as photos finish, so an interrupted run keeps what it did. Use as a
    context manager.

    Args:
        output_dir: created if missing.
        overlay_format: ``jpg``, ``png`` or ``none`` (no overlays).
    """

    def __init__(self, output_dir: str | os.PathLike, overlay_format: str = "jpg"):
        if overlay_format not in OVERLAY_FORMATS:
            raise ValueError(
                f"--overlay_format must be one of {OVERLAY_FORMATS}, got {overlay_format!r}"
            )
        self.output_dir = Path(output_dir)
        self.overlay_format = overlay_format
        self.draws_overlays = overlay_format != "none"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.output_dir / "predictions.jsonl", "w", encoding="utf-8")
        self._csv_file = open(
            self.output_dir / "predictions.csv", "w", newline="", encoding="utf-8"
        )
        self._csv = csv.DictWriter(self._csv_file, fieldnames=RECORD_FIELDS)
        self._csv.writeheader()

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._jsonl.close()
        self._csv_file.close()

    def write_images(self, item: InputItem, image: Image.Image | None, mask: np.ndarray) -> dict:
        """Write the mask (``L`` PNG, 0/255) and the overlay; return their relative paths.

        ``image`` is the photo as seen, for the overlay; None when overlays are off.
        """
        paths = {"mask": f"masks/{item.output_stem}.png", "overlay": None}
        mask_path = self.output_dir / paths["mask"]
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        # 2-D uint8: an L PNG; level 1 of zlib, about 3x faster than the default 6, and a mask
        # of a few smooth blobs compresses nearly as well.
        Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path, compress_level=1)
        if self.overlay_format != "none":
            paths["overlay"] = f"overlays/{item.output_stem}.{self.overlay_format}"
            overlay_path = self.output_dir / paths["overlay"]
            overlay_path.parent.mkdir(parents=True, exist_ok=True)
            overlay = render_overlay(image, mask)
            if self.overlay_format == "jpg":
                overlay.save(overlay_path, "JPEG", quality=90)
            else:
                overlay.save(overlay_path, "PNG")
        return paths

    def write_record(self, record: dict) -> None:
        """Append one record (keys from ``RECORD_FIELDS``; missing ones are left empty)."""
        # A file name from another system may not be UTF-8: written as \xHH (portable_path).
        full = {key: record.get(key) for key in RECORD_FIELDS}
        full = {k: portable_path(v) if isinstance(v, str) else v for k, v in full.items()}
        self._jsonl.write(json.dumps(full) + "\n")
        self._csv.writerow({k: "" if v is None else v for k, v in full.items()})
        self._jsonl.flush()
        self._csv_file.flush()
