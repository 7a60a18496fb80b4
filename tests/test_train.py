"""Arguments, output-folder rules, and an end-to-end tiny training run."""

import inspect
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from support.runs import tiny_run_argv

from nail_segformer import train
from nail_segformer.metrics import SIZE_BUCKETS
from nail_segformer.model import build_model
from nail_segformer.train import run_dir
from nail_segformer.train.trainer import load_checkpoint_weights

REPO_ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- arguments


def test_yaml_config_with_flag_override(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text(
        "data_root: /data/nails\nlearning_rate: 0.001\nloss: dice_ce\nnum_train_epochs: 3\n"
    )
    data_args, model_args, training_args = train.parse_args([str(config), "--learning_rate", "0.5"])
    assert data_args.data_root == "/data/nails"
    assert model_args.loss == "dice_ce"
    assert training_args.num_train_epochs == 3
    assert training_args.learning_rate == 0.5  # the flag wins over the file


def test_json_config(tmp_path):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"data_root": "d", "from_scratch_preset": "mit-b0"}))
    data_args, model_args, _ = train.parse_args([str(config)])
    assert model_args.from_scratch_preset == "mit-b0"


def test_unknown_config_key_is_rejected(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("data_root: d\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match="learning_rat"):
        train.parse_args([str(config)])


def test_defaults_suit_segformer_fine_tuning():
    _, model_args, training_args = train.parse_args(["--data_root", "d"])
    assert model_args.model_name_or_path == "nvidia/segformer-b4-finetuned-ade-512-512"
    assert training_args.learning_rate == 6e-5
    assert training_args.remove_unused_columns is False
    assert training_args.batch_eval_metrics is True
    assert training_args.load_best_model_at_end is True
    assert training_args.metric_for_best_model == "iou_nail"
    assert training_args.average_tokens_across_devices is False
    assert training_args.eval_strategy == "epoch" and training_args.save_strategy == "epoch"


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    out = capsys.readouterr().out
    for flag in (
        "--data_root",
        "--from_scratch_preset",
        "--loss",
        "--class_weights",
        "--on_bad_pair",
        "--learning_rate",
        "--push_to_hub",
        "--overwrite_output_dir",
    ):
        assert flag in out


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"data_root": None}, "pass one of --data_root"),
        ({"synthetic_samples": -1}, "synthetic_samples"),
        ({"image_size": 100}, "multiple of 32"),
        ({"crop_scale_min": 0.0}, "crop_scale_min"),
        ({"train_crop_size": 100}, "train_crop_size"),
        ({"nail_crop_probability": -0.1}, "nail_crop_probability"),
        ({"hflip_probability": 1.5}, "hflip_probability"),
        ({"rotate_limit": 200.0}, "rotate_limit"),
        ({"max_train_samples": 0}, "max_train_samples"),
        ({"manifest": "/nonexistent.csv"}, "manifest"),
    ],
)
def test_data_argument_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train.DataArguments(**{"data_root": "d", **kwargs})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"class_weights": "1,2,3"}, "class_weights"),
        ({"class_weights": "heavy"}, "class_weights"),
        ({"class_weights": "1,-2"}, "class_weights"),
        ({"class_weights": "1,nan"}, "class_weights"),
        ({"dice_weight": -1.0}, "dice_weight"),
    ],
)
def test_model_argument_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train.ModelArguments(**kwargs)


@pytest.mark.parametrize(
    "flags,match",
    [
        (["--head_lr_multiplier", "0"], "--head_lr_multiplier"),
        (["--hub_strategy", "checkpoint"], "--hub_strategy"),
        (["--hub_strategy", "all_checkpoints"], "--hub_strategy"),
    ],
)
def test_training_argument_validation(flags, match):
    with pytest.raises(ValueError, match=match):
        train.parse_args(["--data_root", "d", "--use_cpu", "true", *flags])


# --------------------------------------------------------------------------- optimizer recipe


def _recipe(*flags, config=None):
    from nail_segformer.train.build import optimizer_recipe

    argv = [str(config)] if config else ["--data_root", "d"]
    _, model_args, training_args = train.parse_args([*argv, *flags])
    return optimizer_recipe(model_args, training_args)


def test_fine_tuning_defaults_to_segformer_recipe():
    recipe = _recipe()
    assert (recipe.head_lr_multiplier, recipe.no_decay) == (10.0, "norm")
    _, _, training_args = train.parse_args(["--data_root", "d"])
    assert (training_args.learning_rate, training_args.weight_decay) == (6e-5, 0.01)
    assert training_args.lr_scheduler_type == "linear"  # = polynomial decay of power 1, to 0


def test_from_scratch_presets_keep_the_trainer_groups():
    recipe = _recipe("--from_scratch_preset", "mit-b0")
    assert (recipe.head_lr_multiplier, recipe.no_decay) == (1.0, "norm_and_bias")
    demo = _recipe(config=REPO_ROOT / "configs" / "demo.yaml")
    assert (demo.head_lr_multiplier, demo.no_decay) == (1.0, "norm_and_bias")


def test_gpu_config_fine_tunes_b4_with_the_paper_recipe_and_batch():
    from nail_segformer.train.build import optimizer_recipe
    from nail_segformer.train.optim import OptimizerRecipe
    from nail_segformer.train.pipeline import effective_batch_size

    config = REPO_ROOT / "configs" / "b4-gpu.yaml"
    data_args, model_args, training_args = train.parse_args([str(config), "--use_cpu", "true"])
    assert model_args.model_name_or_path == "nvidia/segformer-b4-finetuned-ade-512-512"
    assert model_args.from_scratch_preset is None and data_args.image_size == 512
    assert training_args.bf16 is True
    assert effective_batch_size(training_args) == 16  # the paper's 2 per GPU x 8 GPUs
    assert optimizer_recipe(model_args, training_args) == OptimizerRecipe(10.0, "norm")
    assert training_args.dataloader_num_workers == 8


def test_recipe_flags_override_the_defaults():
    recipe = _recipe("--head_lr_multiplier", "3", "--no_weight_decay_for", "none")
    assert (recipe.head_lr_multiplier, recipe.no_decay) == (3.0, "none")
    scratch = _recipe("--from_scratch_preset", "tiny", "--head_lr_multiplier", "10")
    assert scratch.head_lr_multiplier == 10.0


def _trainer_with(tmp_path, recipe, *flags):
    from nail_segformer.train.trainer import NailTrainer

    no_eval = [
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--load_best_model_at_end",
        "false",
    ]
    _, _, args = train.parse_args(
        ["--data_root", "d", "--output_dir", str(tmp_path), "--use_cpu", "true", *no_eval, *flags]
    )
    return NailTrainer(model=build_model("tiny", seed=0), args=args, optimizer_recipe=recipe)


def _groups_by_name(trainer):
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    return [
        ({names[id(p)] for p in group["params"]}, group["lr"], group["weight_decay"])
        for group in trainer.optimizer.param_groups
    ]


def _norm_parameters(model):
    norms = (torch.nn.LayerNorm, torch.nn.BatchNorm2d)
    return {
        f"{module_name}.{name}"
        for module_name, module in model.named_modules()
        if isinstance(module, norms)
        for name, _ in module.named_parameters(recurse=False)
    }


def test_segformer_recipe_groups_head_lr_and_weight_decay(tmp_path):
    from nail_segformer.train.optim import OptimizerRecipe

    trainer = _trainer_with(tmp_path, OptimizerRecipe(10.0, "norm"))
    trainer.create_optimizer()
    model = trainer.model
    norms = _norm_parameters(model)
    assert any(n.startswith("decode_head.batch_norm") for n in norms) and len(norms) > 20
    seen = set()
    for names, lr, weight_decay in _groups_by_name(trainer):
        for name in names:
            head = name.startswith("decode_head.")
            assert lr == pytest.approx(6e-4 if head else 6e-5), name
            assert weight_decay == (0.0 if name in norms else 0.01), name
        seen |= names
    assert seen == {n for n, p in model.named_parameters() if p.requires_grad}
    # The recipe decays the biases of linear and convolution layers (the Trainer's rule would not).
    biases = [n for n, _ in model.named_parameters() if n.endswith(".bias") and n not in norms]
    decayed = {n for names, _, wd in _groups_by_name(trainer) if wd > 0 for n in names}
    assert biases and set(biases) <= decayed
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(6e-5)  # what the log shows


def test_trainer_rule_matches_the_plain_trainer(tmp_path):
    from transformers import Trainer

    from nail_segformer.train.optim import OptimizerRecipe

    trainer = _trainer_with(tmp_path, OptimizerRecipe(1.0, "norm_and_bias"))
    trainer.create_optimizer()
    plain = Trainer(model=trainer.model, args=trainer.args)
    plain.create_optimizer()
    # The same groups, in the same order, so checkpoints of from-scratch runs made before the
    # recipe existed (and the demo's training) stay exactly as they were.
    ours = [(g["params"], g["lr"], g["weight_decay"]) for g in trainer.optimizer.param_groups]
    theirs = [(g["params"], g["lr"], g["weight_decay"]) for g in plain.optimizer.param_groups]
    assert len(ours) == len(theirs) == 2
    for (params, lr, wd), (expected, expected_lr, expected_wd) in zip(ours, theirs, strict=True):
        assert [id(p) for p in params] == [id(p) for p in expected]
        assert (lr, wd) == (expected_lr, expected_wd)


def test_schedule_decays_both_rates_linearly_to_zero(tmp_path):
    from transformers import get_scheduler

    from nail_segformer.train.optim import OptimizerRecipe

    steps = 20
    trainer = _trainer_with(tmp_path, OptimizerRecipe(10.0, "norm"))
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    reference_param = torch.nn.Parameter(torch.zeros(1))
    reference_optimizer = torch.optim.AdamW([reference_param], lr=6e-5)
    polynomial = get_scheduler(
        "polynomial",
        reference_optimizer,
        num_warmup_steps=trainer.args.get_warmup_steps(steps),
        num_training_steps=steps,
        scheduler_specific_kwargs={"power": 1.0, "lr_end": 0.0},
    )
    for _ in range(steps):
        encoder, *_, head = [g["lr"] for g in trainer.optimizer.param_groups]
        assert head == pytest.approx(10 * encoder)
        assert encoder == pytest.approx(reference_optimizer.param_groups[0]["lr"], abs=1e-12)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        reference_optimizer.step()
        polynomial.step()
    assert trainer.optimizer.param_groups[-1]["lr"] == 0.0


# --------------------------------------------------------------------------- output folder


def _args(output_dir, **kwargs):
    _, _, training_args = train.parse_args(
        ["--data_root", "d", "--output_dir", str(output_dir), "--use_cpu", "true"]
    )
    for key, value in kwargs.items():
        setattr(training_args, key, value)
    return training_args


def _fake_checkpoint(path, complete=True):
    model = build_model("tiny", seed=0)
    model.save_pretrained(path)
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    return path


def test_new_output_dir_is_created(tmp_path):
    resume_from, lock = run_dir.prepare_output_dir(_args(tmp_path / "run"))
    assert resume_from is None and (tmp_path / "run").is_dir()
    lock.release()


def test_foreign_nonempty_output_dir_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(run_dir.RunDirError, match="--overwrite_output_dir"):
        run_dir.prepare_output_dir(_args(tmp_path / "run"))
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_overwrite_moves_old_content_aside(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    resume_from, lock = run_dir.prepare_output_dir(
        _args(tmp_path / "run", overwrite_output_dir=True)
    )
    assert resume_from is None
    backups = list(tmp_path.glob("run.bak-*"))
    assert len(backups) == 1 and (backups[0] / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(
        [run_dir.LOCK_NAME, run_dir.PID_NAME]
    )
    lock.release()


def test_resumes_from_newest_complete_checkpoint(tmp_path):
    run = tmp_path / "run"
    _fake_checkpoint(run / "checkpoint-2")
    _fake_checkpoint(run / "checkpoint-10")
    _fake_checkpoint(run / "checkpoint-12", complete=False)  # crashed mid-save
    resume_from, lock = run_dir.prepare_output_dir(_args(run))
    assert resume_from == str(run / "checkpoint-10")
    lock.release()


def test_second_run_on_a_locked_output_dir_is_refused(tmp_path):
    _, lock = run_dir.prepare_output_dir(_args(tmp_path / "run"))
    try:
        with pytest.raises(run_dir.RunDirError, match="in use by another run"):
            run_dir.prepare_output_dir(_args(tmp_path / "run"))
    finally:
        lock.release()
    _, again = run_dir.prepare_output_dir(_args(tmp_path / "run"))  # free once released
    again.release()


def test_truncated_weights_make_a_checkpoint_incomplete(tmp_path):
    path = _fake_checkpoint(tmp_path / "checkpoint-3")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert not run_dir.is_complete_checkpoint(path)


def test_explicit_resume_must_be_complete(tmp_path):
    path = _fake_checkpoint(tmp_path / "checkpoint-3", complete=False)
    with pytest.raises(run_dir.RunDirError, match="not a complete checkpoint"):
        run_dir.prepare_output_dir(_args(tmp_path / "run", resume_from_checkpoint=str(path)))


# --------------------------------------------------------------------------- checkpoint loading


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_checkpoint_loading_restores_every_tensor(tmp_path):
    """Guards against transformers #43701: legacy key names restored only 8 of 124 tensors."""
    saved = build_model("tiny", seed=1)
    with torch.no_grad():  # fresh biases and norms are 0/1 in every model: make each tensor unique
        for tensor in saved.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.rand_like(tensor))
    saved.save_pretrained(tmp_path / "ckpt")
    target = build_model("tiny", seed=2)
    before = _state(target)
    load_checkpoint_weights(target, tmp_path / "ckpt")
    after, expected = _state(target), _state(saved)
    assert after.keys() == expected.keys()
    changed = [k for k in after if not torch.equal(before[k], expected[k])]
    floating = [k for k, v in after.items() if v.is_floating_point()]
    assert changed == floating and len(floating) > 100
    for key in after:
        assert torch.equal(after[key], expected[key]), key


def test_upstream_trainer_still_reloads_checkpoints_loosely(tmp_path):
    """When this fails, transformers reloads SegFormer checkpoints fully (#43701 fixed): check
    the fix, then drop NailTrainer's _load_from_checkpoint and _load_best_model overrides."""
    from transformers import Trainer, TrainingArguments

    saved = build_model("tiny", seed=1)
    with torch.no_grad():
        for tensor in saved.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.rand_like(tensor))
    saved.save_pretrained(tmp_path / "ckpt")
    target = build_model("tiny", seed=2)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none")
    Trainer(model=target, args=args)._load_from_checkpoint(str(tmp_path / "ckpt"))
    after, expected = _state(target), _state(saved)
    restored = [k for k in after if torch.equal(after[k], expected[k])]
    assert len(restored) < len(after) // 2, f"upstream restored {len(restored)}/{len(after)}"


def _damage_checkpoint(folder, damage):
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    if damage == "missing":
        del tensors["decode_head.classifier.bias"]
    elif damage == "unexpected":
        tensors["decode_head.extra.weight"] = torch.zeros(3)
    else:  # mismatched: a tensor of another shape under the right name
        tensors["decode_head.classifier.bias"] = torch.zeros(5)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize("damage", ["missing", "unexpected", "mismatched"])
def test_checkpoint_that_does_not_match_the_model_is_refused(tmp_path, damage):
    build_model("tiny", seed=1).save_pretrained(tmp_path / "ckpt")
    _damage_checkpoint(tmp_path / "ckpt", damage)
    target = build_model("tiny", seed=2)
    with pytest.raises(RuntimeError, match="classifier|extra"):
        load_checkpoint_weights(target, tmp_path / "ckpt")


# --------------------------------------------------------------------------- end to end


def test_end_to_end_run_writes_a_usable_model(tiny_run_dir):
    for name in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "README.md",
        "split_manifest.csv",
        "all_results.json",
        "run_args.json",
        "trainer_state.json",
    ):
        assert (tiny_run_dir / name).is_file(), name
    config = json.loads((tiny_run_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "background", "1": "nail"}
    processor = json.loads((tiny_run_dir / "preprocessor_config.json").read_text())
    assert processor["do_reduce_labels"] is False


def test_end_to_end_metrics_are_complete_and_in_range(tiny_run_dir):
    results = json.loads((tiny_run_dir / "all_results.json").read_text())
    for split in ("validation", "test"):
        for key in (
            "mean_iou",
            "iou_background",
            "iou_nail",
            "nail_dice",
            "nail_precision",
            "nail_recall",
            "overall_accuracy",
            "boundary_iou_nail",
            "nail_detection_precision",
            "nail_detection_recall",
            "nail_detection_f1",
            "nail_detection_recall_small",
            "nail_detection_recall_medium",
            "nail_detection_recall_large",
        ):
            value = results[f"{split}_{key}"]
            assert 0.0 <= value <= 1.0 and not math.isnan(value), (split, key, value)
        assert results[f"{split}_nail_count_error"] >= 0.0
        assert sum(results[f"{split}_true_nails_{size}"] for size in SIZE_BUCKETS) > 0


def test_training_scores_through_the_bundled_evaluate_module(
    tiny_run_dir, synthetic_root, tmp_path
):
    import evaluate

    from nail_segformer.metrics import MEAN_IOU_MODULE, StreamingSegmentationMetrics
    from nail_segformer.train import build

    data_args, model_args, training_args = train.parse_args(
        ["--data_root", str(synthetic_root), "--model_name_or_path", str(tiny_run_dir)]
        + ["--output_dir", str(tmp_path / "eval"), "--use_cpu", "true"]
    )
    dataset_dict, _ = build.load_data(data_args, str(tmp_path), resuming=False, write=False)
    model, processor = build.build_model_and_processor(model_args, data_args, training_args.seed)
    trainer, _ = build.build_trainer(
        model, processor, dataset_dict, data_args, model_args, training_args
    )
    hook = trainer.compute_metrics
    assert isinstance(hook, StreamingSegmentationMetrics) and training_args.batch_eval_metrics
    assert isinstance(hook.metric, evaluate.EvaluationModule)
    assert Path(inspect.getsourcefile(type(hook.metric))).read_text() == MEAN_IOU_MODULE.read_text()


def test_end_to_end_loss_goes_down(tiny_run_dir):
    history = json.loads((tiny_run_dir / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) >= 6
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_end_to_end_model_card(tiny_run_dir):
    card = (tiny_run_dir / "README.md").read_text()
    assert card.startswith("---\n") and "pipeline_tag: image-segmentation" in card
    assert "iou_nail" in card and "## Usage" in card and "## Licence" in card
    assert "boundary IoU (nail)" in card and "nail detection F1" in card and "Cheng et al." in card


def test_run_output_loads_in_pipeline_and_auto_model(tiny_run_dir, synthetic_root):
    from PIL import Image
    from transformers import AutoModelForSemanticSegmentation, pipeline

    model = AutoModelForSemanticSegmentation.from_pretrained(tiny_run_dir)
    assert model.config.num_labels == 2
    segmenter = pipeline("image-segmentation", model=str(tiny_run_dir))
    photo = next((synthetic_root / "Images" / "1").iterdir())
    results = segmenter(Image.open(photo))
    assert {r["label"] for r in results} <= {"background", "nail"}
    assert all(r["mask"].size == Image.open(photo).size for r in results)


def test_final_model_is_the_best_checkpoint(tiny_run_dir):
    from transformers import AutoModelForSemanticSegmentation

    state = json.loads((tiny_run_dir / "trainer_state.json").read_text())
    best = state["best_model_checkpoint"]
    final = _state(AutoModelForSemanticSegmentation.from_pretrained(tiny_run_dir))
    expected = _state(AutoModelForSemanticSegmentation.from_pretrained(best))
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def test_rerun_resumes_and_keeps_the_split(tiny_run_dir, synthetic_root, tmp_path):
    import shutil

    run = tmp_path / "again"
    shutil.copytree(tiny_run_dir, run)
    manifest = (run / "split_manifest.csv").read_text()
    metrics = train.main(tiny_run_argv(synthetic_root, run, "--split_seed", "999"))
    assert (run / "split_manifest.csv").read_text() == manifest  # resumed runs reuse the split
    assert set(metrics) == {"validation", "test"}


def test_patch_training_trains_on_patches_and_evaluates_whole_images(
    synthetic_root, tmp_path, monkeypatch
):
    built = {}
    from nail_segformer.train import pipeline

    real_build_trainer = pipeline.build_trainer

    def spy(*args, **kwargs):
        trainer, datasets = real_build_trainer(*args, **kwargs)
        built["datasets"] = datasets
        return trainer, datasets

    monkeypatch.setattr(pipeline, "build_trainer", spy)
    metrics = train.main(
        tiny_run_argv(synthetic_root, tmp_path / "patches", "--train_crop_size", "32")
    )
    datasets = built["datasets"]
    assert datasets["train"][0]["pixel_values"].shape == (3, 32, 32)
    assert datasets["train"][0]["labels"].shape == (32, 32)
    assert datasets["validation"][0]["pixel_values"].shape == (3, 64, 64)
    assert 0.0 <= metrics["validation"]["iou_nail"] <= 1.0
    card = (tmp_path / "patches" / "README.md").read_text()
    assert "train_crop_size" in card and "32" in card


def test_patch_larger_than_the_processor_size_is_refused(synthetic_root, tmp_path, capsys):
    from nail_segformer.train.cli import main as cli_main

    argv = tiny_run_argv(synthetic_root, tmp_path / "big", "--train_crop_size", "96")
    assert cli_main(argv) == 2  # a usage error, not a traceback
    assert "--train_crop_size 96 must not exceed the input size 64x64" in capsys.readouterr().err


def test_each_split_is_evaluated_on_its_own_photos_with_persistent_workers(tmp_path):
    # transformers keeps one evaluation loader when workers persist and hands it back for any
    # Dataset passed in, which scored the test split on the validation photos.
    from nail_segformer.train.optim import OptimizerRecipe
    from nail_segformer.train.pipeline import evaluate_splits

    def photos(n):
        return [{"pixel_values": torch.zeros(3, 32, 32), "labels": torch.zeros(32, 32).long()}] * n

    datasets = {"train": photos(2), "validation": photos(3), "test": photos(5)}
    trainer = _trainer_with(tmp_path, OptimizerRecipe(), "--dataloader_num_workers", "1")
    assert trainer.args.dataloader_persistent_workers
    trainer.eval_dataset = datasets["validation"]
    trainer.evaluate()  # as during training: the validation loader is kept
    seen = []
    loader_for = trainer.get_eval_dataloader

    def spy(eval_dataset=None):
        loader = loader_for(eval_dataset)
        seen.append(len(loader.dataset))
        return loader

    trainer.get_eval_dataloader = spy
    metrics, _ = evaluate_splits(trainer, datasets)
    assert seen == [3, 5] and set(metrics) == {"validation", "test"}
    assert (tmp_path / "test_results.json").is_file()


def test_the_trainer_never_averages_tokens_whatever_its_arguments(tmp_path):
    # TrainingArguments turns token averaging on by default; under DDP it would multiply our
    # per-batch mean loss by the number of processes.
    from transformers import TrainingArguments

    from nail_segformer.train.trainer import NailTrainer

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert args.average_tokens_across_devices is True
    trainer = NailTrainer(model=build_model("tiny", seed=0), args=args)
    assert trainer.args.average_tokens_across_devices is False
    assert args.average_tokens_across_devices is True  # the caller's arguments are untouched


def test_auto_class_weights_count_the_cached_label_maps_without_decoding_a_mask(
    synthetic_root, tmp_path, monkeypatch
):
    from nail_segformer import data
    from nail_segformer.data.cache import build_resized_cache
    from nail_segformer.train import build

    files = data.load_splits(synthetic_root)[0]["train"]
    from_files = build._auto_class_weights(files)
    cached, problems = build_resized_cache(files, 512, cache_dir=tmp_path)
    assert problems == []

    def no_decoding(*args, **kwargs):
        raise AssertionError("a mask file was decoded again")

    monkeypatch.setattr(data, "load_labels", no_decoding)
    from_cache = build._auto_class_weights(cached)
    # The cache holds the masks at the working size: the shares move a little, not the weights.
    assert from_cache == pytest.approx(from_files, rel=0.1)
    assert from_cache[1] > 5 * from_cache[0]  # nails are the rare class


def test_mask_suffix_reaches_the_data_a_run_loads(synthetic_root, tmp_path):
    from nail_segformer.train.build import load_data

    root = tmp_path / "nails"
    shutil.copytree(synthetic_root, root)
    for mask in (root / "Masks").rglob("*.png"):
        mask.rename(mask.with_name(f"{mask.stem}seg{mask.suffix}"))  # no separator: not found
    args = train.DataArguments(data_root=str(root), mask_suffix="seg")
    (tmp_path / "out").mkdir()
    dataset_dict, _ = load_data(args, str(tmp_path / "out"), resuming=False)
    assert sum(len(split) for split in dataset_dict.values()) == 16
