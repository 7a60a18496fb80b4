"""Training and evaluating with two processes on CPU (gloo): torchrun and ``accelerate launch``.

What must not depend on the number of processes:

- the training loss at equal global batch size. transformers 5 multiplies a custom loss by the
  number of processes when it averages label "tokens"; ``NailTrainer`` turns that off;
- the evaluation metrics of one model. On 2 processes the distributed sampler pads the last batch
  with repeated photos, which ``gather_for_metrics`` must drop before they reach the confusion
  matrix;
- the output folder and the Hub repo: only rank 0 writes the run files, the manifest and the card,
  and pushes. ``rank_audit/sitecustomize.py`` makes each file traceable to the rank that wrote it.

The single-process reference is conftest's ``tiny_run_dir``: batch 4 on one process, against
batch 2 on each of 2 processes here. Each launch takes 15-40 s on 2 busy CPU cores.
"""

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.hub_stub import HubStub
from support.runs import TINY_IMAGE_SIZE, tiny_run_argv

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AUDIT_HOOK_DIR = Path(__file__).resolve().parent / "support" / "rank_audit"
CPU_2PROC_CONFIG = REPO_ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"
LAUNCH_TIMEOUT_S = 300

REPO_ID = "tester/nails"
TOKEN = "hf_testdistributedNotARealTokenAtAll"
PUSH_FLAGS = ("--push_to_hub", "true", "--hub_model_id", REPO_ID, "--hub_token", TOKEN)
# One push per epoch (tiny_run_argv trains 2), then the final model; each exactly once.
EXPECTED_COMMITS = [
    "Training in progress, epoch 1",
    "Training in progress, epoch 2",
    "nail_segformer: final model",
]

# Modes that rank_audit's umask gives to what ranks other than 0 create.
OTHER_RANK_FILE_MODE, OTHER_RANK_DIR_MODE = 0o640, 0o750
# What the Trainer itself has every rank write: its RNG state, for an exact resume, into the
# checkpoint folder (which that rank may be first to create).
OTHER_RANK_ALLOWED = re.compile(r"^checkpoint-\d+(/rng_state_[1-9]\d*\.pth)?$")

LOSS_TOLERANCE = 0.1
# accelerate adds ~40 s and tests the same Trainer path, so it runs with -m slow only.
LAUNCHERS = (pytest.param("accelerate", marks=pytest.mark.slow), "torchrun")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launcher(name: str) -> list[str]:
    """The documented 2-process command prefix, to be followed by a script and its flags."""
    if name == "torchrun":
        return [str(BIN / "torchrun"), "--nproc_per_node=2", f"--master_port={_free_port()}"]
    return [str(BIN / "accelerate"), "launch", "--config_file", str(CPU_2PROC_CONFIG)]


def _launch_env(audit_root: Path, audit_log: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_TOKEN", "HF_ENDPOINT"))}
    env.update(
        OMP_NUM_THREADS="1",  # 2 processes on 2 cores
        NO_ALBUMENTATIONS_UPDATE="1",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(AUDIT_HOOK_DIR), env.get("PYTHONPATH")])),
        NAIL_AUDIT_ROOT=str(audit_root),
        NAIL_AUDIT_LOG=str(audit_log),
    )
    env.update(extra)
    return env


def _launch(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S
    )
    assert proc.returncode == 0, f"{cmd[:3]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def _logged_losses(run_dir: Path) -> list[float]:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@dataclass
class LaunchedRun:
    launcher: str
    output_dir: Path
    audit_log: Path
    commits: list[str]
    stdout: str
    stderr: str

    def writes(self, rank: int) -> list[str]:
        """``<event>\\t<path>`` lines of Python-level writes under output_dir by ``rank``."""
        log = self.audit_log / f"rank{rank}.log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module", params=LAUNCHERS)
def launched_run(request, synthetic_root, tmp_path_factory):
    """tiny_run_argv at batch 2 on each of 2 processes, pushing to a local Hub stand-in."""
    launcher = request.param
    root = tmp_path_factory.mktemp(f"ddp-{launcher}")
    output_dir, audit_log = root / "run", root / "audit"
    argv = tiny_run_argv(
        synthetic_root,
        output_dir,
        "--per_device_train_batch_size",
        "2",
        *PUSH_FLAGS,
        # Queue a checkpoint push behind a running one instead of skipping it (see test_push.py).
        "--hub_always_push",
        "true",
        # Rank 1 logs at info too, to say whether it built the resize cache or read it; the
        # cache has a folder of its own, so that no earlier run has built it.
        "--log_level_replica",
        "info",
        "--resize_cache_dir",
        str(root / "resize_cache"),
    )
    with HubStub(expected_token=TOKEN) as hub:
        env = _launch_env(
            output_dir,
            audit_log,
            HF_ENDPOINT=hub.url,
            HF_HUB_OFFLINE="0",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HOME=str(root / "hf_home"),
        )
        proc = _launch([*_launcher(launcher), "run_finetune.py", *argv], env)
        commits = [c.summary for c in hub.commits_to(REPO_ID)]
    return LaunchedRun(launcher, output_dir, audit_log, commits, proc.stdout, proc.stderr)


# --------------------------------------------------------------------------- training loss


def test_two_processes_take_the_steps_of_one_at_equal_global_batch(launched_run, tiny_run_dir):
    # 12 training photos, 2 epochs: 6 steps of 4 photos. Had each process trained on its own
    # (no process group), there would be 12 steps of 2.
    assert len(_logged_losses(launched_run.output_dir)) == len(_logged_losses(tiny_run_dir)) == 6


def test_loss_matches_single_process_at_equal_global_batch(launched_run, tiny_run_dir):
    # Both runs start from the same seeded weights and see the same photos in the same global
    # batches: accelerate's seedable sampler draws one permutation, and with 2 processes process
    # k takes the k-th batch of 2 of every 4 photos. Only the augmentation differs: each photo's
    # augmentation seed comes from torch's RNG on the process that loads it, so rank 1's photos
    # are augmented differently than in the single process. Measured on 2 cores: the logged
    # losses agree within 0.5% at every step; the process-count bug doubles them (1.48 against
    # 0.74 at step 1), so a 10% tolerance sits far from both.
    reference, distributed = _logged_losses(tiny_run_dir), _logged_losses(launched_run.output_dir)
    assert distributed[0] == pytest.approx(reference[0], rel=LOSS_TOLERANCE)
    mean = sum(distributed) / len(distributed)
    assert mean == pytest.approx(sum(reference) / len(reference), rel=LOSS_TOLERANCE)


# --------------------------------------------------------------------------- output folder


def test_output_folder_holds_what_a_single_process_run_writes(launched_run, tiny_run_dir):
    # Every rank saves its own RNG state in each checkpoint; everything else is written once.
    def normalise(names: set[str]) -> set[str]:
        return {re.sub(r"rng_state(_\d+)?\.pth$", "rng_state*.pth", n) for n in names}

    distributed = _tree(launched_run.output_dir)
    assert {n for n in distributed if "rng_state_1" in n} == {
        "checkpoint-3/rng_state_1.pth",
        "checkpoint-6/rng_state_1.pth",
    }
    assert normalise(distributed) == normalise(_tree(tiny_run_dir))
    siblings = [p.name for p in launched_run.output_dir.parent.iterdir()]
    assert not [name for name in siblings if ".bak-" in name]  # nothing moved aside


def test_other_ranks_create_only_their_rng_state(launched_run):
    root = launched_run.output_dir
    created = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode == (OTHER_RANK_DIR_MODE if path.is_dir() else OTHER_RANK_FILE_MODE):
            created.append(path.relative_to(root).as_posix())
    assert created, "the audit umask did not reach rank 1 (is rank_audit on PYTHONPATH?)"
    assert [name for name in created if not OTHER_RANK_ALLOWED.match(name)] == []


def test_other_ranks_write_nothing_through_python(launched_run):
    assert launched_run.writes(0), "the audit hook did not run (is rank_audit on PYTHONPATH?)"
    unexpected = [
        line for line in launched_run.writes(1) if not OTHER_RANK_ALLOWED.match(line.split("\t")[1])
    ]
    assert unexpected == []


def test_rank_zero_writes_the_manifest_once_and_the_card(launched_run):
    written = [line.split("\t")[1] for line in launched_run.writes(0) if line.startswith("open")]
    assert written.count("split_manifest.csv") == 1
    assert written.count("run_args.json") == 1
    assert "README.md" in written
    # The final metrics table, printed by rank 0 only.
    assert len(re.findall(r"^metric +validation", launched_run.stdout, re.MULTILINE)) == 1


def test_the_resize_caches_are_built_once_and_read_by_every_rank(launched_run):
    built = re.findall(r"built resize cache (\S+)", launched_run.stderr)
    reused = re.findall(r"reusing resize cache (\S+)", launched_run.stderr)
    # Training, validation and test: rank 0 builds each while rank 1 waits, then reads them.
    assert len(set(built)) == len(built) == 3 and reused == built


def test_only_rank_zero_pushes(launched_run):
    assert launched_run.commits == EXPECTED_COMMITS


# --------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def eval_results(tiny_run_dir, synthetic_root, tmp_path_factory):
    """The tiny run's model evaluated by tests/support/ddp_eval.py: in this process, and on 2."""
    from support.ddp_eval import evaluate

    root = tmp_path_factory.mktemp("ddp-eval")
    single = evaluate(str(tiny_run_dir), str(synthetic_root), str(root / "single"))
    work_dir = root / "distributed"
    script = ["tests/support/ddp_eval.py", str(tiny_run_dir), str(synthetic_root), str(work_dir)]
    _launch([*_launcher("torchrun"), *script], _launch_env(work_dir, root))
    ranks = [json.loads((work_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    return single, ranks


def test_distributed_eval_pads_its_last_batch(eval_results):
    from support.ddp_eval import EVAL_BATCH_SIZE

    single, ranks = eval_results
    assert single["world_size"] == 1 and [r["world_size"] for r in ranks] == [2, 2]
    assert single["validation_size"] % (2 * EVAL_BATCH_SIZE) != 0


def test_distributed_eval_counts_each_pixel_once(eval_results):
    single, ranks = eval_results
    pixels = single["validation_size"] * TINY_IMAGE_SIZE**2  # eval masks have no ignored pixel
    assert sum(map(sum, single["confusion"])) == pixels
    for result in ranks:
        assert result["confusion"] == single["confusion"]


def test_distributed_eval_metrics_equal_single_process(eval_results):
    single, ranks = eval_results

    def confusion_metrics(result: dict) -> dict[str, float]:
        # eval_loss is a mean of per-batch losses, which batch boundaries change; runtimes vary.
        skip = ("eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
        skip += ("eval_model_preparation_time", "epoch")
        return {k: v for k, v in result["metrics"].items() if k not in skip}

    assert "eval_iou_nail" in confusion_metrics(single)
    for result in ranks:
        assert confusion_metrics(result) == confusion_metrics(single)  # exactly


# --------------------------------------------------------------------------- launch checks


def test_launched_processes_the_trainer_does_not_join_are_refused(monkeypatch):
    # What torchrun without --use_cpu gives on a machine without GPUs: WORLD_SIZE=2 in each
    # process, but a Trainer that runs it as a single-process job.
    from nail_segformer import train
    from nail_segformer.train import pipeline

    _, _, training_args = train.parse_args(["--data_root", "d", "--use_cpu", "true"])
    assert training_args.world_size == 1  # sets up the devices before WORLD_SIZE changes
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="--use_cpu true"):
        pipeline.check_launch(training_args)


def test_effective_batch_multiplies_batch_processes_and_accumulation():
    from nail_segformer import train
    from nail_segformer.train import pipeline

    argv = ["--data_root", "d", "--use_cpu", "true", "--per_device_train_batch_size", "3"]
    _, _, training_args = train.parse_args([*argv, "--gradient_accumulation_steps", "2"])
    assert pipeline.effective_batch_size(training_args) == 6  # x 1 process


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.slow
@pytest.mark.skipif(_has_cuda(), reason="with GPUs, leaving out --use_cpu is right")
def test_torchrun_without_use_cpu_stops_before_writing(synthetic_root, tmp_path):
    output_dir = tmp_path / "run"
    argv = tiny_run_argv(synthetic_root, output_dir)
    del argv[argv.index("--use_cpu") : argv.index("--use_cpu") + 2]
    cmd = [*_launcher("torchrun"), "run_finetune.py", *argv]
    env = _launch_env(output_dir, tmp_path / "audit")
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "add --use_cpu true" in proc.stderr
    assert not output_dir.exists()


# --------------------------------------------------------------------------- pre-emption


def test_a_signal_another_process_received_stops_this_one(monkeypatch):
    from transformers import TrainerControl

    from nail_segformer.train import stopping as trainer_lib

    agreed = {"signal": None}  # what the all-reduce over the other processes would return
    monkeypatch.setattr(trainer_lib, "agree_on_stop", lambda local, device: agreed["signal"])
    stopper = trainer_lib.StopOnSignal(signals=())
    args, control = type("Args", (), {"device": "cpu"})(), TrainerControl()
    stopper.on_step_end(args, None, control)
    assert (control.should_save, control.should_training_stop) == (False, False)
    agreed["signal"] = signal.SIGTERM  # another process received SIGTERM; this one did not
    stopper.on_step_end(args, None, control)
    assert stopper.received is None and stopper.stop_signal == signal.SIGTERM
    assert (control.should_save, control.should_training_stop) == (True, True)


def test_one_process_receiving_sigterm_stops_every_process_at_the_same_step():
    from support.stop_agreement import run

    seen = run(received_by=1)
    assert set(seen) == {0, 1}
    for rank, (before, after) in seen.items():
        assert before == (None, False, False), rank
        assert after == (signal.SIGTERM, True, True), rank


def _start_rank(rank: int, port: int, argv: list[str], log: Path) -> subprocess.Popen:
    """One process of a 2-process job, started with the variables torchrun would set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_TOKEN", "HF_ENDPOINT"))}
    env.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        NO_ALBUMENTATIONS_UPDATE="1",
        HF_HUB_OFFLINE="1",
    )
    return subprocess.Popen(
        [sys.executable, "run_finetune.py", *argv],
        cwd=REPO_ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def _run_two(argv: list[str], logs: Path, signal_rank: int | None = None) -> list[int]:
    """Run both ranks; with ``signal_rank``, SIGTERM that rank alone once training is under way."""
    port = _free_port()
    logs.mkdir(parents=True, exist_ok=True)
    procs = [_start_rank(rank, port, argv, logs / f"rank{rank}.log") for rank in (0, 1)]
    try:
        if signal_rank is not None:
            deadline = time.monotonic() + LAUNCH_TIMEOUT_S
            # Rank 0 logs the loss of every step (--logging_steps 1): training is under way.
            while "'loss'" not in (logs / "rank0.log").read_text():
                assert all(p.poll() is None for p in procs), "a rank ended before training"
                assert time.monotonic() < deadline, "training did not start"
                time.sleep(0.05)
            procs[signal_rank].send_signal(signal.SIGTERM)
        return [p.wait(timeout=LAUNCH_TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


# Two 2-process runs, 30-80 s on 2 busy cores; the agreement itself is tested above, fast.
@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_saves_one_checkpoint_then_resumes(
    synthetic_root, tmp_path
):
    # No periodic checkpoints: the one found was written because of the signal.
    run = tmp_path / "run"
    argv = tiny_run_argv(
        synthetic_root,
        run,
        "--per_device_train_batch_size", "2",
        "--num_train_epochs", "200",
        "--save_strategy", "no",
        "--eval_strategy", "no",
        "--load_best_model_at_end", "false",
    )  # fmt: skip
    codes = _run_two(argv, tmp_path / "logs", signal_rank=1)
    logs = [(tmp_path / "logs" / f"rank{r}.log").read_text() for r in (0, 1)]
    assert codes == [128 + signal.SIGTERM] * 2, "\n".join(log[-3000:] for log in logs)
    checkpoints = sorted(run.glob("checkpoint-*"))
    assert len(checkpoints) == 1, checkpoints
    checkpoint = checkpoints[0]
    step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    assert checkpoint.name == f"checkpoint-{step}" and step > 0
    # Each process wrote its own random state into the same checkpoint.
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    for log in logs:
        assert f"stopped by SIGTERM at step {step}" in log
    assert "another process received SIGTERM" in logs[0]

    resume = [*argv, "--max_steps", str(step + 1)]
    codes = _run_two(resume, tmp_path / "logs-resumed")
    resumed = (tmp_path / "logs-resumed" / "rank0.log").read_text()
    assert codes == [0, 0], resumed[-3000:]
    assert f"resuming from {checkpoint}" in resumed
