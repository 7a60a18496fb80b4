"""Checkpoints shaped like the real ``nvidia/segformer-b*-finetuned-ade-512-512`` Hub repos.

The real repos hold ``config.json`` (written by transformers 4.12: 150 ADE20k labels, the MiT
keys below), a legacy ``preprocessor_config.json`` (``SegformerFeatureExtractor``,
``reduce_labels``, an integer ``size``) and the weights, as ``model.safetensors`` or only
``pytorch_model.bin`` depending on the repo and on the transformers version that filled a
user's cache. These helpers write the same file set with random weights of a small MiT (same
config keys, smaller widths and depths), as a plain folder or as an entry of the Hugging Face
cache (``models--<org>--<name>/{refs/main, snapshots/<commit>/...}``, what ``HF_HUB_CACHE``
points at), so that tests run the default command exactly as a user with that cache would.
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_REPO_ID = "nvidia/segformer-b4-finetuned-ade-512-512"
# Any 40-hex commit: the cache resolves refs/main to snapshots/<commit>.
SNAPSHOT_COMMIT = "8c4a7bc1f4c9d9e3c02f2d3a1d1e0c0b6a5f4e3d"
WEIGHT_FORMS = ("safetensors", "bin")

# The 150 ADE20k classes in the order of the checkpoints' id2label ("bed " keeps the trailing
# space the real config.json has).
ADE20K_LABELS = (
    "wall building sky floor tree ceiling road bed_ windowpane grass cabinet sidewalk person "
    "earth door table mountain plant curtain chair car water painting sofa shelf house sea "
    "mirror rug field armchair seat fence desk rock wardrobe lamp bathtub railing cushion base "
    "box column signboard chest_of_drawers counter sand sink skyscraper fireplace refrigerator "
    "grandstand path stairs runway case pool_table pillow screen_door stairway river bridge "
    "bookcase blind coffee_table toilet flower book hill bench countertop stove palm "
    "kitchen_island computer swivel_chair boat bar arcade_machine hovel bus towel light truck "
    "tower chandelier awning streetlight booth television_receiver airplane dirt_track apparel "
    "pole land bannister escalator ottoman bottle buffet poster stage van ship fountain "
    "conveyer_belt canopy washer plaything swimming_pool stool barrel basket waterfall tent bag "
    "minibike cradle oven ball food step tank trade_name microwave pot animal bicycle lake "
    "dishwasher screen blanket sculpture hood sconce vase traffic_light tray ashcan fan pier "
    "crt_screen plate monitor bulletin_board shower radiator glass clock flag"
).split()
ADE20K_LABELS = tuple("bed " if n == "bed_" else n.replace("_", " ") for n in ADE20K_LABELS)

# preprocessor_config.json of the ADE checkpoints, verbatim.
LEGACY_PREPROCESSOR_CONFIG = {
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "SegformerFeatureExtractor",
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "reduce_labels": True,
    "resample": 2,
    "size": 512,
}

# The widths and depths of the b4 repo (hidden_sizes [64, 128, 320, 512], depths [3, 8, 27, 3],
# decoder 768) make a 64M-parameter model; the tests use MiT-nano widths at depth 1, which keep
# the real heads (1, 2, 5, 8) valid, so every key and every other value is the real one.
SMALL_MIT = {"hidden_sizes": [16, 32, 80, 128], "depths": [1, 1, 1, 1], "decoder_hidden_size": 32}
B4_MIT = {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 8, 27, 3], "decoder_hidden_size": 768}


def ade_config_dict(sizes: dict | None = None) -> dict:
    """``config.json`` of an ADE20k SegFormer checkpoint as the Hub serves it (4.12 format)."""
    if len(ADE20K_LABELS) != 150:
        raise RuntimeError(f"expected 150 ADE20k labels, have {len(ADE20K_LABELS)}")
    id2label = {str(i): name for i, name in enumerate(ADE20K_LABELS)}
    return {
        "architectures": ["SegformerForSemanticSegmentation"],
        "attention_probs_dropout_prob": 0.0,
        "classifier_dropout_prob": 0.1,
        **(sizes or SMALL_MIT),
        "downsampling_rates": [1, 4, 8, 16],
        "drop_path_rate": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "id2label": id2label,
        "image_size": 224,
        "initializer_range": 0.02,
        "label2id": {name: int(i) for i, name in id2label.items()},
        "layer_norm_eps": 1e-06,
        "mlp_ratios": [4, 4, 4, 4],
        "model_type": "segformer",
        "num_attention_heads": [1, 2, 5, 8],
        "num_channels": 3,
        "num_encoder_blocks": 4,
        "patch_sizes": [7, 3, 3, 3],
        "reshape_last_stage": True,
        "semantic_loss_ignore_index": 255,
        "sr_ratios": [8, 4, 2, 1],
        "strides": [4, 2, 2, 2],
        "torch_dtype": "float32",
        "transformers_version": "4.12.0.dev0",
    }


def write_ade_checkpoint(
    folder: str | Path, weights: str = "safetensors", seed: int = 0, sizes: dict | None = None
) -> Path:
    """Write the real repo's file set with random weights into ``folder``.

    Args:
        folder: created if missing.
        weights: ``"safetensors"`` (``model.safetensors``) or ``"bin"`` (only
            ``pytorch_model.bin``, a plain ``torch.save`` of the tensors, as old repos hold).
        seed: seed of the random weights.
        sizes: ``hidden_sizes``/``depths``/``decoder_hidden_size``; default :data:`SMALL_MIT`.

    Returns:
        ``folder``.
    """
    import tempfile

    import torch
    from safetensors.torch import load_file, save_file
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    if weights not in WEIGHT_FORMS:
        raise ValueError(f"weights must be one of {WEIGHT_FORMS}, got {weights!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = ade_config_dict(sizes)
    torch.manual_seed(seed)
    model = SegformerForSemanticSegmentation(SegformerConfig(**config))
    with tempfile.TemporaryDirectory() as tmp:
        # save_pretrained writes the legacy key names the Hub repos use (encoder.block.*, ...).
        model.save_pretrained(tmp)
        state = load_file(Path(tmp) / "model.safetensors")
    if weights == "safetensors":
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    else:
        torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "preprocessor_config.json").write_text(
        json.dumps(LEGACY_PREPROCESSOR_CONFIG, indent=2) + "\n"
    )
    return folder


def write_hub_cache_entry(
    cache_dir: str | Path,
    repo_id: str = DEFAULT_REPO_ID,
    weights: str = "safetensors",
    seed: int = 0,
    sizes: dict | None = None,
) -> Path:
    """Put a checkpoint (see :func:`write_ade_checkpoint`) into an HF cache at ``cache_dir``.

    Returns:
        The snapshot folder holding the files.
    """
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = write_ade_checkpoint(
        repo / "snapshots" / SNAPSHOT_COMMIT, weights=weights, seed=seed, sizes=sizes
    )
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(SNAPSHOT_COMMIT)
    return snapshot
