"""Pre-resized copies of the training and evaluation splits, built once with ``Dataset.map``.

Decoding a 12 MP phone JPEG and its PNG mask costs far more than everything else a training
sample needs, and the training transform only ever looks at the photo brought down to the
working size (:func:`nail_segformer.data.transforms.working_size`). So each training pair is
decoded once (JPEGs at reduced scale, see :func:`~nail_segformer.data.files.load_image`),
shrunk to at most the working size a side (never enlarged) and stored in an Arrow file that
``datasets`` memory-maps, as JPEG at quality 95 (about 1 level from the exact pixels; training
re-compresses photos as an augmentation anyway) with PNG labels; every epoch then decodes those
small files. Validation and test pairs are stored as evaluation reads them
(:func:`build_eval_cache`): the processor's resized pixels, exactly (lossless WebP).

The file is named by a fingerprint of what it holds: the working size, ``--nail_values``, a
format version, and the path, size and modification time of every photo and mask. A second run
on the same files finds it and skips the work (``datasets``' ``load_from_cache_file``), under
DDP the main process builds it while the others wait (the caller's ``main_process_first``) and
then read it, and a changed file changes the name, so nothing stale is ever read.

A file that cannot be read, or that holds other rows than the split it was built for (a copy
gone wrong, a synced folder, a disk error), is rebuilt with a warning saying why; temporary files
of builds killed midway are removed once they are ten minutes old.

Where: ``<HF_DATASETS_CACHE>/nail_segformer/`` (``~/.cache/huggingface/datasets/nail_segformer``
by default) or a folder of the caller's choice; never the data folder. Size, for 12 MP phone
photos at the default 512 px: about 0.1-0.2 MiB per training pair and 0.15-0.2 MiB per
evaluation pair, a tenth of the JPEGs' own size (docs/data.md). Delete the folder to clear it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from nail_segformer.data.dataset import undecoded
from nail_segformer.data.files import (
    DiskFullError,
    ImageReadError,
    MaskValuesError,
    PairReadError,
    disk_full_message,
    is_disk_full,
    local_path,
    read_problem,
)
from nail_segformer.data.transforms import CACHED_COLUMNS, encode_cached, load_row, processor_size

__all__ = [
    "CACHE_FORMAT",
    "default_cache_dir",
    "cache_fingerprint",
    "build_resized_cache",
    "build_eval_cache",
    "check_pairs",
    "report_other_caches",
]

logger = logging.getLogger(__name__)

# Bump when what a cache file holds changes meaning (resize filter, column layout, labels).
CACHE_FORMAT = 3
_SUBDIR = "nail_segformer"
# Rows per Arrow record batch: a few photos, so building never holds much in memory.
_WRITER_BATCH_SIZE = 8
# Bytes a cached pair takes per pixel, for the disk-full message: about twice the most measured
# on 12 MP phone photos (JPEG q95 4:4:4 and PNG labels 0.16-0.30; lossless WebP and PNG labels
# 0.59-0.80; benchmarks/RESULTS.md, "A cache smaller than the photos").
_TRAINING_BYTES_PER_PIXEL, _EVALUATION_BYTES_PER_PIXEL = 0.6, 1.6


def default_cache_dir() -> Path:
    """``<HF_DATASETS_CACHE>/nail_segformer``: ``datasets``' own cache folder."""
    import datasets.config

    return Path(datasets.config.HF_DATASETS_CACHE) / _SUBDIR


def _file_stamp(path: str) -> tuple[str, int, int]:
    try:
        stat = os.stat(local_path(path))
    except OSError:
        return path, -1, -1  # a missing file fails when read, with its name
    return path, stat.st_size, stat.st_mtime_ns


def cache_fingerprint(
    image_paths,
    mask_paths,
    size: int,
    nail_values: tuple | None,
    dataset_fingerprint=None,
    settings: dict | None = None,
) -> str:
    """Hex fingerprint of a cache's content: format, size, ``nail_values``, other ``settings``
    (the evaluation cache's processor) and every file's stamp, or, for a split that carries its
    images as bytes, ``datasets``' own fingerprint of it (``dataset_fingerprint``; the paths are
    then ignored)."""
    digest = hashlib.sha256()
    header = {"format": CACHE_FORMAT, "size": size, "nail_values": nail_values}
    if settings is not None:
        header["settings"] = settings
    if dataset_fingerprint is not None:
        header["dataset"] = dataset_fingerprint
    digest.update(json.dumps(header, sort_keys=True).encode())
    for image, mask in zip(image_paths, mask_paths, strict=True):
        digest.update(json.dumps([_file_stamp(image), _file_stamp(mask)]).encode())
    return digest.hexdigest()[:40]


def _key_columns(dataset) -> list[str]:
    """The columns that name a row: ``row`` for a split loaded from a dataset (its rows carry
    bytes), else the photo and mask paths."""
    return ["row"] if "row" in dataset.column_names else ["image", "label"]


def _keys(table: dict) -> list:
    """Each row's name, from the :func:`_key_columns` of a split (as ``to_dict`` gives them)."""
    if "row" in table:
        return table["row"]
    pairs = zip(table["image"], table["label"], strict=True)
    return [(image["path"], mask["path"]) for image, mask in pairs]


def _processes(num_proc: int | None, dataset) -> int | None:
    """``Dataset.map``'s ``num_proc``: several only when asked and there are rows to share."""
    return num_proc if num_proc and num_proc > 1 and len(dataset) > 1 else None


def _resize_example(
    example: dict, size: int, nail_values: tuple | None, class_ids: bool = False
) -> dict:
    """``Dataset.map`` function: one pair at the working size, or why it cannot be read."""
    pair, failed = _read(example, size, nail_values, class_ids)
    return failed or _stored(*pair)


def _eval_example(example: dict, processor, nail_values: tuple | None, class_ids: bool) -> dict:
    """``Dataset.map`` function: one pair as evaluation feeds it to the model, before the
    processor's rescale and normalisation (per 8-bit level, so applied when read)."""
    pair, failed = _read(example, None, nail_values, class_ids)
    if failed:
        return failed
    image, labels, convention = pair
    out = processor(
        images=[image],
        segmentation_maps=[labels],
        do_reduce_labels=False,
        do_rescale=False,
        do_normalize=False,
        input_data_format="channels_last",  # a photo 1 or 3 pixels tall is no channel axis
        return_tensors="np",
    )
    pixels = np.ascontiguousarray(out["pixel_values"][0].transpose(1, 2, 0), dtype=np.uint8)
    labels = out["labels"][0].astype(np.uint8)
    return _stored(pixels, labels, convention, exact=True)


def _read(example: dict, size: int | None, nail_values, class_ids: bool):
    """``((image, labels, convention), None)``, or ``(None, the row saying why not)``."""
    try:
        return load_row(example, size, nail_values, class_ids), None
    except PairReadError as err:
        return None, _failed(err.__cause__, {"image": err.image, "label": err.mask})


def _failed(err: ImageReadError, sources: dict) -> dict:
    # The photo is read first: an error that names the mask is the mask's (its values, its
    # decoding, or a size that differs from the photo's).
    text = str(err)
    what = (
        "mask"
        if isinstance(err, MaskValuesError) or text.startswith(("mask ", "cannot decode mask"))
        else "photo"
    )
    path = sources["label" if what == "mask" else "image"]
    kind, message, fix = read_problem(err, what, path)
    return dict(
        zip(CACHED_COLUMNS, (b"", b"", 0, 0, message), strict=True),
        error_kind=kind,
        error_file=path,
        error_fix=fix,
        convention="",
    )


def _stored(image: np.ndarray, labels: np.ndarray, convention: str, exact: bool = False) -> dict:
    photo, mask = encode_cached(image, labels, exact)
    return dict(
        zip(CACHED_COLUMNS, (photo, mask, image.shape[0], image.shape[1], ""), strict=True),
        error_kind="",
        error_file="",
        error_fix="",
        convention=convention,
    )


def build_resized_cache(
    dataset,
    size: int,
    nail_values: tuple | None = None,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    prune: bool | None = False,
    class_ids: bool = False,
):
    """Build (or find) the pre-resized copy of a training split.

    Args:
        dataset: a ``datasets.Dataset`` with ``image`` and ``label`` columns of file paths (as
            :func:`nail_segformer.data.build_dataset_dict` makes), or of bytes with a ``row``
            column naming each row (as :func:`nail_segformer.data.load_dataset_splits` makes).
        size: the working size in pixels (the longest a side may stay).
        nail_values: passed to ``load_labels`` (``--nail_values``).
        cache_dir: where the Arrow file goes; ``None`` for :func:`default_cache_dir`.
        num_proc: processes that build it (``Dataset.map``'s ``num_proc``); ``None`` for one.
        prune: remove the folder's caches of other fingerprints (other photos or settings, which
            may still serve another configuration); without it they are listed in the log;
            ``None`` leaves them to the caller (see :func:`report_other_caches`).
        class_ids: labels are a dataset's class ids (see ``load_labels``).

    Returns:
        ``(cached, problems)``: the split with the :data:`CACHED_COLUMNS` added and unreadable
        pairs left out, and one dict per left-out pair (``kind``, ``path``, ``message``,
        ``fix``, as in ``bad_pairs.json``).
    """
    return _build(
        dataset,
        _resize_example,
        {"size": size, "nail_values": nail_values, "class_ids": class_ids},
        {"size": size, "nail_values": nail_values},
        class_ids,
        cache_dir,
        num_proc,
        prune,
        f"training photos at most {size} px",
        _TRAINING_BYTES_PER_PIXEL * size * size,
    )


def build_eval_cache(
    dataset,
    processor,
    nail_values: tuple | None = None,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    prune: bool | None = False,
    class_ids: bool = False,
):
    """Build (or find) the evaluation input of a validation or test split.

    Each pair is read as evaluation reads it (the whole photo, no augmentation) and stored as
    the processor makes it before rescaling and normalising: its resized ``uint8`` pixels and
    the labels at its size. :class:`~nail_segformer.data.transforms.SegmentationTransform`
    applies the rescale and normalisation per 8-bit level when it reads them, so batches are
    bit for bit those of the photos themselves, without decoding a full-size photo at every
    evaluation. The fingerprint holds the processor's settings and class, beside what
    :func:`build_resized_cache`'s holds.

    Arguments and return value as for :func:`build_resized_cache`, with ``processor`` (the
    run's image processor) in place of ``size``.
    """
    height, width = processor_size(processor)
    settings = {"evaluation": type(processor).__name__, "processor": processor.to_dict()}
    return _build(
        dataset,
        _eval_example,
        {"processor": processor, "nail_values": nail_values, "class_ids": class_ids},
        {"size": max(height, width), "nail_values": nail_values, "settings": settings},
        class_ids,
        cache_dir,
        num_proc,
        prune,
        f"evaluation photos at {height}x{width} px",
        _EVALUATION_BYTES_PER_PIXEL * height * width,
    )


def _build(
    dataset,
    function,
    fn_kwargs: dict,
    header: dict,
    class_ids: bool,
    cache_dir,
    num_proc: int | None,
    prune: bool | None,
    what: str,
    bytes_per_pair: float,
):
    """The cache of ``dataset.map(function)``: found by fingerprint, or (re)built."""
    from datasets import Features, Value

    dataset = undecoded(dataset)
    key_columns = _key_columns(dataset)
    keys = _keys(dataset.select_columns(key_columns).to_dict())
    # datasets' fingerprint of a split of bytes (what Dataset.map names its own caches by)
    dataset_fingerprint = dataset._fingerprint if key_columns == ["row"] else None
    files = [] if dataset_fingerprint else keys
    fingerprint = cache_fingerprint(
        [i for i, _ in files], [m for _, m in files], dataset_fingerprint=dataset_fingerprint,
        **header,
    )  # fmt: skip
    if class_ids:  # a name of its own; folder caches keep the fingerprints they had
        fingerprint = hashlib.sha256(f"{fingerprint} class ids".encode()).hexdigest()[:40]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    cache_file = folder / f"resized-{fingerprint}.arrow"
    _remove_orphans(folder)
    reused = _size_on_disk(folder, cache_file) > 0
    # A split that carries its images as bytes would hold them twice: the cache keeps only the
    # pixels it made of them (and the row names).
    dropped = ["image", "label"] if dataset_fingerprint else []
    features = Features(
        {
            **{k: v for k, v in dataset.features.items() if k not in dropped},
            CACHED_COLUMNS[0]: Value("large_binary"),
            CACHED_COLUMNS[1]: Value("large_binary"),
            CACHED_COLUMNS[2]: Value("int32"),
            CACHED_COLUMNS[3]: Value("int32"),
            CACHED_COLUMNS[4]: Value("string"),
            "error_kind": Value("string"),
            "error_file": Value("string"),
            "error_fix": Value("string"),
            "convention": Value("string"),
        }
    )

    def build(reuse: bool):
        cached = dataset.map(
            function,
            fn_kwargs=fn_kwargs,
            features=features,
            remove_columns=dropped,
            cache_file_name=str(cache_file),
            load_from_cache_file=reuse,
            new_fingerprint=fingerprint,
            writer_batch_size=_WRITER_BATCH_SIZE,
            num_proc=_processes(num_proc, dataset),
            desc=f"Decoding {what} (once; cached)",
        )
        columns = [*key_columns, CACHED_COLUMNS[4], "error_kind", "error_file", "error_fix"]
        columns.append("convention")
        return cached, cached.select_columns(columns).to_dict()

    def disk_full() -> DiskFullError:
        needed = bytes_per_pair * len(dataset)
        return DiskFullError(disk_full_message(folder, needed, "the resize cache"))

    why = None
    try:
        cached, summary = build(reuse=True)
    except (OSError, ValueError) as err:  # pyarrow's errors are both: a cut or damaged file
        if is_disk_full(err):
            raise disk_full() from err
        why = f"it cannot be read ({err})"
    else:
        stored = _keys(summary)
        if len(stored) != len(dataset):
            why = f"it holds {len(stored)} of the {len(dataset)} pairs it was built for"
        elif stored != keys:
            why = "its rows are not the pairs it was built for"
    if why is not None:
        # A copy gone wrong, a synced folder or a disk error (datasets itself renames a whole
        # file into place): never train on what is left of it.
        logger.warning("rebuilding the resize cache %s: %s", cache_file, why)
        for part in folder.glob(f"{cache_file.stem}*.arrow"):
            part.unlink()
        try:
            cached, summary = build(reuse=False)
        except OSError as err:
            if is_disk_full(err):
                raise disk_full() from err
            raise
        reused = False
    keep, problems = _unreadable(summary)
    conventions = Counter(c for c in summary["convention"] if c)
    logger.info(
        "%s resize cache %s (%d pairs, %s, %.0f MiB); mask conventions %s",
        "reusing" if reused else "built",
        cache_file,
        len(keep),
        what,
        _size_on_disk(folder, cache_file) / 2**20,
        dict(sorted(conventions.items())),
    )
    if prune is not None:
        report_other_caches(folder, [cache_file], prune)
    if problems:
        cached = cached.select(keep)
    return cached, problems


def check_pairs(
    dataset,
    size: int | None,
    nail_values: tuple | None = None,
    num_proc: int | None = None,
    class_ids: bool = False,
):
    """Decode every pair of a split once, as the resize cache would, and keep nothing but why a
    pair cannot be read: what training without the cache checks before its first step
    (``size`` None: at full size, as evaluation reads them).

    Returns:
        ``(readable, problems)`` as :func:`build_resized_cache` returns them, without the
        cached columns.
    """
    columns = [CACHED_COLUMNS[4], "error_kind", "error_file", "error_fix"]

    def check(example: dict) -> dict:
        result = _resize_example(example, size, nail_values, class_ids)
        return {k: v for k, v in result.items() if k in columns}

    summary = undecoded(dataset).map(
        check,
        remove_columns=dataset.column_names,
        keep_in_memory=True,
        num_proc=_processes(num_proc, dataset),
        desc="Checking that every pair decodes (once)",
    )
    keep, problems = _unreadable(summary.to_dict())
    return (dataset.select(keep) if problems else dataset), problems


def _unreadable(summary: dict) -> tuple[list[int], list[dict]]:
    """The rows to keep, and one problem dict per row whose pair could not be read."""
    keep, problems = [], []
    for row, error in enumerate(summary[CACHED_COLUMNS[4]]):
        if not error:
            keep.append(row)
            continue
        problems.append(
            {
                "kind": summary["error_kind"][row],
                "path": summary["error_file"][row],
                "message": error,
                "fix": summary["error_fix"][row],
            }
        )
    return keep, problems


# datasets builds into a "tmp*" file and renames it into place; a build killed midway leaves
# it behind. A live build writes a record batch every few photos, so one untouched this long
# is an orphan.
_ORPHAN_AGE_S = 600


def _remove_orphans(folder: Path) -> None:
    now, removed = time.time(), 0
    for path in folder.glob("tmp*"):
        try:
            if path.is_file() and now - path.stat().st_mtime > _ORPHAN_AGE_S:
                path.unlink()
                removed += 1
        except OSError:  # gone already, or not ours to remove: leave it
            continue
    if removed:
        logger.info(
            "removed %d temporary file(s) of interrupted cache builds in %s", removed, folder
        )


def report_other_caches(folder: str | os.PathLike, in_use: list, prune: bool) -> None:
    """List (or, with ``prune``, remove) the caches in ``folder`` other than ``in_use`` (cache
    files, or the splits read from them): those built for other photos or settings."""
    folder = Path(folder)
    stems = []
    for item in in_use:
        paths = (
            [f["filename"] for f in item.cache_files] if hasattr(item, "cache_files") else [item]
        )
        stems += [Path(p).stem.split("_")[0] for p in paths]
    others = [p for p in folder.glob("resized-*.arrow") if not p.name.startswith(tuple(stems))]
    if not others:
        return
    total = sum(p.stat().st_size for p in others) / 2**20
    newest = (time.time() - max(p.stat().st_mtime for p in others)) / 86400
    fingerprints = {p.name.split("_")[0].removesuffix(".arrow") for p in others}
    if prune:
        for path in others:
            path.unlink(missing_ok=True)
        logger.info(
            "removed %d other resize cache(s) from %s (%.0f MiB)", len(fingerprints), folder, total
        )
        return
    logger.info(
        "%s holds %d other resize cache(s) (other photos or settings, %.0f MiB, the newest %.1f "
        "days old); --prune_resize_cache removes them",
        folder,
        len(fingerprints),
        total,
        newest,
    )


def _size_on_disk(folder: Path, cache_file: Path) -> int:
    """Bytes of a cache file, or of its ``num_proc`` shards."""
    stem = cache_file.stem
    return sum(p.stat().st_size for p in folder.glob(f"{stem}*.arrow"))
