"""``python -m nail_segformer.app --model outputs/nails``: the demo page on 127.0.0.1."""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import tempfile

__all__ = ["build_parser", "main"]

_INSTALL = "the demo page needs Gradio: pip install -e '.[app]' (or pip install 'gradio>=6,<7')"


def build_parser() -> argparse.ArgumentParser:
    """The command's flags."""
    from nail_segformer.predict.infer import DEVICE_CHOICES, ONNX_FILES

    parser = argparse.ArgumentParser(
        prog="python -m nail_segformer.app",
        description="A web page to try a trained model on photos (Gradio, served locally).",
    )
    add = parser.add_argument
    add("--model", required=True, help="training output folder, or a Hub id")
    add("--onnx", default=None, help="run an ONNX export: an .onnx file or an export folder")
    add("--dtype", default=None, choices=tuple(ONNX_FILES), help="with --onnx FOLDER; default fp32")
    add("--revision", default=None, help="branch, tag or commit of a Hub model")
    add("--device", default="auto", choices=DEVICE_CHOICES, help="default: cuda if available")
    add("--host", default="127.0.0.1", help="address to serve on; 0.0.0.0 serves other machines")
    add("--port", type=int, default=7860, help="port to serve on")
    add(
        "--examples",
        default=None,
        help="folder of photos to offer as examples (default: synthetic)",
    )
    add(
        "--make_space",
        default=None,
        metavar="FOLDER",
        help="write a Hugging Face Space for --model (its ONNX export) into FOLDER, and stop",
    )
    add("--push_to_hub", action="store_true", help="with --make_space: create and upload the Space")
    add("--hub_space_id", default=None, help="with --push_to_hub: the Space, e.g. you/nail-demo")
    add(
        "--public", action="store_true", help="with --push_to_hub: a public Space (default private)"
    )
    return parser


def _make_space(args, parser) -> int:
    from nail_segformer.app.space import SPACE_FILES, SpaceError, make_space
    from nail_segformer.hub import PushError, private_unless_public, push_folder
    from nail_segformer.model import HubUnavailableError

    if args.push_to_hub and not args.hub_space_id:
        parser.error("--push_to_hub needs --hub_space_id, e.g. --hub_space_id you/nail-demo")
    if args.push_to_hub and os.path.isdir(args.model):
        parser.error(
            "a Space reads its model from the Hub: push the model (with its ONNX export) first, "
            "then pass its Hub id as --model"
        )
    try:
        folder = make_space(args.model, args.make_space, args.revision)
    except (SpaceError, HubUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote a Space for {args.model} in {folder}")
    if not args.push_to_hub:
        return 0
    try:
        repo = push_folder(
            folder,
            args.hub_space_id,
            SPACE_FILES,
            commit_message="nail_segformer: Space",
            repo_type="space",
            private=private_unless_public("space", args.public),
            space_sdk="gradio",
        )
    except PushError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    print(f"pushed the Space to {repo}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Load the model once, then serve the page until interrupted; return the exit code."""
    import importlib.util

    parser = build_parser()
    args = parser.parse_args(argv)
    if importlib.util.find_spec("gradio") is None:
        print(f"error: {_INSTALL}", file=sys.stderr)
        return 2
    if args.make_space is not None:
        return _make_space(args, parser)
    if args.push_to_hub:
        parser.error("--push_to_hub publishes a Space: pass --make_space FOLDER too")
    if args.examples is not None and not os.path.isdir(args.examples):
        parser.error(f"--examples {args.examples} is not a folder")
    work_dir = tempfile.mkdtemp(prefix="nail_segformer_app-")
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
    # A stop by SIGTERM (a service manager, a test) also removes the uploads.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Gradio keeps uploads and answers in its temporary folder, read when it is imported: the
    # app's own, removed at exit.
    os.environ["GRADIO_TEMP_DIR"] = work_dir
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from nail_segformer.model import HubUnavailableError
    from nail_segformer.predict.infer import ModelLoadError, onnx_file
    from nail_segformer.predict.predictor import Predictor

    try:
        onnx = onnx_file(args.onnx, args.dtype)
        predictor = Predictor.from_pretrained(
            args.model, device=args.device, onnx=onnx, revision=args.revision, batch_size=1
        )
    except (ModelLoadError, HubUnavailableError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from nail_segformer.app.page import MAX_FILE_SIZE, build_page, example_photos

    examples = example_photos(os.path.join(work_dir, "examples"), args.examples)
    page = build_page(predictor, examples, work_dir)
    page.queue(default_concurrency_limit=1).launch(
        server_name=args.host,
        server_port=args.port,
        share=False,
        max_file_size=MAX_FILE_SIZE,
        allowed_paths=[work_dir],
        show_error=True,
    )
    return 0
