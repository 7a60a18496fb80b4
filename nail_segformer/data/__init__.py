"""From an ``Images/`` + ``Masks/`` folder to a :class:`datasets.DatasetDict`, and its transforms.

Two layouts are recognised under ``DATA_ROOT``:

- categorised or flat: ``Images/<category>/<file>`` with the twin ``Masks/<category>/<file>``
  (the nail set has categories ``1``..``4``; files directly in ``Images/`` form the category
  ``root``); the train/validation/test split is drawn here, stratified by category;
- pre-split: ``train/``, ``valid/`` or ``validation/``, and optionally ``test/``, each holding
  ``images|Images`` and ``masks|Masks`` in the layout above.

Photos and masks pair by category and file stem, case-insensitively and whatever the extension;
formats are decided by decoding. Every problem found is collected into one report instead of
failing on the first. Nothing under ``DATA_ROOT`` is ever written.

The stages, in the order the data flows: :mod:`.files` (decoding, EXIF, mask values),
:mod:`.discovery` (pairing and the problem report), :mod:`.splits` (split and manifest),
:mod:`.dataset` (the ``DatasetDict``), :mod:`.transforms` (augmentation and the image
processor), :mod:`.cache` (the pre-resized training split, or a check that every training pair
decodes), :mod:`.check` (the summary ``python -m nail_segformer.data`` prints).
"""

from nail_segformer.data.check import format_summary, summarize
from nail_segformer.data.dataset import ON_BAD_PAIR_CHOICES, build_dataset_dict, load_splits
from nail_segformer.data.discovery import (
    ROOT_CATEGORY,
    DataError,
    Pair,
    Problem,
    ScanResult,
    find_pairs,
    list_files_by_key,
)
from nail_segformer.data.files import (
    MASK_CONVENTIONS,
    DiskFullError,
    ImageReadError,
    MaskValuesError,
    PairReadError,
    is_hidden_or_os_file,
    load_image,
    load_labels,
    local_path,
    mask_to_labels,
    max_megapixels,
    parse_nail_values,
    portable_path,
    read_header,
)
from nail_segformer.data.splits import SPLITS, read_manifest, split_pairs, write_manifest
from nail_segformer.labels import BACKGROUND, ID2LABEL, IGNORE_INDEX, LABEL2ID, NAIL

__all__ = [
    "BACKGROUND",
    "NAIL",
    "IGNORE_INDEX",
    "ID2LABEL",
    "LABEL2ID",
    "SPLITS",
    "ROOT_CATEGORY",
    "ON_BAD_PAIR_CHOICES",
    "DataError",
    "DiskFullError",
    "ImageReadError",
    "MaskValuesError",
    "PairReadError",
    "MASK_CONVENTIONS",
    "Pair",
    "Problem",
    "ScanResult",
    "find_pairs",
    "list_files_by_key",
    "is_hidden_or_os_file",
    "split_pairs",
    "write_manifest",
    "read_manifest",
    "build_dataset_dict",
    "load_splits",
    "load_image",
    "load_labels",
    "mask_to_labels",
    "parse_nail_values",
    "max_megapixels",
    "portable_path",
    "local_path",
    "read_header",
    "summarize",
    "format_summary",
]
