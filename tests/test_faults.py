"""Faults: killed and interrupted runs, crashes during save, failed pushes, unsafe files.

The runs here are real `run_finetune.py` processes on the tiny model, since a SIGKILL or a
signal handler can only be tested on a process of its own.
"""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from support.runs import tiny_run_argv

REPO = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 3  # 12 training photos of the 16-photo fixture, batch 4


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_TOKEN")}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="2", **extra)
    return env


def _start(argv, **env):
    return subprocess.Popen(
        [sys.executable, str(REPO / "run_finetune.py"), *argv],
        cwd=REPO,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _run(argv, timeout=240, **env):
    proc = _start(argv, **env)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _wait_for(predicate, proc, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _weights(folder):
    from transformers import AutoModelForSemanticSegmentation

    return AutoModelForSemanticSegmentation.from_pretrained(folder).state_dict()


def _complete(folder):
    from nail_segformer.train.run_dir import is_complete_checkpoint

    return is_complete_checkpoint(folder)


def test_sigkill_then_rerun_ends_like_an_uninterrupted_run(synthetic_root, tmp_path):
    epochs = ("--num_train_epochs", "6")
    code, out = _run(tiny_run_argv(synthetic_root, tmp_path / "whole", *epochs))
    assert code == 0, out

    killed = tmp_path / "killed"
    proc = _start(tiny_run_argv(synthetic_root, killed, *epochs))
    second_epoch = killed / f"checkpoint-{2 * STEPS_PER_EPOCH}"
    reached = _wait_for(lambda: _complete(second_epoch), proc)
    still_running = proc.poll() is None
    proc.kill()  # SIGKILL: no handler, no cleanup
    proc.wait()
    assert reached and still_running, (
        "the run must be killed mid-training for this test to mean anything"
    )
    assert not (killed / "all_results.json").exists()

    code, out = _run(tiny_run_argv(synthetic_root, killed, *epochs))  # the same command again
    assert code == 0, out
    assert "resuming from" in out

    whole, resumed = _weights(tmp_path / "whole"), _weights(killed)
    for name, tensor in whole.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-5, msg=name)
    whole_metrics = json.loads((tmp_path / "whole" / "all_results.json").read_text())
    resumed_metrics = json.loads(killed.joinpath("all_results.json").read_text())
    for key in ("validation_iou_nail", "validation_mean_iou", "test_iou_nail", "test_loss"):
        assert resumed_metrics[key] == pytest.approx(whole_metrics[key], abs=1e-5), key


def test_sigterm_saves_a_checkpoint_then_rerun_resumes(synthetic_root, tmp_path):
    # No periodic checkpoints: any checkpoint found was written because of the signal.
    argv = tiny_run_argv(
        synthetic_root,
        tmp_path / "run",
        "--num_train_epochs",
        "200",
        "--save_strategy",
        "no",
        "--eval_strategy",
        "no",
        "--load_best_model_at_end",
        "false",
    )
    proc = _start(argv)
    lines = []
    while proc.poll() is None:
        line = proc.stdout.readline()
        lines.append(line)
        if "'loss'" in line:  # training is under way
            break
    proc.send_signal(signal.SIGTERM)
    out = "".join(lines) + proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out
    checkpoints = sorted((tmp_path / "run").glob("checkpoint-*"))
    assert len(checkpoints) == 1 and _complete(checkpoints[0]), out
    step = json.loads((checkpoints[0] / "trainer_state.json").read_text())["global_step"]
    assert checkpoints[0].name == f"checkpoint-{step}" and 0 < step < 200 * STEPS_PER_EPOCH
    assert "run the same command again to resume" in out

    code, out = _run([*argv, "--num_train_epochs", str(step // STEPS_PER_EPOCH + 2)])
    assert code == 0, out
    assert f"resuming from {checkpoints[0]}" in out


@pytest.mark.parametrize("failure", ["hub down", "bad token"])
def test_failed_push_keeps_every_local_file(synthetic_root, tmp_path, failure):
    from support.hub_stub import HubStub

    run = tmp_path / "run"
    token = "hf_wrongwrongwrongwrongwrongwrongwr"
    argv = tiny_run_argv(
        synthetic_root,
        run,
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "me/nails",
        "--hub_token",
        token,
    )
    env = {"HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(tmp_path / "hf")}
    if failure == "hub down":
        # Port 9 (discard) on loopback: connection refused at once.
        code, out = _run(argv, HF_ENDPOINT="http://127.0.0.1:9", **env)
    else:
        with HubStub(expected_token="hf_therightoneisnotthisoneatall00") as hub:
            code, out = _run(argv, HF_ENDPOINT=hub.url, **env)
        assert hub.commits_to("me/nails") == []
    assert code == 3, out
    assert "pushing to the Hub failed" in out and "hf upload me/nails" in out
    assert token not in out
    for name in (
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "README.md",
        "all_results.json",
    ):
        assert (run / name).is_file(), name
    assert _complete(sorted(run.glob("checkpoint-*"))[-1])


def test_crash_while_saving_the_final_model_keeps_the_old_one(tmp_path, monkeypatch):
    from transformers import SegformerForSemanticSegmentation

    from nail_segformer.model import build_model
    from nail_segformer.train import parse_args
    from nail_segformer.train.trainer import NailTrainer

    flags = ["--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false"]
    _, _, args = parse_args(
        ["--data_root", "d", "--output_dir", str(tmp_path), "--use_cpu", "true", *flags]
    )
    trainer = NailTrainer(model=build_model("tiny", seed=0), args=args)
    trainer.save_model()
    good = (tmp_path / "model.safetensors").read_bytes()

    def crash(self, save_directory, **kwargs):
        Path(save_directory, "model.safetensors").write_bytes(b"half a file")
        raise OSError("disk full")

    trainer.model = build_model("tiny", seed=1)
    monkeypatch.setattr(SegformerForSemanticSegmentation, "save_pretrained", crash)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_model()
    assert (tmp_path / "model.safetensors").read_bytes() == good


class _Payload:
    """Unpickling this would create a file: proof that arbitrary code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickled_payload_in_a_checkpoint_is_never_executed(synthetic_root, tiny_run_dir, tmp_path):
    import shutil

    from nail_segformer.train import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    checkpoint = sorted(run.glob("checkpoint-*"))[-1]
    marker = tmp_path / "pwned"
    for name in ("optimizer.pt", "rng_state.pth", "scheduler.pt"):
        with open(checkpoint / name, "wb") as f:
            pickle.dump(_Payload(marker), f)
    with pytest.raises(pickle.UnpicklingError):
        main(tiny_run_argv(synthetic_root, run, "--num_train_epochs", "3"))
    assert not marker.exists()
