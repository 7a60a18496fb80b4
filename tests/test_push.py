"""``--push_to_hub`` end to end, against a local stand-in for the Hub's HTTP API (support/hub_stub.py).

Training runs in a subprocess: ``huggingface_hub`` reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``
when it is imported, and conftest.py has made this process offline before any import.
"""

import base64
import json
import os
import secrets
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.hub_checkpoints import write_ade_checkpoint
from support.hub_stub import HubStub
from support.runs import tiny_run_argv

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_ID = "tester/nails"
EPOCHS = 2  # tiny_run_argv's --num_train_epochs
FINAL_MESSAGE = "nail_segformer: final model"  # train.main's push_to_hub commit message

# What a push publishes: what a user needs to load the model (README.md being this package's
# card), and the metrics.
MODEL_FILES = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"}
METRIC_FILES = {
    "train_results.json",  # trainer.save_metrics("train"), then one per evaluated split
    "validation_results.json",
    "test_results.json",
    "all_results.json",  # save_metrics merges every split here
}
# What stays in the output folder only: local paths and the user's file names.
LOCAL_ONLY_FILES = {
    "training_args.bin",  # Trainer.save_model: the arguments, output_dir included
    "trainer_state.json",  # trainer.save_state(): best_model_checkpoint is a local path
    "run_args.json",  # train.save_run_args: data_root, output_dir
    "split_manifest.csv",  # train.load_data: every photo's file name
}
# HubPush.on_save publishes a checkpoint's model files (from a staged copy of checkpoint-N):
# no card or metrics yet.
CHECKPOINT_PUSH_FILES = {"config.json", "model.safetensors", "preprocessor_config.json"}
# The commits of one run, in order: one per epoch, then the evaluated final model.
EXPECTED_COMMITS = [
    *(f"Training in progress, epoch {epoch}" for epoch in range(1, EPOCHS + 1)),
    FINAL_MESSAGE,
]


def _planted_token() -> str:
    return "hf_" + "".join(secrets.choice(string.ascii_letters) for _ in range(34))


def _secret_forms(secret: str) -> list[bytes]:
    """The secret's bytes and its base64 renderings at each of the 3 byte alignments.

    Only characters that depend on the secret's bits alone are kept, so a match does not hinge
    on the bytes around the secret.
    """
    raw = secret.encode()
    forms = [raw]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        core = encoded[(offset * 8 + 5) // 6 : (offset + len(raw)) * 8 // 6]
        forms += [core, core.replace(b"+", b"-").replace(b"/", b"_")]
    return forms


def _holders(named_bytes: dict[str, bytes], secret: str) -> list[str]:
    forms = _secret_forms(secret)
    return sorted(name for name, data in named_bytes.items() if any(f in data for f in forms))


def _read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _hub_env(hub: HubStub, hf_home: Path, **extra: str) -> dict[str, str]:
    """This process's environment pointed at the stub, with no token of its own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_DISABLE_XET"))
    }
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HOME=str(hf_home),
        NO_ALBUMENTATIONS_UPDATE="1",
        **extra,
    )
    return env


@dataclass
class PushedRun:
    hub: HubStub
    token: str
    output_dir: Path
    hf_home: Path
    stdout: str
    stderr: str
    root: Path  # every local path of the run is under it
    data_root: Path

    def final_files(self) -> dict[str, bytes]:
        return self.hub.commits_to(REPO_ID)[-1].files


def _fine_tune_argv(checkpoint: Path, *argv: str) -> list[str]:
    """tiny_run_argv fine-tuning a local checkpoint folder instead of training from scratch."""
    argv = list(argv)
    at = argv.index("--from_scratch_preset")
    argv[at : at + 2] = ["--model_name_or_path", str(checkpoint)]
    return argv


@pytest.fixture(scope="module")
def pushed_run(synthetic_root, tmp_path_factory):
    """A 2-epoch run fine-tuning a local checkpoint folder (shaped like the Hub's ADE20k
    checkpoints, small) with --push_to_hub against a HubStub that expects a planted token."""
    token = _planted_token()
    root = tmp_path_factory.mktemp("push")
    output_dir, hf_home = root / "out", root / "hf_home"
    checkpoint = write_ade_checkpoint(root / "my-checkpoint")
    argv = tiny_run_argv(
        synthetic_root,
        output_dir,
        "--push_to_hub",
        "true",
        "--hub_model_id",
        REPO_ID,
        "--hub_token",
        token,
        "--save_strategy",
        "epoch",
        # A checkpoint push is skipped while the previous one is still uploading; always pushing
        # queues it instead, so the test sees one push per epoch however slow the machine.
        "--hub_always_push",
        "true",
    )
    argv = _fine_tune_argv(checkpoint, *argv)
    with HubStub(expected_token=token) as hub:
        proc = subprocess.Popen(
            [sys.executable, "run_finetune.py", *argv],
            cwd=REPO_ROOT,
            env=_hub_env(hub, hf_home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Import what the loading test needs while the child trains (saves ~6 s alone).
            import transformers.pipelines  # noqa: F401

            stdout, stderr = proc.communicate(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, f"training failed:\n{stdout[-3000:]}\n{stderr[-6000:]}"
        yield PushedRun(hub, token, output_dir, hf_home, stdout, stderr, root, synthetic_root)


def test_push_creates_the_named_repo(pushed_run):
    assert list(pushed_run.hub.repos) == [REPO_ID]


def test_push_asks_only_for_implemented_endpoints(pushed_run):
    assert pushed_run.hub.unknown_requests == []


def test_one_checkpoint_push_per_epoch_then_the_final_model(pushed_run):
    assert [c.summary for c in pushed_run.hub.commits_to(REPO_ID)] == EXPECTED_COMMITS


def test_checkpoint_pushes_carry_a_loadable_model(pushed_run):
    checkpoint_pushes = pushed_run.hub.commits_to(REPO_ID)[:EPOCHS]
    for commit in checkpoint_pushes:
        assert set(commit.files) == CHECKPOINT_PUSH_FILES, commit.summary


def test_final_commit_holds_exactly_the_model_card_and_metrics(pushed_run):
    final = pushed_run.final_files()
    assert set(final) == MODEL_FILES | METRIC_FILES
    for name, data in final.items():
        assert (pushed_run.output_dir / name).read_bytes() == data, name
    assert pushed_run.hub.tree(REPO_ID) == final  # no earlier commit left another file behind


def test_the_pushed_model_carries_the_threshold_chosen_on_validation(pushed_run):
    final = pushed_run.final_files()
    config = json.loads(final["config.json"])
    results = json.loads(final["all_results.json"])
    assert config["nail_threshold"] == results["validation_nail_threshold"] is not None


def test_run_files_with_local_paths_stay_local(pushed_run):
    local = {p.name for p in pushed_run.output_dir.iterdir() if p.is_file()}
    assert LOCAL_ONLY_FILES <= local
    pushed = {path for c in pushed_run.hub.commits_to(REPO_ID) for path in c.files}
    assert not pushed & LOCAL_ONLY_FILES


def test_no_pushed_file_holds_a_local_path_or_a_photo_name(pushed_run):
    photos = sorted((pushed_run.data_root / "Images").rglob("*.jpg"))
    secrets_ = [str(pushed_run.root), str(pushed_run.data_root), *(p.stem for p in photos)]
    assert len(photos) > 10
    for commit in pushed_run.hub.commits_to(REPO_ID):
        for path, data in commit.files.items():
            found = [s for s in secrets_ if s.encode() in data]
            assert found == [], (commit.summary, path, found[:3])
    # The check can see them: the local-only files hold both.
    manifest = (pushed_run.output_dir / "split_manifest.csv").read_text()
    assert photos[0].stem in manifest
    assert str(pushed_run.root) in (pushed_run.output_dir / "run_args.json").read_text()


def test_card_of_a_local_checkpoint_names_no_base_model(pushed_run):
    from huggingface_hub import ModelCard

    card = ModelCard(pushed_run.final_files()["README.md"].decode())
    assert card.data.base_model is None
    assert "a fine-tuned version of a local SegFormer checkpoint" in card.text


def test_no_checkpoint_folder_is_pushed(pushed_run):
    assert any(p.name.startswith("checkpoint-") for p in pushed_run.output_dir.iterdir())
    pushed = {path for c in pushed_run.hub.commits_to(REPO_ID) for path in c.files}
    assert pushed and all("/" not in path for path in pushed), sorted(pushed)


def test_pushed_card_is_ours_with_the_final_metrics(pushed_run):
    from huggingface_hub import ModelCard

    final = pushed_run.final_files()
    card = ModelCard(final["README.md"].decode())
    assert card.data.pipeline_tag == "image-segmentation"
    assert card.data.library_name == "transformers"
    assert card.data.model_name == REPO_ID
    assert "nail_segformer" in card.data.tags
    assert "More information needed" not in card.text  # the Trainer's own card
    results = {
        split: json.loads(final[f"{split}_results.json"]) for split in ("validation", "test")
    }
    reported = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert ("validation", "iou_nail") in reported and ("test", "iou_nail") in reported
    for (split, key), value in reported.items():
        assert value == pytest.approx(results[split][f"{split}_{key}"]), (split, key)


def test_pushed_card_names_no_file_that_was_not_pushed(pushed_run):
    import re

    final = pushed_run.final_files()
    text = final["README.md"].decode()
    named = set(re.findall(r"`([\w.-]+\.(?:csv|json|safetensors|bin))`", text))
    assert named - set(final) == set()


def test_token_reached_the_hub_only_through_the_authorization_header(pushed_run):
    requests = pushed_run.hub.requests
    assert requests
    assert {r.authorization for r in requests} == {f"Bearer {pushed_run.token}"}


@pytest.mark.parametrize(
    "place", ["pushed files", "request bodies", "output_dir", "HF_HOME", "stdout", "stderr"]
)
def test_token_is_written_nowhere(pushed_run, place):
    run = pushed_run
    named_bytes = {
        "pushed files": lambda: {
            f"{i}:{path}": data
            for i, c in enumerate(run.hub.commits_to(REPO_ID))
            for path, data in c.files.items()
        },
        "request bodies": lambda: {
            f"{i}:{r.method} {r.path}": r.body for i, r in enumerate(run.hub.requests)
        },
        "output_dir": lambda: _read_tree(run.output_dir),
        "HF_HOME": lambda: _read_tree(run.hf_home) if run.hf_home.exists() else {},
        "stdout": lambda: {"stdout": run.stdout.encode()},
        "stderr": lambda: {"stderr": run.stderr.encode()},
    }[place]()
    assert named_bytes or place == "HF_HOME"
    assert _holders(named_bytes, run.token) == []


def test_pushed_folder_loads_in_auto_model_and_pipeline(pushed_run, synthetic_root, tmp_path):
    from PIL import Image
    from transformers import AutoModelForSemanticSegmentation, pipeline

    for name, data in pushed_run.final_files().items():
        (tmp_path / name).write_bytes(data)
    model = AutoModelForSemanticSegmentation.from_pretrained(tmp_path)
    assert model.config.id2label == {0: "background", 1: "nail"}

    photo = Image.open(sorted((synthetic_root / "Images").rglob("*.*"))[0]).convert("RGB")
    segments = pipeline("image-segmentation", model=str(tmp_path))(photo)
    assert segments and {s["label"] for s in segments} <= {"background", "nail"}
    assert all(s["mask"].size == photo.size for s in segments)


@pytest.mark.parametrize("prefix", [b"", b"a", b"ab"], ids=["offset0", "offset1", "offset2"])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_leak_check_finds_the_token_in_base64_at_any_offset(prefix, encode):
    token = _planted_token()
    blob = encode(prefix + token.encode() + b"\n}")
    assert _holders({"blob": blob, "clean": encode(prefix + b"x" * 40)}, token) == ["blob"]


def test_leak_check_finds_a_token_pickled_by_torch_save(tmp_path):
    import torch
    from transformers import TrainingArguments

    token = _planted_token()
    args = TrainingArguments(output_dir=str(tmp_path), hub_token=token, report_to="none")
    torch.save(args, tmp_path / "training_args.bin")  # what the Trainer would push
    assert _holders(_read_tree(tmp_path), token) == ["training_args.bin"]


_UPLOAD_SCRIPT = """
import sys
from huggingface_hub import HfApi

api = HfApi()
api.create_repo("tester/plain", exist_ok=True)
api.create_repo("tester/plain", exist_ok=True)  # the Hub answers 409; exist_ok accepts it
print(api.upload_folder(repo_id="tester/plain", folder_path=sys.argv[1], commit_message="up").oid)
"""


@pytest.mark.parametrize("disable_xet", ["0", "1"], ids=["pipelined-upload", "create-commit"])
def test_stub_serves_both_upload_paths(tmp_path, disable_xet):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    files = {"README.md": b"---\nlicense: mit\n---\n# x\n", "sub/w.bin": bytes(range(256)) * 9}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    token = _planted_token()
    with HubStub(expected_token=token) as hub:
        env = _hub_env(hub, tmp_path / "hf_home", HF_TOKEN=token, HF_HUB_DISABLE_XET=disable_xet)
        proc = subprocess.run(
            [sys.executable, "-c", _UPLOAD_SCRIPT, str(folder)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (commit,) = hub.commits
    assert proc.stdout.strip() == commit.oid
    assert (commit.repo_id, commit.summary, commit.files) == ("tester/plain", "up", files)
    assert hub.unknown_requests == []


def _validate_card(hub: HubStub, content: str) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{hub.url}/api/validate-yaml",
        data=json.dumps({"content": content, "repoType": "model"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.parametrize("local", [True, False])
def test_card_names_a_hub_base_model_and_never_a_local_one(tmp_path, local):
    from nail_segformer.train.card import render_model_card
    from nail_segformer.train.run_dir import hub_base_model

    name = str(write_ade_checkpoint(tmp_path / "ckpt")) if local else "nvidia/mit-b0"
    card = render_model_card(
        model_id="me/nails",
        base_model=hub_base_model(name),
        preset=None,
        id2label={0: "background", 1: "nail"},
        metrics={},
        data_summary={},
        hyperparameters={},
    )
    assert card.data.base_model == (None if local else "nvidia/mit-b0")
    assert str(tmp_path) not in str(card)
    with HubStub(models=("nvidia/mit-b0",)) as hub:
        assert _validate_card(hub, str(card)) == 200


# --------------------------------------------------------------------------- HubPush, unit


class _FakeArgs:
    def __init__(self, output_dir, save_strategy="epoch"):
        self.output_dir = str(output_dir)
        self.save_strategy = save_strategy


def _save_event(tmp_path, step, *, max_steps=10, stopping=False):
    """The arguments of a Trainer's on_save after it saved checkpoint-<step> of tmp_path."""
    from transformers import TrainerControl, TrainerState

    from nail_segformer.model import build_model

    checkpoint = tmp_path / f"checkpoint-{step}"
    build_model("tiny", seed=step).save_pretrained(checkpoint)
    (checkpoint / "optimizer.pt").write_bytes(b"local only")
    state = TrainerState(global_step=step, max_steps=max_steps, epoch=float(step))
    control = TrainerControl(should_training_stop=stopping)
    return _FakeArgs(tmp_path), state, control


class _RecordingPush:
    """Stands in for nail_segformer.hub.push_folder: records what each push would publish."""

    def __init__(self, release=None):
        import threading

        self.pushes = []
        self.release = release or threading.Event()
        if release is None:
            self.release.set()

    def __call__(self, folder, repo_id, patterns, *, commit_message, **kwargs):
        from nail_segformer.hub import matching_files

        self.release.wait(30)
        files = {n: (Path(folder) / n).read_bytes() for n in matching_files(folder, patterns)}
        self.pushes.append((commit_message, files))
        return repo_id


@pytest.mark.parametrize("every_save", [True, False], ids=["every_save", "end"])
def test_checkpoint_push_follows_the_hub_strategy(tmp_path, every_save):
    from nail_segformer.train.push import HubPush

    push = _RecordingPush()
    hub_push = HubPush("me/nails", every_save=every_save, push=push)
    hub_push.on_save(*_save_event(tmp_path, 3))
    assert hub_push.wait(30)
    expected = ["Training in progress, epoch 3"] if every_save else []
    assert [message for message, _ in push.pushes] == expected
    if every_save:
        assert set(push.pushes[0][1]) == {"config.json", "model.safetensors"}
    assert not list(tmp_path.glob("_hub_staging-*"))  # the staged copy is gone


@pytest.mark.parametrize("always_push", [False, True])
def test_a_save_during_an_upload_is_skipped_unless_always_push(tmp_path, always_push):
    import threading

    from nail_segformer.train.push import HubPush

    release = threading.Event()
    push = _RecordingPush(release)
    hub_push = HubPush("me/nails", always_push=always_push, push=push)
    hub_push.on_save(*_save_event(tmp_path, 1))
    hub_push.on_save(*_save_event(tmp_path, 2))  # while the first upload still runs
    release.set()
    assert hub_push.wait(30)
    expected = [1, 2] if always_push else [1]
    assert [m for m, _ in push.pushes] == [f"Training in progress, epoch {e}" for e in expected]


@pytest.mark.parametrize("step,pushed", [(4, False), (10, True)], ids=["stop", "last-step"])
def test_a_save_that_stops_training_early_is_not_pushed(tmp_path, step, pushed):
    from nail_segformer.train.push import HubPush

    push = _RecordingPush()
    hub_push = HubPush("me/nails", push=push)
    hub_push.on_save(*_save_event(tmp_path, step, max_steps=10, stopping=True))
    assert hub_push.wait(30)
    assert len(push.pushes) == int(pushed)


def test_staged_checkpoint_survives_its_deletion(tmp_path):
    import shutil
    import threading

    from nail_segformer.train.push import HubPush

    release = threading.Event()
    push = _RecordingPush(release)
    hub_push = HubPush("me/nails", push=push)
    event = _save_event(tmp_path, 1)
    weights = (tmp_path / "checkpoint-1" / "model.safetensors").read_bytes()
    hub_push.on_save(*event)
    shutil.rmtree(tmp_path / "checkpoint-1")  # save_total_limit rotates it out mid-upload
    release.set()
    assert hub_push.wait(30)
    assert hub_push.error is None
    assert push.pushes[0][1]["model.safetensors"] == weights


def test_trainer_gets_arguments_without_push_or_token(tmp_path):
    from nail_segformer.model import build_model
    from nail_segformer.train import parse_args
    from nail_segformer.train.push import HubPush
    from nail_segformer.train.trainer import NailTrainer

    token = _planted_token()
    _, _, args = parse_args(
        ["--data_root", "d", "--output_dir", str(tmp_path / "run"), "--use_cpu", "true"]
        + ["--eval_strategy", "no", "--save_strategy", "epoch", "--load_best_model_at_end", "false"]
        + ["--push_to_hub", "true", "--hub_model_id", "me/nails", "--hub_token", token]
    )
    trainer = NailTrainer(model=build_model("tiny", seed=0), args=args)
    assert (trainer.args.push_to_hub, trainer.args.hub_token) == (False, None)
    assert isinstance(trainer.hub_push, HubPush) and trainer.hub_push.repo_id == "me/nails"
    assert trainer.hub_push in trainer.callback_handler.callbacks
    assert token not in repr(trainer.hub_push)


# --------------------------------------------------------------------------- HubPush, end to end


def _run_with_hub(argv, hub, hf_home, timeout=240):
    return subprocess.run(
        [sys.executable, "run_finetune.py", *argv],
        cwd=REPO_ROOT,
        env=_hub_env(hub, hf_home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_checkpoint_reaches_the_hub_whole_with_save_total_limit_1(synthetic_root, tmp_path):
    from safetensors.torch import load

    token = _planted_token()
    argv = tiny_run_argv(
        synthetic_root,
        tmp_path / "run",
        *("--push_to_hub", "true", "--hub_model_id", REPO_ID, "--hub_token", token),
        *("--save_strategy", "steps", "--save_steps", "1", "--save_total_limit", "1"),
        *("--eval_strategy", "no", "--load_best_model_at_end", "false"),
        *("--hub_always_push", "true"),
    )
    # Each commit takes longer than a step, so the Trainer deletes a checkpoint before its
    # upload starts: only a staged copy can still be uploaded whole.
    with HubStub(expected_token=token, commit_delay_s=0.7) as hub:
        proc = _run_with_hub(argv, hub, tmp_path / "hf_home")
    assert proc.returncode == 0, proc.stderr[-4000:]
    steps = 2 * 3  # 2 epochs of 12 photos at batch 4
    commits = hub.commits_to(REPO_ID)
    assert [c.summary for c in commits] == [
        *(f"Training in progress, step {s}" for s in range(1, steps + 1)),
        FINAL_MESSAGE,
    ]
    weights = []
    for commit in commits[:steps]:
        assert set(commit.files) == CHECKPOINT_PUSH_FILES, commit.summary
        weights.append(load(commit.files["model.safetensors"]))
    assert len({float(w["decode_head.classifier.weight"].sum()) for w in weights}) == steps
    assert len(list((tmp_path / "run").glob("checkpoint-*"))) == 1
    assert not list((tmp_path / "run").glob("_hub_staging-*"))


def test_sigterm_during_a_slow_upload_exits_promptly_with_the_hint(synthetic_root, tmp_path):
    import signal
    import time

    from nail_segformer.train.pipeline import STOP_UPLOAD_WAIT_S

    token = _planted_token()
    run = tmp_path / "run"
    argv = tiny_run_argv(
        synthetic_root,
        run,
        *("--push_to_hub", "true", "--hub_model_id", REPO_ID, "--hub_token", token),
        *("--num_train_epochs", "200", "--save_strategy", "epoch"),
        *("--eval_strategy", "no", "--load_best_model_at_end", "false"),
    )
    with HubStub(expected_token=token, commit_delay_s=120) as hub:
        proc = subprocess.Popen(
            [sys.executable, "run_finetune.py", *argv],
            cwd=REPO_ROOT,
            env=_hub_env(hub, tmp_path / "hf_home"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 180
            while hub.commits_started == 0 and proc.poll() is None:
                assert time.monotonic() < deadline, "no checkpoint upload started"
                time.sleep(0.05)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=STOP_UPLOAD_WAIT_S + 60)[0]
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, out[-4000:]
    assert took < STOP_UPLOAD_WAIT_S + 30, took  # not the stand-in's 120 s
    assert "is abandoned" in out
    (checkpoint,) = (c for c in run.glob("checkpoint-*") if c.name in out)
    assert f"{checkpoint.name} is not pushed" in out
    assert f"hf upload {REPO_ID} {checkpoint} ." in out
    assert hub.commits_to(REPO_ID) == []  # the one upload never finished
    assert token not in out


def test_hub_flags_reach_the_push(tmp_path):
    from nail_segformer.train import parse_args
    from nail_segformer.train.push import HubPush

    _, _, args = parse_args(
        ["--data_root", "d", "--output_dir", str(tmp_path / "my-run"), "--push_to_hub", "true"]
        + ["--hub_strategy", "end", "--hub_always_push", "true", "--hub_private_repo", "true"]
        + ["--hub_revision", "dev"]
    )
    push = HubPush.from_training_args(args)
    assert (push.repo_id, push.every_save, push.always_push) == ("my-run", False, True)
    assert (push.private, push.revision) == (True, "dev")
