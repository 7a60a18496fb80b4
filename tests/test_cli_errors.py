"""Bad flags and flag combinations: one or two lines naming the flag, exit code 2, no traceback.

Each command's ``main(argv)`` is called in-process on a table of mistakes a new user makes;
one subprocess per command shows the same end to end. Every case must stop before any data or
model is loaded, so the table runs in seconds.
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nail_segformer.data.cli import main as data_main
from nail_segformer.export import main as export_main
from nail_segformer.predict.cli import main as predict_main
from nail_segformer.synthetic.cli import main as synthetic_main
from nail_segformer.train import ArgumentsError, parse_args, resolve_args
from nail_segformer.train.cli import main as train_main

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = "configs/demo.yaml"  # relative, as a user types it; tests run it from REPO_ROOT


def _output(capsys, caplog) -> str:
    """What the user sees: stdout, stderr and the log records at warning level or above."""
    captured = capsys.readouterr()
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not any(r.exc_info for r in records), "a traceback was logged"
    return captured.out + captured.err + "".join(f"{r.getMessage()}\n" for r in records)


def _call(main, argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        return exit_.code


def _assert_usage_error(code: int, output: str, expected: tuple[str, ...]) -> None:
    assert code == 2, output
    assert "Traceback" not in output
    assert 1 <= len(output.strip().splitlines()) <= 2, output
    for text in expected:
        assert text in output


def _fill(argv: list[str], tmp_path: Path) -> list[str]:
    return [arg.replace("{tmp}", str(tmp_path)) for arg in argv]


# --------------------------------------------------------------------------- training

# Every run is given a --data_root that does not exist: a mistake the checks miss then ends in
# that (different) error, before anything is written or loaded.
BASE = ["--data_root", "{tmp}/no_such_data", "--output_dir", "{tmp}/out"]
CONFIG = "{tmp}/cfg.yaml"  # written from CONFIG_TEXTS
TRAIN_CASES = {
    # The three.
    "eval off with the best-model reload asked for": (
        [*BASE, "--eval_strategy", "no", "--load_best_model_at_end", "true"],
        ("--load_best_model_at_end true from the command line", "--eval_strategy no"),
    ),
    "save_steps against the config file's eval_steps": (
        [DEMO_CONFIG, *BASE, "--save_steps", "10"],
        ("--save_steps 10 from the command line", "--eval_steps 400 from configs/demo.yaml"),
    ),
    "image size not a multiple of 32": ([*BASE, "--image_size", "100"], ("--image_size",)),
    # Flags and config keys that do not exist.
    "unknown flag": ([*BASE, "--bogus", "1"], ("--bogus",)),
    "misspelt flag": ([*BASE, "--learnig_rate", "0.1"], ("did you mean --learning_rate?",)),
    "unknown config key": ([CONFIG, *BASE], ("learning_rat", "cfg.yaml")),
    "config file not found": (["{tmp}/missing.yaml", *BASE], ("missing.yaml",)),
    "config file after the flags": ([*BASE, DEMO_CONFIG], (DEMO_CONFIG, "first")),
    "unquoted YAML no": ([CONFIG, *BASE], ("eval_strategy", '"no"')),
    # Bad values.
    "bad loss name": ([*BASE, "--loss", "hinge"], ("--loss", "lovasz_ce")),
    "token averaging": (
        [*BASE, "--average_tokens_across_devices", "true"],
        ("--average_tokens_across_devices", "number of processes"),
    ),
    "bad eval strategy": ([*BASE, "--eval_strategy", "sometimes"], ("--eval_strategy", "epoch")),
    "bad scheduler": ([*BASE, "--lr_scheduler_type", "bogus"], ("--lr_scheduler_type",)),
    "not a number": ([*BASE, "--learning_rate", "abc"], ("--learning_rate",)),
    "negative image size": ([*BASE, "--image_size", "-32"], ("--image_size",)),
    "negative patch size": ([*BASE, "--train_crop_size", "-64"], ("--train_crop_size",)),
    "zero batch": (
        [*BASE, "--per_device_train_batch_size", "0"],
        ("--per_device_train_batch_size",),
    ),
    "zero accumulation": (
        [*BASE, "--gradient_accumulation_steps", "0"],
        ("--gradient_accumulation_steps",),
    ),
    "negative workers": ([*BASE, "--dataloader_num_workers", "-1"], ("--dataloader_num_workers",)),
    "zero samples": ([*BASE, "--max_train_samples", "0"], ("--max_train_samples",)),
    "negative synthetic set": ([*BASE, "--synthetic_samples", "-1"], ("--synthetic_samples",)),
    "negative warm-up (TrainingArguments' own check)": (
        [*BASE, "--warmup_steps", "-1"],
        ("warmup_steps",),
    ),
    "bad value from the config file": ([CONFIG, *BASE], ("--image_size 100 from", "cfg.yaml")),
    "bad choice from the config file": ([CONFIG, *BASE], ("on_bad_pair", "cfg.yaml", "skip")),
    # Config values get the types and checks their flags get (argparse checks no default).
    "a list where one value goes": (
        [CONFIG, *BASE],
        ("class_weights in", "cfg.yaml is a list", 'class_weights: "1,5"'),
    ),
    "a word where a number goes": ([CONFIG, *BASE], ("learning_rate in", "invalid float")),
    "a mapping where one value goes": ([CONFIG, *BASE], ("num_train_epochs in", "one value")),
    "a number for a tracker": ([CONFIG, *BASE], ("--report_to 5 from", "no such tracker 5")),
    "bad preset": ([*BASE, "--from_scratch_preset", "mit-b9"], ("--from_scratch_preset", "tiny")),
    "bad probability": ([*BASE, "--hflip_probability", "1.5"], ("--hflip_probability", "[0, 1]")),
    "bad class weights": ([*BASE, "--class_weights", "1,nan"], ("--class_weights", "'auto'")),
    # Experiment trackers, checked before the data is read (the Trainer would only fail after).
    "tracker not installed": (
        [*BASE, "--report_to", "tensorboard"],
        ("--report_to tensorboard from the command line", "pip install tensorboard"),
    ),
    "unknown tracker": ([*BASE, "--report_to", "tensorbord"], ("tensorbord", "wandb", "none")),
    # Combinations.
    "eval by steps, save by epoch": (
        [*BASE, "--eval_strategy", "steps"],
        ("--eval_strategy steps from the command line", "--save_strategy epoch by default"),
    ),
    "save_steps not a multiple of eval_steps": (
        [*BASE, "--eval_strategy", "steps", "--save_strategy", "steps"]
        + ["--eval_steps", "30", "--save_steps", "50"],
        ("--save_steps 50 from the command line", "--eval_steps 30 from the command line"),
    ),
    # Paths.
    "no data root": (["--output_dir", "{tmp}/out"], ("pass one of --data_root",)),
    "data root does not exist": (BASE, ("--data_root", "no_such_data")),
    "checkpoint path does not exist": (
        [*BASE, "--model_name_or_path", "./no/such/checkpoint"],
        ("--model_name_or_path",),
    ),
}
CONFIG_TEXTS = {
    "unknown config key": "learning_rat: 0.1\n",
    "unquoted YAML no": "eval_strategy: no\n",
    "bad value from the config file": "image_size: 100\n",
    "bad choice from the config file": "on_bad_pair: ignore\n",
    "a list where one value goes": "class_weights: [1, 5]\n",
    "a word where a number goes": "learning_rate: fast\n",
    "a mapping where one value goes": "num_train_epochs: {epochs: 3}\n",
    "a number for a tracker": "report_to: 5\n",
}


@pytest.mark.parametrize("case", list(TRAIN_CASES), ids=list(TRAIN_CASES))
def test_training_usage_errors(case, tmp_path, monkeypatch, capsys, caplog):
    argv, expected = TRAIN_CASES[case]
    if case in CONFIG_TEXTS:
        (tmp_path / "cfg.yaml").write_text(CONFIG_TEXTS[case])
    monkeypatch.chdir(REPO_ROOT)  # DEMO_CONFIG is relative to it
    code = _call(train_main, _fill(argv, tmp_path))
    _assert_usage_error(code, _output(capsys, caplog), expected)
    assert not (tmp_path / "out").exists(), "stopped only after creating the output folder"


def test_parse_args_raises_instead_of_exiting():
    # argparse would print a usage of ~150 flags and exit; library callers get an exception.
    with pytest.raises(ArgumentsError, match="--loss"):
        parse_args(["--data_root", "d", "--loss", "hinge"])


# --------------------------------------------------------------------------- derived defaults


def test_eval_off_turns_the_best_model_reload_off():
    *_, training_args, notes = resolve_args(["--data_root", "d", "--eval_strategy", "no"])
    assert training_args.load_best_model_at_end is False
    assert notes == [
        "--eval_strategy no from the command line: --load_best_model_at_end is off, as there "
        "is no evaluation to pick the best checkpoint from"
    ]


def test_eval_off_in_the_config_file_turns_the_reload_off(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text('data_root: d\neval_strategy: "no"\n')
    *_, training_args, notes = resolve_args([str(config)])
    assert training_args.load_best_model_at_end is False
    assert len(notes) == 1 and f"from {config}" in notes[0]


@pytest.mark.parametrize("flag", ["--no_load_best_model_at_end", "--eval_strategy=epoch"])
def test_no_default_is_derived_when_the_user_chose(flag):
    *_, notes = resolve_args(["--data_root", "d", flag])
    assert notes == []


def test_the_derived_default_is_logged_once(tmp_path, caplog):
    argv = ["--data_root", str(tmp_path / "none"), "--output_dir", str(tmp_path / "out")]
    with caplog.at_level(logging.INFO, logger="nail_segformer"):
        assert train_main([*argv, "--eval_strategy", "no"]) == 2  # stops at the data root
    notes = [r for r in caplog.records if "--load_best_model_at_end is off" in r.getMessage()]
    assert len(notes) == 1


# --------------------------------------------------------------------------- the other commands

OTHER_CASES = {
    "predict: zero batch": (
        predict_main,
        ["--model", "{tmp}/run", "--input", "x", "--output", "{tmp}/o", "--batch_size", "0"],
        ("--batch_size",),
    ),
    "predict: overlap of 1.5": (
        predict_main,
        ["--model", "{tmp}/run", "--input", "x", "--output", "{tmp}/o", "--overlap", "1.5"],
        ("--overlap",),
    ),
    "predict: threshold of 2": (
        predict_main,
        ["--model", "{tmp}/run", "--input", "x", "--output", "{tmp}/o", "--threshold", "2"],
        ("--threshold",),
    ),
    "predict: negative window": (
        predict_main,
        ["--model", "{tmp}/run", "--input", "x", "--output", "{tmp}/o", "--window", "-1"],
        ("--window",),
    ),
    "predict: negative worst": (
        predict_main,
        ["--model", "{tmp}/run", "--input", "x", "--output", "{tmp}/o", "--worst", "-1"],
        ("--worst",),
    ),
    "predict: bad mode": (
        predict_main,
        ["--model", "{tmp}/run", "--input", "x", "--output", "{tmp}/o", "--mode", "zoom"],
        ("--mode", "slide"),
    ),
    "predict: unknown flag": (
        predict_main,
        ["--model", "{tmp}/run", "--input", "x", "--output", "{tmp}/o", "--bogus"],
        ("--bogus",),
    ),
    "predict: no --output": (predict_main, ["--model", "{tmp}/run", "--input", "x"], ("--output",)),
    "predict: model folder does not exist": (
        predict_main,
        ["--model", "./no/such/run", "--input", "x", "--output", "{tmp}/o"],
        ("--model", "./no/such/run"),
    ),
    "predict: ONNX file does not exist": (
        predict_main,
        ["--model", "nobody/model", "--input", "x", "--output", "{tmp}/o"]
        + ["--onnx", "{tmp}/m.onnx"],
        ("--onnx",),
    ),
    "predict: masks folder does not exist": (
        predict_main,
        ["--model", "nobody/model", "--input", "x", "--output", "{tmp}/o"]
        + ["--masks", "{tmp}/Masks"],
        ("--masks",),
    ),
    "export: opset too old": (
        export_main,
        ["--model", "{tmp}/run", "--output", "{tmp}/m.onnx", "--opset", "11"],
        ("--opset",),
    ),
    "export: negative atol": (
        export_main,
        ["--model", "{tmp}/run", "--output", "{tmp}/m.onnx", "--atol", "-1"],
        ("--atol",),
    ),
    "export: model folder does not exist": (
        export_main,
        ["--model", "./no/such/run", "--output", "{tmp}/m.onnx"],
        ("--model", "./no/such/run"),
    ),
    "export: unknown flag": (
        export_main,
        ["--model", "{tmp}/run", "--output", "{tmp}/m.onnx", "--bogus"],
        ("--bogus",),
    ),
    "export: photo does not exist": (
        export_main,
        ["--model", "nobody/model", "--output", "{tmp}/m.onnx", "--image", "{tmp}/no.png"],
        ("no.png",),
    ),
    "data: root does not exist": (data_main, ["{tmp}/no_such_data"], ("no_such_data",)),
    "data: no root": (data_main, [], ("data_root",)),
    "data: fraction above 1": (
        data_main,
        ["{tmp}", "--validation_fraction", "1.5"],
        ("--validation_fraction",),
    ),
    "data: fractions leave nothing to train on": (
        data_main,
        ["{tmp}", "--validation_fraction", "0.6", "--test_fraction", "0.5"],
        ("--test_fraction",),
    ),
    "data: seed not a number": (data_main, ["{tmp}", "--seed", "x"], ("--seed",)),
    "synthetic: negative count": (synthetic_main, ["{tmp}/s", "--n", "-1"], ("--n",)),
    "synthetic: JPEG quality 0": (synthetic_main, ["{tmp}/s", "--jpeg_quality", "0"], ("--jpeg",)),
    "synthetic: unknown flag": (synthetic_main, ["{tmp}/s", "--bogus"], ("--bogus",)),
}


@pytest.mark.parametrize("case", list(OTHER_CASES), ids=list(OTHER_CASES))
def test_other_commands_usage_errors(case, tmp_path, capsys, caplog):
    main, argv, expected = OTHER_CASES[case]
    code = _call(main, _fill(argv, tmp_path))
    _assert_usage_error(code, _output(capsys, caplog), expected)
    assert not (tmp_path / "o").exists() and not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- end to end

END_TO_END = {
    "train": (
        ["run_finetune.py", DEMO_CONFIG, "--data_root", "{tmp}/d", "--output_dir", "{tmp}/o"]
        + ["--save_steps", "10"],
        "--eval_steps 400 from configs/demo.yaml",
    ),
    "predict": (
        ["-m", "nail_segformer.predict", "--model", "{tmp}", "--input", "{tmp}"]
        + ["--output", "{tmp}/o", "--batch_size", "0"],
        "--batch_size",
    ),
    "export": (
        ["-m", "nail_segformer.export", "--model", "{tmp}", "--output", "{tmp}/m.onnx"]
        + ["--opset", "11"],
        "--opset",
    ),
    "data": (["-m", "nail_segformer.data", "{tmp}", "--test_fraction", "-1"], "--test_fraction"),
    "synthetic": (["-m", "nail_segformer.synthetic", "{tmp}/s", "--n", "0"], "--n"),
}


@pytest.mark.parametrize("command", list(END_TO_END))
def test_usage_error_end_to_end(command, tmp_path):
    argv, expected = END_TO_END[command]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, *_fill(argv, tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    _assert_usage_error(proc.returncode, proc.stdout + proc.stderr, (expected,))
    assert not (tmp_path / "o").exists()
