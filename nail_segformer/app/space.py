"""``--make_space``: a Hugging Face Space folder that runs a model repo's ONNX export.

The folder holds ``app.py`` (:mod:`nail_segformer.app.space_app`, standing alone: no torch, no
nail_segformer), ``requirements.txt`` and a ``README.md`` whose metadata the Hub reads: the
Gradio SDK and the version the page was tested with, the app file, the model under ``models:``
and the licence the model carries.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SPACE_FILES", "make_space"]

SPACE_FILES = ("app.py", "requirements.txt", "README.md")
_TEMPLATE = Path(__file__).with_name("space_app.py")
_REQUIREMENTS = ("onnxruntime>=1.18", "numpy>=2.0", "pillow>=10.0", "huggingface_hub>=1.16")
_LICENCE_KEYS = ("license", "license_name", "license_link")


class SpaceError(ValueError):
    """The Space cannot be written; the message says what to do."""


def _model_files(model: str, revision: str | None) -> tuple[set[str], dict]:
    """The model's file names and its card's metadata, from a folder or the Hub."""
    from huggingface_hub import ModelCard

    if os.path.isdir(model):
        root = Path(model)
        files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        card = root / "README.md"
        metadata = ModelCard.load(card).data.to_dict() if card.is_file() else {}
        return files, metadata
    from huggingface_hub import HfApi

    from nail_segformer.model import hub_loading_kwargs

    if hub_loading_kwargs(model, "model", revision=revision):  # raises when offline, uncached
        raise SpaceError(f"the Hub is offline or unreachable: a Space for {model} needs it")
    try:
        info = HfApi().model_info(model, revision=revision)
    except Exception as err:  # the client's HTTP errors: not found, gated, no access
        raise SpaceError(f"cannot read the model repo {model} on the Hub: {err}") from err
    files = {sibling.rfilename for sibling in info.siblings or []}
    return files, info.card_data.to_dict() if info.card_data else {}


def make_space(model: str, folder: str | os.PathLike, revision: str | None = None) -> Path:
    """Write a Space for ``model`` (a Hub id, or a local folder for trying it) into ``folder``.

    Raises:
        SpaceError: the model has no ONNX export yet, or ``folder`` holds other files.
    """
    import gradio

    files, metadata = _model_files(model, revision)
    if "onnx/model.onnx" not in files:
        raise SpaceError(
            f"{model} has no onnx/model.onnx, which the Space runs: export it first with "
            f"`python -m nail_segformer.export --model {model}` (add --push_to_hub "
            "--hub_model_id for a Hub repo)"
        )
    folder = Path(folder)
    if folder.is_dir():
        others = sorted(p.name for p in folder.iterdir() if p.name not in SPACE_FILES)
        if others:
            raise SpaceError(
                f"{folder} holds other files ({', '.join(others[:5])}); choose an empty or new "
                "folder for the Space"
            )
    folder.mkdir(parents=True, exist_ok=True)
    source = _TEMPLATE.read_text(encoding="utf-8")
    (folder / "app.py").write_text(source.replace('"__MODEL_ID__"', repr(model)), "utf-8")
    requirements = [f"gradio=={gradio.__version__}", *_REQUIREMENTS]
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(_readme(model, metadata, gradio.__version__), "utf-8")
    return folder


def _readme(model: str, metadata: dict, gradio_version: str) -> str:
    import yaml

    name = model.rstrip("/").split("/")[-1]
    header = {
        "title": f"Nails: {name}"[:30],
        "emoji": "💅",
        "colorFrom": "pink",
        "colorTo": "yellow",
        "sdk": "gradio",
        "sdk_version": gradio_version,
        "app_file": "app.py",
        "pinned": False,
        "short_description": "Nail segmentation of hand photos with a SegFormer",
        **{key: metadata[key] for key in _LICENCE_KEYS if metadata.get(key)},
    }
    if not os.path.isdir(model):
        header["models"] = [model]
    header.setdefault("license", "unknown")
    front = yaml.safe_dump(header, sort_keys=False, allow_unicode=True)
    local = os.path.isdir(model)
    source = "a local model folder" if local else f"[{model}](https://huggingface.co/{model})"
    return f"""---
{front}---

# Nail segmentation

Upload a hand photo: the nails found by {source} are tinted and outlined, and the mask can be downloaded. The Space runs the model's ONNX export
(`onnx/model_quantized.onnx` when the repo has it, else `onnx/model.onnx`) with onnxruntime on
CPU, with its image processor's settings and the nail threshold it chose on validation.

For a private model repo, add a secret `HF_TOKEN` (a read token) in the Space's settings.
Written by `python -m nail_segformer.app --make_space`.
"""
