"""Model presets, re-heading a checkpoint, which weight files are read, and Hub fail-fast."""

import pickle
import time
from pathlib import Path

import pytest
import torch
from support.hub_checkpoints import WEIGHT_FORMS, write_ade_checkpoint
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


class _Payload:
    """Unpickling this would create a file: proof that arbitrary code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_malicious_pickled_weights_are_refused_and_never_run(tmp_path):
    folder = write_ade_checkpoint(tmp_path / "ckpt", weights="bin")
    marker = tmp_path / "pwned"
    weights = torch.load(folder / "pytorch_model.bin", weights_only=True)
    torch.save({**weights, "payload": _Payload(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        model_lib.load_model(folder)
    assert not marker.exists()


@pytest.mark.parametrize("weights", WEIGHT_FORMS)
def test_checkpoint_loads_from_either_weight_file(tmp_path, weights):
    folder = write_ade_checkpoint(tmp_path / "ckpt", weights=weights)
    other = {"safetensors": "pytorch_model.bin", "bin": "model.safetensors"}[weights]
    assert not (folder / other).exists()
    source = _saved_tensors(folder)
    model = model_lib.load_model(folder)
    assert model.config.id2label == ID2LABEL
    encoder = {k: v for k, v in source.items() if not k.startswith("decode_head.classifier")}
    reloaded = _legacy_state_dict(model)
    assert encoder.keys() <= reloaded.keys() and len(encoder) > 50
    for name, tensor in encoder.items():
        assert torch.equal(reloaded[name], tensor), name


def _saved_tensors(folder):
    if (folder / "model.safetensors").exists():
        from safetensors.torch import load_file

        return load_file(folder / "model.safetensors")
    return torch.load(folder / "pytorch_model.bin", weights_only=True)


def _legacy_state_dict(model):
    """The model's tensors under the key names a checkpoint stores (what save_pretrained writes)."""
    import tempfile

    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return load_file(Path(tmp) / "model.safetensors")


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

    for name in _PROXY_VARIABLES:  # no proxy in the way: the refusal comes from port 9 itself
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    start = time.monotonic()
    with pytest.raises(model_lib.HubUnavailableError, match="cannot be reached"):
        model_lib.load_model("nvidia/mit-b0")
    assert time.monotonic() - start < 5


class _ProxyStub:
    """A forward proxy that answers every request itself with ``status``, recording it."""

    def __init__(self, status: int = 200):
        self.status = status
        self.requests: list[str] = []

    def __enter__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                stub.requests.append(f"{self.command} {self.path}")
                self.send_response(stub.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def behind_proxy(monkeypatch):
    """The Hub at a name only a proxy can reach; yields a function that starts that proxy."""
    import contextlib

    import huggingface_hub
    from huggingface_hub import constants

    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://hub.behind-the-proxy.invalid")

    @contextlib.contextmanager
    def proxy(status: int = 200):
        with _ProxyStub(status) as stub:
            monkeypatch.setenv("HTTP_PROXY", stub.url)
            huggingface_hub.close_session()  # the client reads proxy settings when created
            try:
                yield stub
            finally:
                huggingface_hub.close_session()

    return proxy


def test_hub_behind_a_proxy_is_reachable(behind_proxy):
    with behind_proxy() as proxy:
        # Uncached, the default checkpoint is then downloaded rather than declared unreachable.
        assert model_lib.hub_loading_kwargs(model_lib.DEFAULT_CHECKPOINT) == {}
    assert proxy.requests == ["HEAD http://hub.behind-the-proxy.invalid/"]


def test_proxy_that_cannot_reach_the_hub_fails_fast(behind_proxy):
    start = time.monotonic()
    with behind_proxy(status=502) as proxy:
        with pytest.raises(model_lib.HubUnavailableError, match="cannot be reached"):
            model_lib.load_model(model_lib.DEFAULT_CHECKPOINT)
    assert time.monotonic() - start < 5
    assert proxy.requests  # the probe went through the proxy


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
