"""Finding photo/mask pairs on disk and collecting every problem with them.

See :mod:`nail_segformer.data` for the layouts; this module only reads file names and headers.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nail_segformer.data.files import (
    ImageReadError,
    is_hidden_or_os_file,
    portable_path,
    read_header,
    read_problem,
    relative_to_root,
)

logger = logging.getLogger(__name__)

ROOT_CATEGORY = "root"
_IMAGE_DIRS = ("Images", "images")
# Masks/ first; then the names label exports and downloaded sets use for it.
_MASK_DIRS = ("Masks", "masks", "labels", "annotations", "gt", "ground_truth", "groundtruth")
# Separators that start a suffix naming a mask file after its photo: IMG_1_mask, IMG_1-gt.
_SUFFIX_SEPARATORS = "_-. "
_PRESPLIT_DIRS = {
    "train": ("train",),
    "validation": ("validation", "valid", "val"),
    "test": ("test",),
}


class DataError(ValueError):
    """The data set has problems; the message lists every one of them with its fix."""


@dataclass(frozen=True)
class Pair:
    """One photo and its mask. Paths are absolute; ``split`` is set only for pre-split roots."""

    image: str
    mask: str
    category: str
    split: str | None = None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the files, phrased for the person who has to fix it."""

    kind: str
    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.path}: {self.message} (fix: {self.fix})"


@dataclass
class ScanResult:
    """What :func:`find_pairs` found: usable pairs and every problem, in a stable order."""

    root: str
    pairs: list[Pair] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def problem_report(self) -> str:
        """One message listing every problem, grouped counts first."""
        counts = Counter(p.kind for p in self.problems)
        head = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        lines = [
            f"{len(self.problems)} problem(s) in {self.root} ({head}); "
            f"{len(self.pairs)} usable pair(s):"
        ]
        lines += [f"  - {p}" for p in self.problems]
        lines.append(
            "Fix the files listed above, or pass --on_bad_pair skip to train without them "
            "(the skipped files are then listed in bad_pairs.json in the output directory)."
        )
        return "\n".join(lines)


# --------------------------------------------------------------------------- discovery


def _child_dir(parent: Path, names: Sequence[str]) -> Path | None:
    """The first sub-folder of ``parent`` whose name matches one of ``names`` (any case)."""
    if not parent.is_dir():
        return None
    wanted = {n.lower() for n in names}
    matches = sorted(p for p in parent.iterdir() if p.is_dir() and p.name.lower() in wanted)
    return matches[0] if matches else None


def list_files_by_key(top: Path) -> dict[tuple[str, str], list[Path]]:
    """Files under ``top`` keyed by (category, stem), both lower-cased; hidden files skipped."""
    found: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden_or_os_file(d))
        rel = Path(dirpath).relative_to(top).as_posix()
        category = ROOT_CATEGORY if rel == "." else rel
        for name in sorted(filenames):
            if is_hidden_or_os_file(name):
                continue
            path = Path(dirpath) / name
            found[(category.lower(), path.stem.lower())].append(path)
    return found


def _without(key: tuple[str, str], suffix: str) -> tuple[str, str]:
    """``key`` with ``suffix`` (lower-cased) removed from the end of its stem, if it has it."""
    category, stem = key
    if suffix and stem.endswith(suffix) and len(stem) > len(suffix):
        return category, stem[: -len(suffix)]
    return key


def _keyed_without(
    files: dict[tuple[str, str], list[Path]], suffix: str
) -> dict[tuple[str, str], list[Path]]:
    """``files`` keyed as their photos are: ``IMG_1_mask.png`` as ``IMG_1.jpg`` for ``_mask``."""
    found: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for key, paths in files.items():
        found[_without(key, suffix.lower())] += paths
    return found


def shared_mask_suffix(images: set[tuple[str, str]], masks: set[tuple[str, str]]) -> str:
    """The suffix that every mask without a photo of its stem shares, when removing it pairs
    them: ``_mask`` for ``IMG_1_mask.png`` beside ``IMG_1.jpg``; ``""`` when there is none."""
    unpaired = sorted(stem for _, stem in masks - images)
    if not unpaired:
        return ""
    common = os.path.commonprefix([stem[::-1] for stem in unpaired])[::-1]
    # The suffix starts at a separator: "_mask" of "a_mask" and "b_mask", never "k".
    starts = [i for i, char in enumerate(common) if char in _SUFFIX_SEPARATORS]
    if not starts:
        return ""
    suffix = common[starts[0] :]
    stripped = {_without(key, suffix) for key in masks - images}
    # Most of the lone masks must then find their photo, or the suffix is a coincidence.
    return suffix if len(stripped & (images - masks)) * 2 > len(unpaired) else ""


def _category_name(path: Path, top: Path) -> str:
    rel = path.parent.relative_to(top).as_posix()
    return ROOT_CATEGORY if rel == "." else rel


def _scan_layout(
    images_dir: Path,
    masks_dir: Path,
    root: Path,
    split: str | None,
    result: ScanResult,
    mask_suffix: str | None = None,
) -> None:
    """Pair the files of one Images/Masks twin, appending pairs and problems to ``result``."""
    images = list_files_by_key(images_dir)
    masks = list_files_by_key(masks_dir)
    if mask_suffix is None and (suffix := shared_mask_suffix(set(images), set(masks))):
        logger.info(
            "the masks in %s are named after their photo plus %r: paired that way "
            "(--mask_suffix sets the suffix)",
            relative_to_root(masks_dir, root),
            suffix,
        )
        mask_suffix = suffix
    if mask_suffix:
        masks = _keyed_without(masks, mask_suffix)
    image_categories = Counter(cat for cat, _ in images)
    mask_categories = Counter(cat for cat, _ in masks)
    empty_mask_categories = {c for c in image_categories if c not in mask_categories}
    for category in sorted(empty_mask_categories):
        folder = masks_dir if category == ROOT_CATEGORY else masks_dir / category
        result.problems.append(
            Problem(
                "empty mask folder",
                relative_to_root(folder, root),
                f"no mask files for the {image_categories[category]} photo(s) of category "
                f"'{category}' in {relative_to_root(images_dir, root)}",
                "put the masks there (same file stem as each photo) or remove the category",
            )
        )

    for key in sorted(set(images) | set(masks)):
        category, _ = key
        image_files, mask_files = images.get(key, []), masks.get(key, [])
        for files, what in ((image_files, "photo"), (mask_files, "mask")):
            if len(files) > 1:
                names = ", ".join(relative_to_root(f, root) for f in files)
                result.problems.append(
                    Problem(
                        "duplicate stem",
                        relative_to_root(files[0], root),
                        f"{len(files)} {what} files share one stem: {names}",
                        "keep one file per stem in each category",
                    )
                )
        if len(image_files) > 1 or len(mask_files) > 1:
            continue
        if not mask_files:
            if category in empty_mask_categories:
                continue  # already reported once for the whole folder
            image = image_files[0]
            if _undecodable(image, "photo", root, result):
                continue
            expected = masks_dir / image.relative_to(images_dir)
            expected = expected.with_name(f"{image.stem}{mask_suffix or ''}.png")
            named = (
                f"the photo's file stem plus --mask_suffix {mask_suffix}"
                if mask_suffix
                else "file stem (or pass --mask_suffix, e.g. _mask, for IMG_1_mask.png)"
            )
            result.problems.append(
                Problem(
                    "missing mask",
                    relative_to_root(image, root),
                    f"no mask for this photo; expected e.g. {relative_to_root(expected, root)}",
                    f"add the mask (masks share the photo's category folder and {named})",
                )
            )
            continue
        if not image_files:
            mask = mask_files[0]
            if _undecodable(mask, "mask", root, result):
                continue
            result.problems.append(
                Problem(
                    "missing photo",
                    relative_to_root(mask, root),
                    "mask without a photo of the same stem in the twin Images folder",
                    "add the photo or remove the stray mask",
                )
            )
            continue
        image, mask = image_files[0], mask_files[0]
        image_header = _header(image, "photo", root, result)
        mask_header = _header(mask, "mask", root, result)
        if image_header is None or mask_header is None:
            continue
        if image_header[:2] != mask_header[:2]:
            result.problems.append(
                Problem(
                    "size mismatch",
                    relative_to_root(image, root),
                    f"photo is {image_header[0]}x{image_header[1]} (after EXIF rotation) but "
                    f"mask {relative_to_root(mask, root)} is {mask_header[0]}x{mask_header[1]}",
                    "re-export the mask at the photo's size and orientation",
                )
            )
            continue
        result.pairs.append(
            Pair(
                portable_path(image.resolve()),
                portable_path(mask.resolve()),
                portable_path(_category_name(image, images_dir)),
                split,
            )
        )


def _note_mask_dir(masks_dir: Path, root: Path) -> None:
    if masks_dir.name.lower() != "masks":
        logger.info("masks are read from %s/", relative_to_root(masks_dir, root))


def _header(path: Path, what: str, root: Path, result: ScanResult) -> tuple[int, int, str] | None:
    try:
        return read_header(path)
    except ImageReadError as err:
        kind, message, fix = read_problem(err, what, path)
        result.problems.append(Problem(kind, relative_to_root(path, root), message, fix))
        return None


def _undecodable(path: Path, what: str, root: Path, result: ScanResult) -> bool:
    return _header(path, what, root, result) is None


def find_pairs(data_root: str | os.PathLike, mask_suffix: str | None = None) -> ScanResult:
    """Find every photo/mask pair under ``data_root`` and every problem with the files.

    Only file headers are read, so this is fast on large folders. The mask folder is
    ``Masks/`` or one of the names exports use (``labels/``, ``annotations/``, ``gt/``, ...),
    said in the log. A mask's file stem is its photo's, or its photo's plus ``mask_suffix``;
    with None, a suffix that every lone mask shares (``IMG_1_mask.png`` beside ``IMG_1.jpg``)
    is found and used, and the log says so.

    Raises:
        DataError: ``data_root`` does not exist or matches neither layout.
    """
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist or is not a folder (check --data_root)")
    result = ScanResult(root=str(root))
    images_dir, masks_dir = _child_dir(root, _IMAGE_DIRS), _child_dir(root, _MASK_DIRS)
    if images_dir or masks_dir:
        if not (images_dir and masks_dir):
            missing = "Masks" if images_dir else "Images"
            raise DataError(
                f"{root} has {'Images' if images_dir else 'Masks'}/ but no {missing}/ folder: "
                "photos go in Images/<category>/ and masks with the same stem in Masks/<category>/ "
                "(or labels/, annotations/, gt/)"
            )
        _note_mask_dir(masks_dir, root)
        _scan_layout(images_dir, masks_dir, root, None, result, mask_suffix)
    else:
        split_dirs = {s: _child_dir(root, names) for s, names in _PRESPLIT_DIRS.items()}
        if not (split_dirs["train"] and split_dirs["validation"]):
            raise DataError(
                f"{root} matches no known layout: expected Images/ and Masks/ folders, or "
                "train/ and valid/ (or validation/) folders each holding images/ and masks/"
            )
        for split, split_dir in split_dirs.items():
            if split_dir is None:
                continue
            images_dir = _child_dir(split_dir, _IMAGE_DIRS)
            masks_dir = _child_dir(split_dir, _MASK_DIRS)
            if not (images_dir and masks_dir):
                raise DataError(
                    f"{split_dir} must hold both an images/ and a masks/ (or labels/) folder "
                    f"(found: {sorted(p.name for p in split_dir.iterdir())})"
                )
            _note_mask_dir(masks_dir, root)
            _scan_layout(images_dir, masks_dir, root, split, result, mask_suffix)
    if not result.pairs:
        result.problems.append(
            Problem(
                "no pairs",
                str(root),
                "no usable photo/mask pair was found",
                "check that photos and masks share file stems and category folders",
            )
        )
    return result
