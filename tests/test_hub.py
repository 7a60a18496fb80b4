"""nail_segformer.hub: which files a push selects, and pushes of each repo type to a local Hub.

Pushes run in a subprocess: ``huggingface_hub`` reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` when
it is imported, and conftest.py has made this process offline.
"""

import json
import os
import subprocess
import sys

import pytest
from support.hub_stub import HubStub

from nail_segformer.hub import matching_files, private_unless_public, push_later_hint

TOKEN = "hf_" + "k" * 34


def _tree(root, names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
    return root


@pytest.mark.parametrize(
    "patterns,expected",
    [
        (["config.json"], ["config.json"]),  # not checkpoint-5/config.json
        (["*.json"], ["config.json", "run_args.json"]),
        (["onnx/*.onnx"], ["onnx/model.onnx", "onnx/model_quantized.onnx"]),
        (["onnx/*"], ["onnx/model.onnx", "onnx/model_quantized.onnx"]),  # not onnx/extra/x.onnx
        (["*/config.json"], ["checkpoint-5/config.json"]),
        (["nothing-*"], []),
    ],
)
def test_patterns_stay_inside_one_folder_level(tmp_path, patterns, expected):
    names = [
        "config.json",
        "run_args.json",
        "checkpoint-5/config.json",
        "onnx/model.onnx",
        "onnx/model_quantized.onnx",
        "onnx/extra/x.onnx",
    ]
    assert matching_files(_tree(tmp_path, names), patterns) == expected


def test_a_symbolic_link_never_publishes_a_file_from_elsewhere(tmp_path):
    secret = tmp_path / "elsewhere" / "id_rsa"
    secret.parent.mkdir()
    secret.write_text("private")
    folder = _tree(tmp_path / "run", ["config.json"])
    (folder / "model.safetensors").symlink_to(secret)
    assert matching_files(folder, ["config.json", "model.safetensors"]) == ["config.json"]


@pytest.mark.parametrize(
    "repo_type,public,expected",
    [("model", False, None), ("dataset", False, True), ("dataset", True, False)]
    + [("space", False, True), ("space", True, False)],
)
def test_datasets_and_spaces_are_private_unless_public(repo_type, public, expected):
    assert private_unless_public(repo_type, public) is expected


def test_an_unknown_repo_type_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"'model', 'dataset', 'space'.*'models'"):
        private_unless_public("models", False)


def test_hint_names_the_repo_type_and_every_pattern():
    hint = push_later_hint("me/nails", "out", ["onnx/*.onnx", "config.json"], "space")
    assert (
        hint
        == 'hf upload me/nails out . --repo-type space --include "onnx/*.onnx" --include "config.json"'
    )


_PUSH_SCRIPT = """
import json, sys
from nail_segformer.hub import PushError, push_folder

folder, repo_id, repo_type, private, sdk, patterns = json.loads(sys.argv[1])
try:
    print(push_folder(folder, repo_id, patterns, commit_message="up", repo_type=repo_type,
                      private=private, space_sdk=sdk))
except PushError as err:
    print(err, file=sys.stderr)
    sys.exit(3)
"""


def _push(hub, tmp_path, folder, repo_id, repo_type, private, sdk, patterns, token=TOKEN):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_TOKEN")}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_TOKEN=token,
    )
    payload = json.dumps([str(folder), repo_id, repo_type, private, sdk, patterns])
    return subprocess.run(
        [sys.executable, "-c", _PUSH_SCRIPT, payload],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "repo_type,private,sdk",
    [("model", None, None), ("dataset", True, None), ("space", False, "gradio")],
)
def test_push_creates_the_repo_and_publishes_only_the_selected_files(
    tmp_path, repo_type, private, sdk
):
    folder = _tree(
        tmp_path / "out",
        ["README.md", "onnx/model.onnx", "onnx/notes/local.txt", "run_args.json", "_staging/x"],
    )
    with HubStub(expected_token=TOKEN) as hub:
        proc = _push(
            hub, tmp_path, folder, "me/thing", repo_type, private, sdk, ["README.md", "onnx/*"]
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "me/thing"
    created = hub.repos["me/thing"]
    visibility = {None: None, True: "private", False: "public"}[private]
    assert (created["type"], created.get("visibility"), created.get("sdk")) == (
        repo_type,
        visibility,
        sdk,
    )
    (commit,) = hub.commits_to("me/thing")
    assert commit.files == {"README.md": b"README.md", "onnx/model.onnx": b"onnx/model.onnx"}
    assert hub.unknown_requests == []


def test_a_refused_push_says_why_and_how_to_push_later(tmp_path):
    folder = _tree(tmp_path / "out", ["config.json"])
    with HubStub(expected_token=TOKEN) as hub:
        proc = _push(
            hub,
            tmp_path,
            folder,
            "me/thing",
            "model",
            None,
            None,
            ["config.json"],
            token="hf_" + "w" * 34,
        )
    assert proc.returncode == 3
    assert "pushing to the Hub failed (me/thing:" in proc.stderr
    assert f'hf upload me/thing {folder} . --include "config.json"' in proc.stderr
    assert hub.commits == []


def test_nothing_to_push_is_an_error_before_any_request(tmp_path):
    folder = _tree(tmp_path / "out", ["run_args.json"])
    with HubStub(expected_token=TOKEN) as hub:
        proc = _push(hub, tmp_path, folder, "me/thing", "model", None, None, ["config.json"])
    assert proc.returncode == 3
    assert "nothing to push" in proc.stderr
    assert hub.requests == []
