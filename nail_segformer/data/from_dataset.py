"""Training data from a Hugging Face dataset: a Hub id, a ``save_to_disk`` folder, Parquet files.

The Hugging Face way to hand a segmentation set around is a dataset with an image column and a
label column of class ids (0 background, 1 nail, 255 ignored, as
:mod:`~nail_segformer.data.hub_dataset` writes them and as the transformers
semantic-segmentation example reads them). :func:`load_dataset_splits` brings one into the shape
the folder loader gives (``image``, ``label``, ``category`` and a ``row`` name per row), so
everything after it, the readers' rules, the resize cache and the metrics, is the same; the
images stay the bytes the dataset carries and are decoded by the package's own readers.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from nail_segformer.data.discovery import DataError
from nail_segformer.hub import is_hub_id

__all__ = ["IMAGE_COLUMNS", "LABEL_COLUMNS", "load_dataset_splits", "read_id2label", "nail_ids"]

logger = logging.getLogger(__name__)

# Column names tried in order when --image_column / --label_column are not given: what the
# Hub's segmentation sets and the transformers example use.
IMAGE_COLUMNS = ("image", "pixel_values")
LABEL_COLUMNS = ("label", "annotation", "mask", "segmentation_mask")
# Split names as datasets' own file-name patterns read them; others are left out, with a note.
_SPLIT_NAMES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
}
_DEFAULT_CATEGORY_COLUMN = "category"
_ID2LABEL_FILE = "id2label.json"


def load_dataset_splits(
    name: str | os.PathLike,
    image_column: str | None = None,
    label_column: str | None = None,
    category_column: str | None = None,
    validation_fraction: float = 0.1,
    seed: int = 42,
    config_name: str | None = None,
    revision: str | None = None,
    id_column: str | None = None,
):
    """Load a dataset's splits as a ``DatasetDict`` shaped like the folder loader's.

    Args:
        name: a folder written by ``save_to_disk`` (a ``DatasetDict`` or one ``Dataset``, taken
            as ``train``), a folder of Parquet files named by split (``train.parquet``,
            ``validation.parquet``, ...; read by ``datasets.load_dataset``), or a Hub dataset id
            (``datasets.load_dataset``; from the HF cache when the Hub is offline or out of
            reach).
        config_name, revision: of a Hub dataset (``--dataset_config_name``,
            ``--dataset_revision``).
        id_column: a column whose value is added to each row's name (a file name, an id).
        image_column, label_column: default to the first of :data:`IMAGE_COLUMNS` /
            :data:`LABEL_COLUMNS` the set has.
        category_column: stratifies a carved validation split and names categories in the card;
            defaults to ``category`` when the set has it.
        validation_fraction, seed: a set without a validation split gets one carved from
            ``train`` (stratified by category when there is one). A missing test split stays
            missing.

    Returns:
        ``DatasetDict`` with ``train``, ``validation`` and maybe ``test``; columns ``image``
        and ``label`` (``datasets.Image``), ``category`` (``ClassLabel``) and ``row`` (``"train
        row 12"``, or ``"train row 12 (IMG_0042)"`` with ``id_column``: what messages name a row
        by, since it has no file).

    Raises:
        DataError: the folder holds no dataset, a Hub dataset is neither reachable nor cached,
            a column is missing or of the wrong type, or there is no training split.
    """
    from datasets import DatasetDict

    folder = Path(name).expanduser()
    if folder.is_dir() or not is_hub_id(str(name)):
        splits = _read(folder)
    else:
        splits = _read_hub(str(name), config_name, revision)
    renamed = {}
    for split, dataset in splits.items():
        if split not in _SPLIT_NAMES:
            logger.warning(
                "dataset %s: split %r is not train, validation or test; left out", name, split
            )
            continue
        renamed[_SPLIT_NAMES[split]] = dataset
    if "train" not in renamed:
        raise DataError(
            f"dataset {name} has no train split (it has: {', '.join(splits) or 'none'}); name the "
            "training split train"
        )
    first = renamed["train"]
    image_column = _column(name, first, image_column, IMAGE_COLUMNS, "--image_column")
    label_column = _column(name, first, label_column, LABEL_COLUMNS, "--label_column")
    if category_column is None and _DEFAULT_CATEGORY_COLUMN in first.column_names:
        category_column = _DEFAULT_CATEGORY_COLUMN
    for column, flag in ((category_column, "--category_column"), (id_column, "--id_column")):
        if column is not None:
            _column(name, first, column, (), flag)
    out = {
        split: _normalise(
            name, split, dataset, image_column, label_column, category_column, id_column
        )
        for split, dataset in renamed.items()
    }
    notes = []
    if "validation" not in out:
        out["train"], out["validation"], how = _carve(out["train"], validation_fraction, seed)
        notes.append(f"validation carved from train ({validation_fraction:g}, {how})")
    if "test" not in out:
        notes.append("no test split")
    logger.info(
        "dataset %s: %s%s",
        name,
        ", ".join(
            f"{split} {len(out[split])}"
            for split in ("train", "validation", "test")
            if split in out
        ),
        "".join(f"; {note}" for note in notes),
    )
    return DatasetDict({s: out[s] for s in ("train", "validation", "test") if s in out})


def _read(path: Path) -> dict:
    """The splits of a ``save_to_disk`` folder or a Parquet folder, by their own names."""
    from datasets import Dataset, load_dataset, load_from_disk

    if not path.is_dir():
        raise DataError(
            f"--dataset_name {path}: no such folder. It takes a folder written by save_to_disk "
            "or a folder of Parquet files named by split (train.parquet, validation.parquet)"
        )
    try:
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            loaded = load_from_disk(str(path))
        elif any(path.rglob("*.parquet")):
            loaded = load_dataset(str(path))
        else:
            raise DataError(
                f"{path} holds neither a dataset written by save_to_disk (dataset_dict.json) "
                "nor Parquet files"
            )
    except DataError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as err:  # pyarrow's errors are ValueErrors
        raise DataError(f"cannot read the dataset in {path}: {err}") from err
    return {"train": loaded} if isinstance(loaded, Dataset) else dict(loaded)


def read_id2label(name: str | os.PathLike, revision: str | None = None) -> dict[int, str] | None:
    """The classes a dataset names in its ``id2label.json`` (beside the data, in the folder or
    the Hub repo, as :mod:`~nail_segformer.data.hub_dataset` writes it); None without one.

    Raises:
        DataError: the file is not a JSON object of class ids to names.
    """
    folder = Path(name).expanduser()
    if folder.is_dir():
        path = folder / _ID2LABEL_FILE
        path = path if path.is_file() else None
    elif is_hub_id(str(name)):
        path = _hub_file(str(name), _ID2LABEL_FILE, revision)
    else:
        path = None
    if path is None:
        return None
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return {int(k): str(v) for k, v in raw.items()}
    except (OSError, ValueError, AttributeError) as err:
        raise DataError(
            f"{_ID2LABEL_FILE} of dataset {name} is not a JSON object of class ids to names "
            f'(such as {{"0": "background", "1": "nail"}}): {err}'
        ) from err


def nail_ids(name, nail_values: str | None, id2label: dict[int, str] | None) -> str | None:
    """``--nail_values`` for a dataset as class ids (text, as the flag takes it): names looked
    up in ``id2label``, ids kept.

    Without ``nail_values``, a set whose ``id2label`` names other classes than background and
    nail (at 0 and 1) is refused, since training would not know which is nail.

    Raises:
        DataError: a name that is not a class, or no nail choice for a set of other classes;
            the message lists the classes.
    """
    listed = ", ".join(f"{i} {label}" for i, label in sorted((id2label or {}).items()))
    if nail_values is None:
        if id2label and (set(id2label) - {0, 1, 255} or "nail" not in id2label.get(1, "").lower()):
            example = next((v for v in id2label.values() if "nail" in v.lower()), None)
            raise DataError(
                f"dataset {name} has the classes {listed} (id2label.json): say which is nail "
                f"with --nail_values, by name or id"
                + (f", e.g. --nail_values {example}" if example else "")
            )
        return None
    by_name = {label.lower(): i for i, label in (id2label or {}).items()}
    ids = []
    for entry in (e.strip() for e in nail_values.split(",")):
        if entry.isdigit():
            ids.append(entry)
        elif entry.lower() in by_name:
            ids.append(str(by_name[entry.lower()]))
        else:
            known = f"its classes: {listed}" if id2label else "it has no id2label.json to name them"
            raise DataError(
                f"--nail_values {entry}: dataset {name} has no class of that name; {known}"
            )
    return ",".join(ids)


def _hub_file(name: str, filename: str, revision: str | None) -> str | None:
    """A file of a Hub dataset repo: downloaded when the Hub answers, else from the HF cache."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError

    from nail_segformer.hub import hub_reachable

    if not _offline() and hub_reachable():
        try:
            return hf_hub_download(name, filename, repo_type="dataset", revision=revision)
        except EntryNotFoundError:
            return None
    cached = try_to_load_from_cache(name, filename, repo_type="dataset", revision=revision)
    return cached if isinstance(cached, str) else None


def _offline() -> bool:
    """HF_HUB_OFFLINE, or HF_DATASETS_OFFLINE, which datasets also obeys."""
    import datasets.config

    from nail_segformer.hub import hub_is_offline

    return hub_is_offline() or bool(datasets.config.HF_HUB_OFFLINE)


def _read_hub(name: str, config_name: str | None, revision: str | None) -> dict:
    """The splits of a Hub dataset: downloaded when the Hub answers, else read from the HF cache
    (``datasets`` keeps each set it prepared; offline it takes the latest one cached)."""
    import datasets.config
    from datasets import load_dataset

    from nail_segformer.hub import hub_reachable

    offline = _offline()
    reachable = not offline and hub_reachable()
    try:
        if reachable:
            return dict(load_dataset(name, config_name, revision=revision))
        # Out of reach but not declared offline: read the cache at once instead of waiting
        # out the downloads' retries.
        declared, datasets.config.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE, True
        try:
            return dict(load_dataset(name, config_name, revision=revision))
        finally:
            datasets.config.HF_HUB_OFFLINE = declared
    except (ConnectionError, FileNotFoundError, ValueError) as err:
        if reachable:
            raise DataError(
                f"cannot load dataset '{name}' from the Hub: {err}. Check the id (and "
                "--dataset_config_name, --dataset_revision); a private set needs a token "
                "(hf auth login)"
            ) from err
        reason = (
            "offline mode is set (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE)"
            if offline
            else "the Hugging Face Hub cannot be reached"
        )
        raise DataError(
            f"cannot load dataset '{name}': {reason} and it is not in the local cache "
            f"({datasets.config.HF_DATASETS_CACHE}). Either go online (or unset that variable) "
            "so it can be downloaded once, or pass a local folder (save_to_disk or Parquet) to "
            "--dataset_name"
        ) from err


def _column(name, dataset, chosen: str | None, candidates: tuple[str, ...], flag: str) -> str:
    if chosen is None:
        chosen = next((c for c in candidates if c in dataset.column_names), None)
        if chosen is None:
            raise DataError(
                f"dataset {name} has none of the columns {', '.join(candidates)}; its columns: "
                f"{', '.join(dataset.column_names)}. Pass {flag}"
            )
    elif chosen not in dataset.column_names:
        raise DataError(
            f"dataset {name} has no column {chosen!r} ({flag}); its columns: "
            f"{', '.join(dataset.column_names)}"
        )
    return chosen


def _normalise(name, split: str, dataset, image_column, label_column, category_column, id_column):
    """One split with the folder loader's columns (see :func:`load_dataset_splits`)."""
    from datasets import ClassLabel
    from datasets import Image as ImageFeature

    for column, flag in ((image_column, "--image_column"), (label_column, "--label_column")):
        if column not in dataset.column_names:
            raise DataError(f"dataset {name}: split {split} has no column {column!r} ({flag})")
        feature = dataset.features[column]
        if not isinstance(feature, ImageFeature):
            # Parquet written without datasets' metadata keeps images as {bytes, path} structs.
            if not (isinstance(feature, dict) and "bytes" in feature):
                raise DataError(
                    f"dataset {name}: column {column!r} of split {split} holds {feature}, not "
                    f"images; pass {flag} naming the image column"
                )
            dataset = dataset.cast_column(column, ImageFeature())
    keep = {image_column: "image", label_column: "label"}
    if category_column is not None:
        keep[category_column] = "category"
    names = [f"{split} row {index}" for index in range(len(dataset))]
    if id_column is not None:
        names = [f"{row} ({value})" for row, value in zip(names, dataset[id_column], strict=True)]
    dataset = dataset.select_columns(list(keep)).rename_columns(
        {old: new for old, new in keep.items() if old != new}
    )
    if "category" in dataset.column_names and not isinstance(
        dataset.features["category"], ClassLabel
    ):
        dataset = dataset.class_encode_column("category")
    return dataset.add_column("row", names)


def _carve(train, fraction: float, seed: int):
    """``(train, validation, how)``: a share of ``train`` held out, stratified by category when
    the set has categories and each can give a row to both parts."""
    if "category" in train.column_names:
        try:
            parts = train.train_test_split(
                test_size=fraction, seed=seed, stratify_by_column="category"
            )
            return parts["train"], parts["test"], "stratified by category"
        except ValueError:  # fewer held-out rows than categories, or a category of one row
            pass
    try:
        parts = train.train_test_split(test_size=fraction, seed=seed)
    except ValueError as err:  # too few rows to hold any out
        raise DataError(
            f"the dataset has no validation split and {len(train)} training row(s), too few to "
            f"carve one from ({err}); add a validation split"
        ) from err
    return parts["train"], parts["test"], "at random"
