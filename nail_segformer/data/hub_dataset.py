"""A checked data folder written out as a Hugging Face dataset (``save_to_disk``, Hub push).

Columns: ``image`` (the photo), ``label`` (class ids as the package reads the mask: 0
background, 1 nail, 255 ignore, as a PNG), ``category`` (a ``ClassLabel``); one split per split
of the folder (its own, or the one training would draw). ``id2label.json`` and a dataset card
(``README.md``) go beside the data.

Photos keep their JPEG bytes, with every metadata segment removed but the EXIF orientation
(which ``datasets`` applies when it decodes): phone photos carry GPS positions, camera serials
and times, and re-encoding the rotated pixels losslessly would cost several times the size (see
docs/data.md). Other formats are stored as PNG of the pixels as seen. No file name of the user's
reaches the set: rows are named ``<split>_<row>``, and the mapping to the original files is
written beside the folder, never inside it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from nail_segformer.data.discovery import Pair
from nail_segformer.data.files import (
    _EXIF_ORIENTATION_TAG,
    _open_image,
    _orientation,
    load_image,
    load_labels,
)
from nail_segformer.data.splits import SPLITS
from nail_segformer.labels import ID2LABEL

__all__ = [
    "build_hub_dataset",
    "manifest_path",
    "push_hub_dataset",
    "save_hub_dataset",
    "strip_jpeg_metadata",
]

# JPEG segments kept: the frame, tables and scan, JFIF (APP0), Adobe colour transform (APP14)
# and the ICC profile (APP2); every other APPn (EXIF, XMP, IPTC, maker notes) and comments go.
_KEPT_APP = {0xE0, 0xE2, 0xEE}


def strip_jpeg_metadata(data: bytes, orientation: int = 1) -> bytes:
    """``data`` (a JPEG) without metadata, keeping only the EXIF orientation when it is not 1.

    The compressed image is copied byte for byte: the pixels decode exactly as before.

    Raises:
        ValueError: ``data`` is not a JPEG whose segments can be walked.
    """
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG (no start-of-image marker)")
    out = [data[:2]]
    if orientation != 1:
        exif = Image.Exif()
        exif[_EXIF_ORIENTATION_TAG] = orientation
        payload = exif.tobytes()
        out.append(b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload)
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"broken JPEG segment at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is image data
            out.append(data[pos:])
            break
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        segment = data[pos : pos + 2 + length]
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE) or marker in _KEPT_APP:
            out.append(segment)
        pos += 2 + length
    return b"".join(out)


def _photo_bytes(path: str) -> tuple[bytes, str]:
    """The photo's bytes for the dataset and their extension."""
    with _open_image(path, "photo") as im:
        fmt, orientation = im.format, _orientation(im)
    if fmt == "JPEG":
        return strip_jpeg_metadata(Path(path).read_bytes(), orientation), ".jpg"
    buffer = io.BytesIO()
    load_image(path).save(buffer, "PNG")  # the pixels as seen, no metadata
    return buffer.getvalue(), ".png"


def _label_bytes(path: str, nail_values) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(load_labels(path, nail_values), "L").save(buffer, "PNG")
    return buffer.getvalue()


def build_hub_dataset(pairs: Sequence[Pair], nail_values: tuple | None = None):
    """A ``DatasetDict`` of the split pairs (see the module docstring), and the name each row
    got, split by split: ``{split: [(neutral name, pair), ...]}``."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features
    from datasets import Image as ImageFeature

    categories = sorted({p.category for p in pairs})
    features = Features(
        {
            "image": ImageFeature(),
            "label": ImageFeature(),
            "category": ClassLabel(names=categories),
        }
    )
    splits, names = {}, {}
    for split in SPLITS:
        members = [p for p in pairs if p.split == split]
        if not members:
            continue
        rows: dict[str, list] = {"image": [], "label": [], "category": []}
        names[split] = []
        for index, pair in enumerate(members):
            name = f"{split}_{index:05d}"
            data, suffix = _photo_bytes(pair.image)
            rows["image"].append({"bytes": data, "path": name + suffix})
            rows["label"].append(
                {"bytes": _label_bytes(pair.mask, nail_values), "path": name + ".png"}
            )
            rows["category"].append(categories.index(pair.category))
            names[split].append((name, pair))
        splits[split] = Dataset.from_dict(rows, features=features, split=split)
    return DatasetDict(splits), names


def manifest_path(folder: str | os.PathLike) -> Path:
    """Where the row-to-file mapping of a written set goes: beside it, never inside."""
    folder = Path(folder)
    return folder.with_name(f"{folder.name}-files.csv")


def save_hub_dataset(
    pairs: Sequence[Pair],
    data_root: str | os.PathLike,
    folder: str | os.PathLike,
    nail_values: tuple | None = None,
):
    """Write the split pairs to ``folder`` with ``save_to_disk``, plus ``id2label.json`` and a
    dataset card; the mapping of rows to files goes to :func:`manifest_path`.

    Raises:
        FileExistsError: ``folder`` exists and is not empty (nothing is overwritten).
    """
    from nail_segformer.data.files import relative_to_root

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} exists and is not empty; choose a new folder")
    dataset_dict, names = build_hub_dataset(pairs, nail_values)
    dataset_dict.save_to_disk(str(folder))
    (folder / "id2label.json").write_text(json.dumps({str(k): v for k, v in ID2LABEL.items()}))
    (folder / "README.md").write_text(dataset_card(dataset_dict), encoding="utf-8")
    root = Path(data_root)
    with manifest_path(folder).open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["split", "row", "image", "mask"])
        for split, rows in names.items():
            for name, pair in rows:
                writer.writerow(
                    [
                        split,
                        name,
                        relative_to_root(pair.image, root),
                        relative_to_root(pair.mask, root),
                    ]
                )
    return dataset_dict


def push_hub_dataset(folder: str | os.PathLike, repo_id: str, public: bool = False) -> str:
    """Push a set written by :func:`save_hub_dataset` with ``DatasetDict.push_to_hub`` (its
    Parquet shards and card), then its ``id2label.json``; private unless ``public``.

    Returns:
        The dataset repo's id.

    Raises:
        PushError: the Hub refused or could not be reached; the written folder stays.
    """
    from datasets import load_from_disk

    from nail_segformer.hub import PushError, private_unless_public, push_folder

    private = private_unless_public("dataset", public)
    try:
        load_from_disk(str(folder)).push_to_hub(repo_id, private=private)
    except Exception as err:  # the client's HTTP and file errors
        raise PushError(
            f"pushing the dataset to {repo_id} failed ({type(err).__name__}: {err}); the set "
            f"stays in {folder}: run the same command again",
            str(err),
        ) from err
    return push_folder(
        folder, repo_id, ["id2label.json"], commit_message="id2label.json",
        repo_type="dataset", private=private,
    )  # fmt: skip


def dataset_card(dataset_dict) -> str:
    """The dataset card: what the columns hold, the splits and their sizes."""
    rows = "\n".join(f"| {split} | {len(ds)} |" for split, ds in dataset_dict.items())
    categories = dataset_dict[next(iter(dataset_dict))].features["category"].names
    return f"""---
task_categories:
- image-segmentation
tags:
- nail-segmentation
- nail_segformer
---

# Nail segmentation data

Hand photos with nail masks, written by `python -m nail_segformer.data --save_to_disk`.

- `image`: the photo. JPEGs keep their original compressed bytes with every metadata field
  removed but the EXIF orientation, which `datasets` applies when it decodes them; other
  formats are stored as PNG of the pixels as seen.
- `label`: class ids, a single-channel PNG: 0 background, 1 nail, 255 ignore (`id2label.json`).
- `category`: the photo's category folder ({", ".join(map(str, categories))}).

| split | rows |
|---|---|
{rows}
"""
