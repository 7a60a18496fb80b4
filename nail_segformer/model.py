"""Build or load ``SegformerForSemanticSegmentation`` for the nail labels.

Two ways in:

- fine-tune a checkpoint (default ``nvidia/segformer-b4-finetuned-ade-512-512``, or any SegFormer
  checkpoint or local folder), re-headed to ``{0: background, 1: nail}``;
- train from scratch from one of :data:`MODEL_PRESETS` (the MiT-b0..b5 sizes of the SegFormer
  paper, and ``tiny`` for tests).

What is read: ``model.safetensors`` when the checkpoint has it, otherwise ``pytorch_model.bin``
through torch's ``weights_only`` unpickler, which rebuilds tensors and plain containers and refuses
any other object, so a pickled payload cannot run code. Remote code (``trust_remote_code``) is
never run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from nail_segformer.hub import hub_is_offline, hub_reachable, is_hub_id
from nail_segformer.labels import ID2LABEL, IGNORE_INDEX

__all__ = [
    "DEFAULT_CHECKPOINT",
    "NVIDIA_LICENSE_NOTE",
    "MODEL_PRESETS",
    "HubUnavailableError",
    "CheckpointError",
    "check_checkpoint_files",
    "is_local_path",
    "is_hub_id",
    "check_model_reference",
    "hub_loading_kwargs",
    "build_config",
    "build_model",
    "load_model",
    "count_parameters",
]

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "nvidia/segformer-b4-finetuned-ade-512-512"
NVIDIA_LICENSE_NOTE = (
    "The NVIDIA SegFormer weights (nvidia/segformer-*) are released under the NVIDIA Source Code "
    "License for SegFormer, which allows non-commercial use only "
    "(https://github.com/NVlabs/SegFormer/blob/master/LICENSE); a model fine-tuned from them "
    "inherits that restriction."
)

# Mix Transformer encoder sizes from the SegFormer paper (Xie et al., 2021, table 6); every size
# shares heads (1, 2, 5, 8), reduction ratios (8, 4, 2, 1) and MLP ratio 4.
_MIT_WIDE = [64, 128, 320, 512]
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "mit-b0": {
        "hidden_sizes": [32, 64, 160, 256],
        "depths": [2, 2, 2, 2],
        "decoder_hidden_size": 256,
    },
    "mit-b1": {"hidden_sizes": _MIT_WIDE, "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "mit-b2": {"hidden_sizes": _MIT_WIDE, "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
    "mit-b3": {"hidden_sizes": _MIT_WIDE, "depths": [3, 4, 18, 3], "decoder_hidden_size": 768},
    "mit-b4": {"hidden_sizes": _MIT_WIDE, "depths": [3, 8, 27, 3], "decoder_hidden_size": 768},
    "mit-b5": {"hidden_sizes": _MIT_WIDE, "depths": [3, 6, 40, 3], "decoder_hidden_size": 768},
    # Not from the paper: mit-b0 at half width, for CPU demos. The decode head's fusion runs at
    # a quarter of the input resolution and dominates the step time of so small an encoder:
    # 64 channels there instead of 128 make a training step about 1.8x faster on CPU.
    "mit-nano": {
        "hidden_sizes": [16, 32, 80, 128],
        "depths": [2, 2, 2, 2],
        "decoder_hidden_size": 64,
    },
    # A few thousand parameters: for tests and smoke runs, learns nothing useful.
    "tiny": {
        "hidden_sizes": [8, 16, 32, 64],
        "depths": [1, 1, 1, 1],
        "num_attention_heads": [1, 1, 2, 4],
        "decoder_hidden_size": 32,
    },
}


class HubUnavailableError(RuntimeError):
    """The Hugging Face Hub cannot be reached and the files are not cached."""


class CheckpointError(ValueError):
    """A checkpoint folder whose files cannot be read as a SegFormer's; the message names the
    file and what to do."""


def check_checkpoint_files(folder: str | os.PathLike) -> None:
    """Read what ``from_pretrained`` reads of a local checkpoint folder, naming a damaged file.

    transformers ends in a traceback of its own on such files: a ``model.safetensors`` cut short
    by a copy or a download, a ``config.json`` or ``preprocessor_config.json`` that is not a JSON
    object, an ``id2label`` that is not a mapping. A folder (or a Hub id) without them is left to
    ``from_pretrained``, which says what is missing.

    Raises:
        CheckpointError: naming the file, what is wrong with it and what to do.
    """
    import json

    folder = Path(folder)
    if not folder.is_dir():
        return
    fix = "copy or download it again (a training run's checkpoint-N folders hold whole copies)"
    for path in (folder / "config.json", folder / "preprocessor_config.json"):
        try:
            settings = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as err:
            raise CheckpointError(f"cannot read {path} ({err}): {fix}") from None
        if not isinstance(settings, dict):
            raise CheckpointError(
                f"{path} holds a JSON {type(settings).__name__}, not settings: {fix}"
            )
        for key in ("id2label", "label2id"):
            if not isinstance(settings.get(key, {}), dict):
                raise CheckpointError(f"{path}: {key} is {settings[key]!r}, not a mapping: {fix}")
    from safetensors import SafetensorError, safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(path, "numpy") as weights:
                weights.keys()
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path} is damaged ({err}): {fix}") from None


def is_local_path(name_or_path: str | os.PathLike) -> bool:
    """True when ``name_or_path`` names an existing local folder or file (not a Hub id)."""
    return Path(name_or_path).expanduser().exists()


def check_model_reference(name: str, flag: str, fix: str) -> None:
    """Stop early on a model reference that is neither an existing path nor shaped like a Hub id.

    Args:
        name: the value given.
        flag: the flag that gave it, for the message.
        fix: what to pass instead, for the message.

    Raises:
        ValueError: ``name`` cannot be loaded from anywhere.
    """
    if not (is_local_path(name) or is_hub_id(name)):
        raise ValueError(
            f"{flag} {name} is neither a folder here nor a Hub id ('namespace/name'): {fix}"
        )


def hub_loading_kwargs(
    name_or_path: str,
    what: str = "model",
    revision: str | None = None,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments that make a Hub load fail within seconds.

    A local folder loads as is. For a Hub id, cached files are used when the Hub is offline or
    unreachable; when they are not cached either, raise at once with what to do.

    Raises:
        HubUnavailableError: a Hub id that is neither reachable nor cached.
    """
    if is_local_path(name_or_path):
        return {}
    offline = hub_is_offline()
    if not offline and hub_reachable():
        return {}
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(
        name_or_path, "config.json", cache_dir=cache_dir, revision=revision
    )
    if isinstance(cached, str):  # a path; None or a sentinel mean "not cached"
        return {"local_files_only": True}
    reason = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face Hub cannot be reached"
    raise HubUnavailableError(
        f"cannot load {what} '{name_or_path}': {reason} and it is not in the local cache. "
        "Either go online (or unset HF_HUB_OFFLINE) so it can be downloaded, pass a local "
        "checkpoint folder to --model_name_or_path, or train from scratch with "
        f"--from_scratch_preset (one of {sorted(MODEL_PRESETS)})."
    )


def build_config(preset: str, id2label: dict[int, str] | None = None, **overrides: Any):
    """A ``SegformerConfig`` of a named size, with our labels and ignore index.

    Raises:
        ValueError: unknown preset (the message lists the valid ones).
    """
    from transformers import SegformerConfig

    if preset not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset '{preset}'; choose one of {sorted(MODEL_PRESETS)}")
    id2label = dict(id2label or ID2LABEL)
    return SegformerConfig(
        **{**MODEL_PRESETS[preset], **overrides},
        num_labels=len(id2label),
        id2label=id2label,
        label2id={name: idx for idx, name in id2label.items()},
        semantic_loss_ignore_index=IGNORE_INDEX,
    )


def build_model(preset: str, id2label: dict[int, str] | None = None, seed: int | None = None):
    """A randomly initialised ``SegformerForSemanticSegmentation`` of a preset size."""
    import torch
    from transformers import SegformerForSemanticSegmentation

    if seed is not None:
        torch.manual_seed(seed)
    return SegformerForSemanticSegmentation(build_config(preset, id2label))


def load_model(
    name_or_path: str | os.PathLike,
    id2label: dict[int, str] | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
):
    """Load a SegFormer checkpoint re-headed to ``id2label`` (default background/nail).

    The encoder keeps its pretrained weights; a decode head whose class count differs is
    re-initialised (``ignore_mismatched_sizes``), which is the point of fine-tuning.

    Raises:
        HubUnavailableError: a Hub id while offline and not cached.
        CheckpointError: the checkpoint is not a SegFormer, or a file of a local one is damaged.
    """
    from transformers import AutoConfig, SegformerForSemanticSegmentation

    id2label = dict(id2label or ID2LABEL)
    kwargs: dict[str, Any] = {"revision": revision, "cache_dir": cache_dir}
    kwargs.update(hub_loading_kwargs(str(name_or_path), revision=revision, cache_dir=cache_dir))
    check_checkpoint_files(name_or_path)
    config = AutoConfig.from_pretrained(str(name_or_path), **kwargs)
    if config.model_type != "segformer":
        raise CheckpointError(
            f"{name_or_path} is a '{config.model_type}' checkpoint; --model_name_or_path must be "
            "a SegFormer checkpoint (e.g. nvidia/mit-b0 or nvidia/segformer-b4-finetuned-ade-512-512)"
        )
    if str(name_or_path).startswith("nvidia/"):
        logger.warning(NVIDIA_LICENSE_NOTE)
    return SegformerForSemanticSegmentation.from_pretrained(
        str(name_or_path),
        # The label count follows id2label; num_labels as well would be checked against the
        # checkpoint's own 150 ADE20k labels first, with a misleading warning.
        id2label=id2label,
        label2id={name: idx for idx, name in id2label.items()},
        semantic_loss_ignore_index=IGNORE_INDEX,
        ignore_mismatched_sizes=True,
        # None: model.safetensors when the repo (or the cache) has it, else pytorch_model.bin.
        # True would refuse a repo, or a cache filled by an older transformers, that holds only
        # the .bin; offline (or off "main") transformers cannot convert it either.
        use_safetensors=None,
        # A .bin is read by torch's restricted unpickler: tensors and plain containers only.
        weights_only=True,
        trust_remote_code=False,
        **kwargs,
    )


def count_parameters(model) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
