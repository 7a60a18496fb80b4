"""``python -m nail_segformer.data DATA_ROOT``: the data checker, and the folder written out as
a Hugging Face dataset (``--save_to_disk DIR``); ``--dataset_name NAME`` checks a dataset."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from nail_segformer.data.check import format_summary, summarize
from nail_segformer.data.discovery import DataError, Problem, find_pairs
from nail_segformer.data.files import parse_nail_values
from nail_segformer.data.splits import _validate_fractions, split_pairs

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``python -m nail_segformer.data DATA_ROOT``: check a folder and print a summary.

    With ``--save_to_disk DIR``, a clean folder is then written there as a ``DatasetDict``
    (:mod:`nail_segformer.data.hub_dataset`). With ``--dataset_name NAME`` instead of a folder,
    every row of a Hugging Face dataset is read as training would read it. Exits 0 when the
    data is clean (and written), 1 when there are problems (nothing is written), 2 when it
    cannot be read or written.
    """
    parser = argparse.ArgumentParser(
        prog="python -m nail_segformer.data",
        usage="python -m nail_segformer.data DATA_ROOT [--flag value ...]",
        description=main.__doc__,
    )
    parser.add_argument(
        "data_root", nargs="?", help="folder with Images/ + Masks/ (or train/ valid/ test/)"
    )
    parser.add_argument(
        "--dataset_name",
        default=None,
        help="check a Hugging Face dataset instead (Hub id, save_to_disk or Parquet folder), "
        "as training reads it",
    )
    parser.add_argument("--validation_fraction", type=float, default=0.1)
    parser.add_argument("--test_fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--id_column",
        default=None,
        help="with --dataset_name: a column added to each row's name (train row 12 (IMG_1))",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--headers_only",
        action="store_true",
        help="do not decode pixels (fast; no nail fraction, no truncation check)",
    )
    parser.add_argument(
        "--nail_values",
        default=None,
        help="mask values (or #rrggbb colours) that mean nail, as for training; default: each "
        "mask is read by the convention its values show",
    )
    parser.add_argument(
        "--mask_suffix",
        default=None,
        help="what mask file names add to their photo's stem (IMG_1_mask.png: _mask); default: "
        "found from the files",
    )
    parser.add_argument(
        "--save_to_disk",
        default=None,
        metavar="DIR",
        help="write the folder, split as training would split it, as a Hugging Face dataset "
        "(image, label as class ids, category) into the new folder DIR",
    )
    parser.add_argument(
        "--push_to_hub",
        action="store_true",
        help="with --save_to_disk: push the written set to --hub_dataset_id (private unless "
        "--public)",
    )
    parser.add_argument("--hub_dataset_id", default=None, help="e.g. you/nail-photos")
    parser.add_argument("--public", action="store_true", help="with --push_to_hub: a public set")
    args = parser.parse_args(argv)
    if (args.data_root is None) == (args.dataset_name is None):
        parser.error("the following arguments are required: data_root (or --dataset_name)")
    if args.dataset_name is not None:
        if args.save_to_disk or args.mask_suffix or args.headers_only:
            parser.error("--save_to_disk, --mask_suffix and --headers_only read a DATA_ROOT folder")
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return _check_dataset(args)
    if args.push_to_hub and not (args.save_to_disk and args.hub_dataset_id):
        parser.error("--push_to_hub pushes the set --save_to_disk DIR writes: pass both, and "
                     "--hub_dataset_id")  # fmt: skip
    try:  # before the folder is scanned, which can take a while
        _validate_fractions(args.validation_fraction, args.test_fraction)
        nail_values = parse_nail_values(args.nail_values)
    except ValueError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # How the files were paired (mask folder name, file-name suffix) is worth one line each.
    logging.getLogger("nail_segformer.data.discovery").setLevel(logging.INFO)
    try:
        scan = find_pairs(args.data_root, args.mask_suffix)
        pairs = split_pairs(scan.pairs, args.validation_fraction, args.test_fraction, args.seed)
    except (DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = summarize(pairs, scan, read_masks=not args.headers_only, nail_values=nail_values)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    if summary["problems"]:
        if args.save_to_disk:
            print(
                f"nothing written to {args.save_to_disk}: fix the problems first", file=sys.stderr
            )
        return 1
    if args.save_to_disk:
        return _save(pairs, args, nail_values)
    return 0


def _check_dataset(args) -> int:
    """Read every row of every split of ``--dataset_name`` as training would, and list the rows
    that cannot be read (named by split and row)."""
    from nail_segformer.data.cache import check_pairs
    from nail_segformer.data.from_dataset import load_dataset_splits, nail_ids, read_id2label

    logging.getLogger("nail_segformer.data.from_dataset").setLevel(logging.INFO)
    try:
        splits = load_dataset_splits(
            args.dataset_name,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            id_column=args.id_column,
        )
        id2label = read_id2label(args.dataset_name)
        nail_values = parse_nail_values(nail_ids(args.dataset_name, args.nail_values, id2label))
    except (DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    problems = []
    for dataset in splits.values():
        # The whole photo, as evaluation reads it: a file cut short fails here too.
        problems += check_pairs(dataset, None, nail_values, class_ids=True)[1]
    summary = {
        "dataset": str(args.dataset_name),
        "rows": {split: len(dataset) for split, dataset in splits.items()},
        "classes": {str(i): label for i, label in sorted((id2label or {}).items())} or None,
        "problems": problems,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        rows = ", ".join(f"{split} {n}" for split, n in summary["rows"].items())
        print(f"dataset {args.dataset_name}: {rows} rows; {len(problems)} problem(s)")
        for p in problems:
            print(f"  - {Problem(**p)}")
    return 1 if problems else 0


def _save(pairs, args, nail_values) -> int:
    from nail_segformer.data.files import ImageReadError
    from nail_segformer.data.hub_dataset import manifest_path, save_hub_dataset

    try:
        written = save_hub_dataset(pairs, args.data_root, args.save_to_disk, nail_values)
    except (FileExistsError, ImageReadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = ", ".join(f"{split} {len(ds)}" for split, ds in written.items())
    print(
        f"wrote {args.save_to_disk} ({rows}); which row is which file: "
        f"{manifest_path(args.save_to_disk)} (it names your files: keep it out of uploads)"
    )
    if not args.push_to_hub:
        return 0
    from nail_segformer.data.hub_dataset import push_hub_dataset
    from nail_segformer.hub import PushError

    try:
        repo = push_hub_dataset(args.save_to_disk, args.hub_dataset_id, args.public)
    except PushError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    print(f"pushed the set to the dataset repo {repo}")
    return 0
