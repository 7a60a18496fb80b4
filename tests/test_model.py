"""Model presets, re-heading a checkpoint, safetensors-only loading and Hub fail-fast."""

import time

import pytest
import torch
from transformers import SegformerForSemanticSegmentation

from nail_segformer import model as model_lib
from nail_segformer.data import ID2LABEL


def _ade_like_checkpoint(path, num_labels=150):
    """A tiny SegFormer saved with an ADE20k-sized head, as the nvidia checkpoints are."""
    config = model_lib.build_config("tiny", {i: f"class{i}" for i in range(num_labels)})
    torch.manual_seed(0)
    SegformerForSemanticSegmentation(config).save_pretrained(path)
    return path


@pytest.mark.parametrize("preset", sorted(model_lib.MODEL_PRESETS))
def test_every_preset_builds_a_valid_config(preset):
    config = model_lib.build_config(preset)
    assert config.num_labels == 2 and config.id2label == ID2LABEL
    assert config.semantic_loss_ignore_index == 255
    assert len(config.hidden_sizes) == len(config.depths) == 4


def test_mit_b0_matches_the_paper_size():
    model = model_lib.build_model("mit-b0")
    assert 3.5e6 < model_lib.count_parameters(model) < 3.9e6  # 3.7M for a 2-class head


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match="mit-b0"):
        model_lib.build_config("mit-b7")


def test_load_model_reheads_a_checkpoint_and_keeps_the_encoder(tmp_path):
    path = _ade_like_checkpoint(tmp_path / "ade")
    source = SegformerForSemanticSegmentation.from_pretrained(path)
    model = model_lib.load_model(path)
    assert model.config.id2label == ID2LABEL and model.config.num_labels == 2
    assert model.decode_head.classifier.out_channels == 2
    for name, tensor in source.segformer.state_dict().items():
        assert torch.equal(tensor, model.segformer.state_dict()[name]), name


def test_load_model_rejects_other_architectures(tmp_path):
    from transformers import BertConfig

    BertConfig(
        num_hidden_layers=1, hidden_size=8, num_attention_heads=1, intermediate_size=8
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="SegFormer checkpoint"):
        model_lib.load_model(tmp_path)


def test_pickled_weights_are_never_loaded(tmp_path):
    config = model_lib.build_config("tiny")
    config.save_pretrained(tmp_path)
    torch.save(
        SegformerForSemanticSegmentation(config).state_dict(), tmp_path / "pytorch_model.bin"
    )
    with pytest.raises(OSError, match="safetensors|model.safetensors"):
        model_lib.load_model(tmp_path)


def test_offline_hub_id_fails_fast_with_a_fix():
    start = time.monotonic()
    with pytest.raises(model_lib.HubUnavailableError) as info:
        model_lib.load_model("nvidia/segformer-b4-finetuned-ade-512-512")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and "--from_scratch_preset" in message
    assert "local checkpoint folder" in message


def test_unreachable_hub_fails_fast(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    start = time.monotonic()
    with pytest.raises(model_lib.HubUnavailableError, match="cannot be reached"):
        model_lib.load_model("nvidia/mit-b0")
    assert time.monotonic() - start < 5


def test_cached_hub_checkpoint_loads_offline(tmp_path):
    # The Hub cache layout: models--org--name/{refs/main, snapshots/<commit>/...}.
    repo = tmp_path / "cache" / "models--nvidia--tiny-test"
    commit = "0123456789abcdef0123456789abcdef01234567"
    _ade_like_checkpoint(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    model = model_lib.load_model("nvidia/tiny-test", cache_dir=str(tmp_path / "cache"))
    assert model.config.num_labels == 2


def test_nvidia_weights_licence_is_stated():
    assert "non-commercial" in model_lib.NVIDIA_LICENSE_NOTE
