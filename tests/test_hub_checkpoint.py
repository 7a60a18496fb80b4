"""The default command, fine-tuning ``nvidia/segformer-b4-finetuned-ade-512-512``, as a user runs it.

No ``--model_name_or_path``: the checkpoint comes from a Hugging Face cache (``HF_HUB_CACHE``,
offline) holding the real repo's file set (support/hub_checkpoints.py: its config.json with 150
ADE20k labels, the legacy preprocessor_config.json with ``reduce_labels: true``, random weights
of a small MiT with the same config keys), once with ``model.safetensors`` and once with only
``pytorch_model.bin``. Each run trains 2 steps at 64x64, evaluates, reloads the best checkpoint
and saves; the two runs go side by side (about 20 s on 2 cores).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.hub_checkpoints import DEFAULT_REPO_ID, WEIGHT_FORMS, write_hub_cache_entry

from nail_segformer.model import DEFAULT_CHECKPOINT

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 300
FAST_FLAGS = (
    "--image_size", "64", "--max_steps", "2", "--per_device_train_batch_size", "2",
    "--per_device_eval_batch_size", "4", "--eval_strategy", "steps", "--eval_steps", "2",
    "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1",
    "--dataloader_num_workers", "0", "--use_cpu", "true", "--disable_tqdm", "true",
    "--seed", "0",
)  # fmt: skip


@pytest.fixture(scope="module")
def default_runs(synthetic_root, tmp_path_factory):
    """Output folder, snapshot folder and log of the default command, per weight form."""
    assert DEFAULT_REPO_ID == DEFAULT_CHECKPOINT
    root = tmp_path_factory.mktemp("default-command")
    runs = {}
    for form in WEIGHT_FORMS:
        cache = root / f"hf-cache-{form}"
        snapshot = write_hub_cache_entry(cache, weights=form)
        output_dir = root / f"run-{form}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        env.update(
            HF_HUB_CACHE=str(cache),
            HF_HUB_OFFLINE="1",
            HF_HOME=str(root / "hf-home"),
            OMP_NUM_THREADS="1",  # two runs side by side on 2 cores
            NO_ALBUMENTATIONS_UPDATE="1",
            PYTHONUNBUFFERED="1",
        )
        argv = ["--data_root", str(synthetic_root), "--output_dir", str(output_dir), *FAST_FLAGS]
        proc = subprocess.Popen(
            [sys.executable, "run_finetune.py", *argv],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        runs[form] = (proc, output_dir, snapshot)
    results = {}
    for form, (proc, output_dir, snapshot) in runs.items():
        try:
            out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        results[form] = (proc.returncode, output_dir, snapshot, out)
    return results


@pytest.mark.parametrize("form", WEIGHT_FORMS)
def test_default_command_trains_from_the_cached_checkpoint(default_runs, form):
    code, output_dir, _, out = default_runs[form]
    assert code == 0, out[-6000:]
    assert f"model: {DEFAULT_CHECKPOINT}" in out
    results = json.loads((output_dir / "all_results.json").read_text())
    assert {"validation_iou_nail", "test_iou_nail", "train_loss"} <= results.keys()


@pytest.mark.parametrize("form", WEIGHT_FORMS)
def test_encoder_starts_from_the_cached_weights(default_runs, form):
    from safetensors.torch import load_file

    _, output_dir, snapshot, _ = default_runs[form]
    if form == "bin":
        source = torch.load(snapshot / "pytorch_model.bin", weights_only=True)
    else:
        source = load_file(snapshot / "model.safetensors")
    trained = load_file(output_dir / "model.safetensors")  # the same (legacy) key names
    encoder = [k for k in source if k.startswith("segformer.") and source[k].is_floating_point()]
    assert len(encoder) > 50
    # 2 AdamW steps at 6e-5 move a weight by about 1e-4; fresh random weights would differ by
    # about their own size (~0.02 and more).
    for key in encoder:
        torch.testing.assert_close(trained[key], source[key], rtol=0, atol=1e-3, msg=key)
    assert trained["decode_head.classifier.weight"].shape[0] == 2  # re-headed from 150


@pytest.mark.parametrize("form", WEIGHT_FORMS)
def test_saved_model_has_our_labels_and_no_label_reduction(default_runs, form):
    _, output_dir, _, _ = default_runs[form]
    config = json.loads((output_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "background", "1": "nail"}
    processor = json.loads((output_dir / "preprocessor_config.json").read_text())
    assert processor["do_reduce_labels"] is False
    # transformers 4 would read a leftover legacy key last and switch reduction back on.
    assert "reduce_labels" not in processor


@pytest.mark.parametrize("form", WEIGHT_FORMS)
def test_result_loads_in_the_stock_pipeline(default_runs, form, synthetic_root):
    from PIL import Image
    from transformers import pipeline

    _, output_dir, _, _ = default_runs[form]
    segmenter = pipeline("image-segmentation", model=str(output_dir))
    assert segmenter.model.config.num_labels == 2
    assert segmenter.image_processor.do_reduce_labels is False
    photo = Image.open(sorted((synthetic_root / "Images").rglob("*.jpg"))[0])
    segments = segmenter(photo)
    assert segments and {s["label"] for s in segments} <= {"background", "nail"}
    assert all(s["mask"].size == photo.size for s in segments)
