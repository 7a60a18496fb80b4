"""The ``python -m nail_segformer.predict`` command: flags, the loop over photos, exit codes.

Photos stream through in batches: read (a photo that cannot be decoded fails by name and the
rest go on), predict, write mask, overlay and record, evaluate. Output folder layout::

    OUTPUT/masks/...           one L-mode PNG per photo, 0 background / 255 nail
    OUTPUT/overlays/...        the photo with nails tinted and outlined (--overlay_format)
    OUTPUT/predictions.jsonl   one record per input (fields: outputs.RECORD_FIELDS)
    OUTPUT/predictions.csv     the same records
    OUTPUT/metrics.json        with --masks: data-set metrics and per-photo figures
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from nail_segformer.data import ImageReadError, load_image, portable_path
from nail_segformer.data.files import disk_full_message, folder_bytes, is_disk_full
from nail_segformer.predict.infer import DEVICE_CHOICES, ONNX_FILES, ModelLoadError, onnx_file
from nail_segformer.predict.outputs import OVERLAY_FORMATS, InputItem, OutputWriter, expand_inputs
from nail_segformer.predict.predictor import (
    MODES,
    TTA_CHOICES,
    Prediction,
    Predictor,
    check_options,
)

if TYPE_CHECKING:
    from nail_segformer.predict.evaluation import MaskLookup

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

_USAGE = (
    "python -m nail_segformer.predict --model RUN --input PHOTO [PHOTO ...] --output DIR "
    "[--flag value ...]"
)


def build_parser() -> argparse.ArgumentParser:
    """The command's flags, with their defaults and meaning."""
    parser = argparse.ArgumentParser(
        prog="python -m nail_segformer.predict",
        usage=_USAGE,  # argparse's own, on every error, would be ten lines of flags
        description="Predict nail masks (and overlays, counts, confidence) for photos.",
    )
    add = parser.add_argument
    add("--model", required=True, help="training output folder, or a Hub id")
    add("--input", required=True, nargs="+", help="photos: files, folders (recursive) or globs")
    add("--output", required=True, help="folder for masks/, overlays/ and predictions.*")
    add(
        "--onnx",
        default=None,
        help="run an ONNX export with onnxruntime instead of torch: an .onnx file, or the "
        "folder python -m nail_segformer.export wrote onnx/ into",
    )
    add("--dtype", default=None, choices=tuple(ONNX_FILES), help="with --onnx FOLDER; default fp32")
    add("--revision", default=None, help="branch, tag or commit of a Hub model")
    add("--device", default="auto", choices=DEVICE_CHOICES, help="default: cuda if available")
    add("--batch_size", type=int, default=4, help="photos (resize) or windows (slide) per call")
    add("--mode", default="resize", choices=MODES, help="resize: whole photo at model size")
    add(
        "--tta",
        default="none",
        choices=TTA_CHOICES,
        help="flip: also run the mirrored photo (2x work)",
    )
    add(
        "--threshold",
        type=_threshold,
        default="model",
        help="nail where its probability is above this number, or 'argmax' (as pipeline()); "
        "default: the nail_threshold the run chose on validation, else argmax",
    )
    add(
        "--min_nail_area",
        type=int,
        default=None,
        help="smallest counted nail in pixels; default 0.01%% of the photo's pixels",
    )
    add("--slide_scale", type=int, default=None, help="slide: short side; default 2x model size")
    add("--window", type=int, default=None, help="slide: window side; default the model size")
    add("--overlap", type=float, default=1 / 3, help="slide: window overlap fraction, [0, 1)")
    add("--masks", default=None, help="ground-truth masks folder (Masks/<category>/<stem>.*)")
    add("--worst", type=int, default=5, help="with --masks: list this many worst photos")
    add("--overlay_format", default="jpg", choices=OVERLAY_FORMATS, help="none: no overlays")
    add("--no_progress", action="store_true", help="hide the progress bar")
    add("--verbose", action="store_true", help="log the resolved settings (INFO level)")
    return parser


def _threshold(text: str) -> float | str:
    """``--threshold``: a number, ``argmax`` or ``model`` (the saved one)."""
    if text in ("argmax", "model"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'argmax'") from None


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop on a bad flag value before any model is loaded (argparse's usage error, exit 2)."""
    from nail_segformer.model import check_model_reference

    try:
        check_options(
            mode=args.mode,
            threshold=args.threshold if isinstance(args.threshold, float) else None,
            min_nail_area=args.min_nail_area,
            slide_scale=args.slide_scale,
            window=args.window,
            overlap=args.overlap,
            batch_size=args.batch_size,
        )
        if args.worst < 0:
            raise ValueError(f"--worst must be >= 0, got {args.worst}")
        check_model_reference(args.model, "--model", "pass a training run's output folder")
    except ValueError as err:
        parser.error(str(err))
    try:
        onnx = onnx_file(args.onnx, args.dtype)
    except ValueError as err:
        parser.error(str(err))
    args.onnx = None if onnx is None else str(onnx)


def _load(args) -> tuple[Predictor, MaskLookup | None]:
    masks = None
    if args.masks:  # checked first: it is quick
        # Evaluation imports the training metrics (torch): only when there is something to evaluate.
        from nail_segformer.predict.evaluation import MaskLookup

        masks = MaskLookup(args.masks)
    predictor = Predictor.from_pretrained(
        args.model,
        device=args.device,
        onnx=args.onnx,
        revision=args.revision,
        mode=args.mode,
        tta=args.tta == "flip",
        threshold=args.threshold,
        min_nail_area=args.min_nail_area,
        slide_scale=args.slide_scale,
        window=args.window,
        overlap=args.overlap,
        batch_size=args.batch_size,
    )
    return predictor, masks


class _Run:
    """One command's state: where records go, what failed, what is evaluated."""

    def __init__(
        self, writer: OutputWriter, masks: MaskLookup | None, min_nail_area: int | None = None
    ):
        self.writer = writer
        self.masks = masks
        self.evaluation = None
        if masks is not None:
            from nail_segformer.predict.evaluation import Evaluation

            # Nails are counted with the predictor's minimum area, so true and predicted agree.
            self.evaluation = Evaluation(min_nail_area)
        self.failures: list[tuple[str, str]] = []
        self.n_done = 0

    def fail(self, name: str, message: str) -> None:
        self.failures.append((name, message))
        self.writer.write_record({"file": name, "error": message})

    def finish(self, item: InputItem, image, prediction: Prediction) -> None:
        """Write one photo's mask, overlay and record, and evaluate it."""
        confidence = prediction.mean_confidence
        record = {
            "file": portable_path(item.path),
            "width": prediction.width,
            "height": prediction.height,
            "nail_fraction": round(prediction.nail_fraction, 6),
            "n_nails": prediction.n_nails,
            "mean_confidence": None if confidence is None else round(confidence, 6),
        }
        try:
            record.update(self.writer.write_images(item, image, prediction.mask))
            if self.evaluation is not None:
                mask_path = self.masks.find(item.category, item.path.stem)
                figures = self.evaluation.add(portable_path(item.path), prediction.mask, mask_path)
                record.update(
                    iou_nail=round(figures["iou_nail"], 6),
                    boundary_iou_nail=round(figures["boundary_iou_nail"], 6),
                    true_nails=figures["true_nails"],
                    matched_nails=figures["matched_nails"],
                )
            self.n_done += 1
        except (OSError, LookupError, ValueError) as err:
            if is_disk_full(err):
                raise  # one error for the run (main), not one per photo
            record["error"] = str(err)
            self.failures.append((portable_path(item.path), portable_path(str(err))))
        self.writer.write_record(record)


def _predict_all(predictor: Predictor, items: list[InputItem], state: _Run, progress) -> None:
    """Read, predict and finish the photos ``batch_size`` at a time.

    Photos are read inside the batches' iterable, which the predictor draws from in a background
    thread while the model runs; what each batch read is handed back here, in order, so that
    records are written by this thread alone.
    """
    reads: deque[tuple[list, list, list[InputItem]]] = deque()  # (loaded, failed, chunk)
    # Without overlays nothing needs every pixel of a large JPEG: it is decoded at the largest
    # reduction that still covers the model's input, and its mask made at the photo's size.
    reduce_to = predictor.input_size if not state.writer.draws_overlays else None

    def read(path: Path):
        if reduce_to is None:
            return load_image(path)
        image, (width, height) = load_image(path, reduce_to, return_size=True)
        return image, (height, width)

    def batches():
        for start in range(0, len(items), predictor.batch_size):
            chunk = items[start : start + predictor.batch_size]
            loaded, failed = [], []
            for item in chunk:
                try:
                    loaded.append((item, read(item.path)))
                except ImageReadError as err:
                    failed.append((item, err))
            reads.append((loaded, failed, chunk))
            yield [photo for _, photo in loaded]

    for predictions in predictor.predict_batches(batches()):
        loaded, failed, chunk = reads.popleft()
        for item, err in failed:
            state.fail(portable_path(item.path), portable_path(str(err)))
        for (item, photo), prediction in zip(loaded, predictions, strict=True):
            state.finish(item, photo if reduce_to is None else None, prediction)
        progress.update(len(chunk))


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, predict every photo, write the outputs; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nail_segformer").setLevel(level)
    from tqdm.auto import tqdm

    from nail_segformer.model import HubUnavailableError

    try:
        predictor, masks = _load(args)
    except (ModelLoadError, HubUnavailableError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    skip = [args.output] + ([args.masks] if args.masks else [])
    items, input_failures = expand_inputs(args.input, skip=skip)
    state = None
    try:
        with OutputWriter(args.output, args.overlay_format) as writer:
            state = _Run(writer, masks, predictor.min_nail_area)
            for name, message in input_failures:
                state.fail(name, message)
            with tqdm(total=len(items), unit="photo", disable=args.no_progress) as progress:
                _predict_all(predictor, items, state, progress)
    except OSError as err:
        if not is_disk_full(err):
            raise
        done = state.n_done if state is not None else 0
        needed = folder_bytes(args.output) / done * (len(items) - done) if done else None
        message = disk_full_message(args.output, needed, "predict")
        print(f"error: {message}; {done} of {len(items)} photo(s) were written", file=sys.stderr)
        return 1
    print(f"{state.n_done} of {len(items)} photo(s) done; outputs in {args.output}")
    if state.evaluation is not None:
        from nail_segformer.predict.evaluation import format_report

        metrics = state.evaluation.metrics()
        print(format_report(state.evaluation, args.worst, metrics))
        report = {
            "metrics": metrics,
            "per_image": state.evaluation.per_image_records(),
        }
        Path(args.output, "metrics.json").write_text(json.dumps(report, indent=2))
    if state.failures:
        print(f"{len(state.failures)} input(s) failed:", file=sys.stderr)
        for name, message in state.failures:
            print(f"  - {name}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
