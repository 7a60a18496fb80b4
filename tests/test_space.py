"""``--make_space``: the Space folder, run in a virtualenv of its own requirements only.

The Space's ``app.py`` must stand alone (no torch, no nail_segformer): it is started with a
virtualenv holding only its ``requirements.txt`` (cached under ~/.cache/nail_segformer between
runs), against a local export of the learned model, and answers Gradio's own client with the
masks of ``predict --onnx``.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from support.learnable import render
from support.servers import free_port, serving

from nail_segformer.predict import Predictor

try:
    import gradio
except ImportError:
    if os.environ.get("CI") == "true":  # CI installs the [app] extra: the Space must be tested
        raise
    pytest.skip("Gradio is not installed (pip install -e '.[app]')", allow_module_level=True)

from nail_segformer.app.space import SpaceError, make_space  # noqa: E402

CACHE = Path.home() / ".cache" / "nail_segformer"


@pytest.fixture(scope="module")
def exported(learned_run_dir, tmp_path_factory):
    from nail_segformer.export import main as export_main

    folder = tmp_path_factory.mktemp("space_model") / "model"
    shutil.copytree(learned_run_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    assert export_main(["--model", str(folder), "--no_int8"]) == 0
    return folder


@pytest.fixture(scope="module")
def space(exported, tmp_path_factory):
    return make_space(str(exported), tmp_path_factory.mktemp("space") / "space")


@pytest.fixture(scope="module")
def space_python(space):
    """A virtualenv with the Space's requirements.txt and nothing else, reused between runs."""
    requirements = (space / "requirements.txt").read_bytes()
    venv = CACHE / f"space-venv-{hashlib.sha256(requirements).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if not (venv / "ready").is_file():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(space / "requirements.txt")],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            reason = f"pip could not install the Space's requirements: {done.stderr[-2000:]}"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
        (venv / "ready").write_text("")
    return python


@pytest.fixture(scope="module")
def space_url(space, space_python, exported, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("space_log") / "space.log"
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ["HOME"], "NAIL_MODEL": str(exported),
        "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
    }  # fmt: skip
    with serving([str(space_python), "app.py"], port, log, cwd=space, env=env) as url:
        yield url


def test_the_space_stands_alone(space_python):
    done = subprocess.run(
        [str(space_python), "-c", "import importlib.util as u; print(u.find_spec('torch'), "
         "u.find_spec('nail_segformer'))"], capture_output=True, text=True, check=True,
        cwd=space_python.parent,  # not the checkout, whose nail_segformer/ is importable
    )  # fmt: skip
    assert done.stdout.split() == ["None", "None"]


def test_the_space_answers_with_the_masks_of_predict_onnx(space_url, exported, tmp_path):
    from gradio_client import Client, handle_file

    predictor = Predictor.from_pretrained(exported, onnx=exported / "onnx" / "model.onnx")
    assert predictor.threshold is not None  # the learned run chose one on validation
    client = Client(space_url, verbose=False)
    rng = np.random.default_rng(21)
    for index, size in enumerate([64, 96, 150]):
        path = tmp_path / f"hand{index}.png"
        Image.fromarray(render(rng, size=size)[0]).resize((size, size * 3 // 2)).save(path)
        _, summary, mask = client.predict(
            handle_file(str(path)), predictor.threshold, api_name="/analyze"
        )
        theirs = np.asarray(Image.open(mask)) > 0
        [ours] = predictor.predict([Image.open(path).convert("RGB")])
        ours = ours.mask > 0
        assert theirs.shape == ours.shape and ours.any()
        iou = (theirs & ours).sum() / (theirs | ours).sum()
        assert iou >= 0.95, f"photo {index}: nail IoU {iou:.3f} against predict --onnx"


def _front_matter(readme: Path) -> dict:
    return yaml.safe_load(readme.read_text(encoding="utf-8").split("---")[1])


def test_the_space_readme_has_what_the_hub_reads(space):
    meta = _front_matter(space / "README.md")
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert meta["app_file"] == "app.py" and meta["title"] and meta["short_description"]
    assert len(meta["short_description"]) <= 60 and "license" in meta
    assert (space / "requirements.txt").read_text().startswith(f"gradio=={gradio.__version__}\n")


def test_a_model_without_an_export_or_a_busy_folder_is_refused(learned_run_dir, exported, tmp_path):
    with pytest.raises(SpaceError, match="nail_segformer.export"):
        make_space(str(learned_run_dir), tmp_path / "space")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(SpaceError, match="notes.txt"):
        make_space(str(exported), busy)
    assert (busy / "notes.txt").read_text() == "mine"


def test_the_push_creates_a_private_gradio_space_with_what_the_hub_checks(exported, tmp_path):
    from support.hub_stub import HubStub, _validate_space

    token = "hf_" + "s" * 34
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_TOKEN")}
    with HubStub(expected_token=token) as hub:
        env.update(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_TOKEN=token,
                   HF_HOME=str(tmp_path / "hf_home"))  # fmt: skip
        seed = ("from nail_segformer.hub import push_folder; import sys; push_folder(sys.argv[1], "
                "'me/nails', ['*.json', 'onnx/*', 'README.md'], commit_message='model')")  # fmt: skip
        subprocess.run([sys.executable, "-c", seed, str(exported)], env=env, check=True)
        done = subprocess.run(
            [sys.executable, "-m", "nail_segformer.app", "--model", "me/nails", "--make_space",
             str(tmp_path / "space"), "--push_to_hub", "--hub_space_id", "me/nail-demo"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        repo = hub.repos["me/nail-demo"]
        (commit,) = hub.commits_to("me/nail-demo")
        known = {"me/nails"}
    assert (
        repo["type"] == "space" and repo["sdk"] == "gradio" and repo["visibility"] == "private"
    ), repo
    assert sorted(commit.files) == ["README.md", "app.py", "requirements.txt"]
    meta = yaml.safe_load(commit.files["README.md"].decode().split("---")[1])
    _validate_space(meta, known)  # raises as the Hub would
    assert meta["models"] == ["me/nails"]
    app = commit.files["app.py"].decode()
    assert "'me/nails'" in app and str(tmp_path) not in app and str(exported) not in app


def test_a_space_of_a_local_folder_is_not_pushed(exported, tmp_path, capsys):
    from nail_segformer.app.cli import main

    argv = ["--model", str(exported), "--make_space", str(tmp_path / "s"), "--push_to_hub",
            "--hub_space_id", "me/x"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and "Hub id" in capsys.readouterr().err


def test_a_model_fine_tuned_from_nvidia_weights_passes_their_licence_on(exported, tmp_path):
    from huggingface_hub import ModelCard

    model = tmp_path / "model"
    shutil.copytree(exported, model)
    card = ModelCard.load(model / "README.md")
    card.data.license, card.data.license_name = "other", "nvidia-segformer"
    card.data.license_link = "https://github.com/NVlabs/SegFormer/blob/master/LICENSE"
    card.save(model / "README.md")
    meta = _front_matter(make_space(str(model), tmp_path / "space") / "README.md")
    assert (meta["license"], meta["license_name"]) == ("other", "nvidia-segformer")
    assert meta["license_link"].endswith("SegFormer/blob/master/LICENSE")
