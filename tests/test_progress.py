"""The progress line logged when there is no progress bar, and the data-loader defaults."""

import logging
import sys
from types import SimpleNamespace

import pytest

from nail_segformer.train import parse_args
from nail_segformer.train.progress import ProgressLogCallback, format_duration


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _state(step: int, max_steps: int = 1600):
    return SimpleNamespace(global_step=step, max_steps=max_steps, is_world_process_zero=True)


@pytest.mark.parametrize(
    ("seconds", "text"), [(42.4, "42 s"), (485, "8 min 05 s"), (3725, "1 h 02 min"), (-3, "0 s")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_progress_line_gives_rate_and_time_left(caplog):
    clock, args = _Clock(), SimpleNamespace(disable_tqdm=True)
    callback = ProgressLogCallback(clock=clock)
    callback.on_train_begin(args, _state(0), None)
    clock.now += 25.0  # 50 steps in 25 s
    with caplog.at_level(logging.INFO, logger="nail_segformer.train.progress"):
        callback.on_log(args, _state(50), None, logs={})
    assert caplog.messages == ["step 50/1600 (3%), 2.00 steps/s, about 12 min 55 s left"]


def test_evaluation_time_is_not_counted_as_training(caplog):
    clock, args = _Clock(), SimpleNamespace(disable_tqdm=True)
    callback = ProgressLogCallback(clock=clock)
    callback.on_train_begin(args, _state(0), None)
    clock.now += 600.0  # a long evaluation at step 0
    callback.on_evaluate(args, _state(0), None)
    clock.now += 10.0
    with caplog.at_level(logging.INFO, logger="nail_segformer.train.progress"):
        callback.on_log(args, _state(100, 200), None, logs={})
    assert caplog.messages == ["step 100/200 (50%), 10.00 steps/s, about 10 s left"]


def test_no_progress_line_beside_a_progress_bar(caplog):
    clock, args = _Clock(), SimpleNamespace(disable_tqdm=False)
    callback = ProgressLogCallback(clock=clock)
    callback.on_train_begin(args, _state(0), None)
    clock.now += 5.0
    with caplog.at_level(logging.INFO, logger="nail_segformer.train.progress"):
        callback.on_log(args, _state(10), None, logs={})
    assert caplog.messages == []


@pytest.mark.parametrize(("workers", "persistent"), [("0", False), ("2", True)])
def test_workers_persist_between_epochs_when_there_are_any(workers, persistent):
    *_, training_args = parse_args(["--data_root", "d", "--dataloader_num_workers", workers])
    assert training_args.dataloader_persistent_workers is persistent


def test_persistent_workers_can_be_turned_off():
    argv = ["--data_root", "d", "--dataloader_persistent_workers", "false"]
    *_, training_args = parse_args(argv)
    assert training_args.dataloader_persistent_workers is False


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_bar_shows_only_in_a_terminal(monkeypatch, terminal):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    *_, training_args = parse_args(["--data_root", "d"])
    assert training_args.disable_tqdm is (not terminal)


@pytest.mark.parametrize("cuda", [True, False])
def test_batches_are_pinned_only_with_a_gpu(monkeypatch, cuda):
    from nail_segformer.train import args

    # Only the package's question is answered "GPU": torch itself stays on the CPU here.
    monkeypatch.setattr(args, "_cuda_available", lambda: cuda)
    *_, training_args = parse_args(["--data_root", "d"])
    assert training_args.dataloader_pin_memory is cuda
