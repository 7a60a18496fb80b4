"""The run's settings: :class:`DataArguments`, :class:`ModelArguments`, :class:`NailTrainingArguments`.

Every knob of ``python run_finetune.py`` is a field of one of these dataclasses (the third is
``transformers.TrainingArguments`` with defaults for this job). :func:`parse_args` reads them
from the command line, optionally on top of one YAML/JSON file.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from nail_segformer.data import ON_BAD_PAIR_CHOICES, parse_nail_values
from nail_segformer.labels import ID2LABEL
from nail_segformer.losses import LOSS_NAMES
from nail_segformer.model import DEFAULT_CHECKPOINT, MODEL_PRESETS, check_model_reference
from nail_segformer.train.trainer import NO_DECAY_RULES

__all__ = [
    "ArgumentsError",
    "DataArguments",
    "ModelArguments",
    "NailTrainingArguments",
    "parse_args",
    "resolve_args",
]


# Hub strategies that push checkpoint folders (optimizer, RNG state, training_args.bin).
_UNPUBLISHABLE_HUB_STRATEGIES = ("checkpoint", "all_checkpoints")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@dataclass
class DataArguments:
    """Where the photos are and how they are split and augmented."""

    data_root: str | None = field(
        default=None,
        metadata={
            "help": "Folder with Images/<category>/ + Masks/<category>/ (or train/ valid/ test/)."
        },
    )
    synthetic_samples: int = field(
        default=0,
        metadata={
            "help": "If > 0 and --data_root is missing or empty, first write a synthetic nail "
            "set of this many photos there (the demo uses this)."
        },
    )
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic set."})
    manifest: str | None = field(
        default=None,
        metadata={"help": "A split_manifest.csv from an earlier run: reuse its exact split."},
    )
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Share of each category held out for validation."}
    )
    test_fraction: float = field(
        default=0.1, metadata={"help": "Share of each category held out for the final test."}
    )
    split_seed: int = field(
        default=42, metadata={"help": "Seed of the train/validation/test split."}
    )
    on_bad_pair: str = field(
        default="error",
        metadata={
            "help": "What to do with unusable files: 'error' stops listing every problem, "
            "'skip' trains without them and lists them in bad_pairs.json.",
            "choices": ON_BAD_PAIR_CHOICES,
        },
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Square input size (multiple of 32); default: the checkpoint's processor size."
        },
    )
    crop_scale_min: float = field(
        default=0.3, metadata={"help": "Smallest random crop, as a fraction of the photo's area."}
    )
    train_crop_size: int | None = field(
        default=None,
        metadata={
            "help": "Train on square patches of this side (multiple of 32, at most --image_size) "
            "cut from the augmented --image_size input, instead of whole images: more steps "
            "for the same compute. Evaluation always sees whole images."
        },
    )
    nail_crop_probability: float = field(
        default=0.7,
        metadata={"help": "With --train_crop_size: share of patches drawn around a nail."},
    )
    hflip_probability: float = field(default=0.5, metadata={"help": "Horizontal flip probability."})
    rotate_limit: float = field(
        default=15.0, metadata={"help": "Largest random rotation (degrees)."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training pairs (for quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N validation/test pairs."}
    )
    nail_values: str | None = field(
        default=None,
        metadata={
            "help": "Mask values that mean nail, comma-separated (e.g. '2' for class-index "
            "masks, '#ff0000' for a colour): exactly those are nail, 255 is ignored unless "
            "listed, the rest is background. Default: each mask is read by the convention its "
            "values show (README: Your data)."
        },
    )
    resize_cache: bool = field(
        default=True,
        metadata={
            "help": "Decode each training photo once, shrunk to the working size, into an Arrow "
            "cache that later runs and every process reuse; false decodes the files every epoch."
        },
    )
    resize_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of the resize cache; default: $HF_DATASETS_CACHE/nail_segformer."
        },
    )

    def __post_init__(self):
        if self.data_root is None:
            raise ValueError("--data_root is required: the folder holding Images/ and Masks/")
        if self.synthetic_samples < 0:
            raise ValueError(f"--synthetic_samples must be >= 0, got {self.synthetic_samples}")
        if self.on_bad_pair not in ON_BAD_PAIR_CHOICES:
            raise ValueError(
                f"--on_bad_pair must be one of {ON_BAD_PAIR_CHOICES}, got {self.on_bad_pair!r}"
            )
        if self.image_size is not None and (self.image_size < 32 or self.image_size % 32):
            raise ValueError(
                f"--image_size must be a multiple of 32, at least 32; got {self.image_size}"
            )
        if not 0.0 < self.crop_scale_min <= 1.0:
            raise ValueError(f"--crop_scale_min must be in (0, 1], got {self.crop_scale_min}")
        if self.train_crop_size is not None:
            if self.train_crop_size < 32 or self.train_crop_size % 32:
                raise ValueError(
                    "--train_crop_size must be a multiple of 32, at least 32; got "
                    f"{self.train_crop_size}"
                )
            if self.image_size is not None and self.train_crop_size > self.image_size:
                raise ValueError(
                    f"--train_crop_size ({self.train_crop_size}) must not exceed --image_size "
                    f"({self.image_size})"
                )
        if not 0.0 <= self.nail_crop_probability <= 1.0:
            raise ValueError(
                f"--nail_crop_probability must be in [0, 1], got {self.nail_crop_probability}"
            )
        if not 0.0 <= self.hflip_probability <= 1.0:
            raise ValueError(f"--hflip_probability must be in [0, 1], got {self.hflip_probability}")
        if not 0.0 <= self.rotate_limit <= 180.0:
            raise ValueError(f"--rotate_limit must be in [0, 180], got {self.rotate_limit}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        if self.manifest is not None and not Path(self.manifest).is_file():
            raise ValueError(f"--manifest {self.manifest} does not exist")
        parse_nail_values(self.nail_values)  # raises ValueError naming --nail_values


@dataclass
class ModelArguments:
    """Which network to start from and which loss to train it with."""

    model_name_or_path: str = field(
        default=DEFAULT_CHECKPOINT,
        metadata={"help": "SegFormer checkpoint (Hub id or local folder) to fine-tune."},
    )
    from_scratch_preset: str | None = field(
        default=None,
        metadata={
            "help": "Train from random weights at this size instead of fine-tuning "
            f"({', '.join(sorted(MODEL_PRESETS))}).",
        },
    )
    model_revision: str | None = field(
        default=None, metadata={"help": "Branch, tag or commit of a Hub checkpoint."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where Hub downloads are cached."}
    )
    loss: str = field(
        default="ce",
        metadata={"help": "Loss on upsampled logits, ignoring 255.", "choices": LOSS_NAMES},
    )
    class_weights: str = field(
        default="none",
        metadata={
            "help": "'none', 'auto' (median-frequency weights from the training masks), or one "
            "weight per class, comma-separated (e.g. '1,5')."
        },
    )
    dice_weight: float = field(
        default=1.0, metadata={"help": "Weight of the Dice/Lovasz term in dice_ce and lovasz_ce."}
    )

    def __post_init__(self):
        if self.from_scratch_preset is None:
            check_model_reference(
                self.model_name_or_path,
                "--model_name_or_path",
                "check the path, or train from scratch with --from_scratch_preset",
            )
        if self.from_scratch_preset is not None and self.from_scratch_preset not in MODEL_PRESETS:
            raise ValueError(
                f"--from_scratch_preset must be one of {sorted(MODEL_PRESETS)}, got {self.from_scratch_preset!r}"
            )
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"--loss must be one of {LOSS_NAMES}, got {self.loss!r}")
        if self.class_weights not in ("none", "auto"):
            try:
                weights = [float(w) for w in self.class_weights.split(",")]
            except ValueError:
                weights = []
            if len(weights) != len(ID2LABEL) or any(w < 0 for w in weights):
                raise ValueError(
                    f"--class_weights must be 'none', 'auto' or {len(ID2LABEL)} non-negative numbers "
                    f"separated by commas, got {self.class_weights!r}"
                )
        if self.dice_weight < 0:
            raise ValueError(f"--dice_weight must be >= 0, got {self.dice_weight}")


@dataclass
class NailTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with defaults that suit fine-tuning SegFormer on a small binary set.

    The defaults, in one place: SegFormer's fine-tuning recipe (paper section 4.1, MMSegmentation's
    segformer configs): AdamW at 6e-5, weight decay 0.01 except on normalisation layers, the
    decode head at 10x the learning rate, 5% linear warm-up then linear decay to 0 (polynomial
    decay of power 1); evaluate and save every epoch and keep the checkpoint with the
    best nail IoU; streaming metrics (``batch_eval_metrics``) so evaluation memory does not grow
    with the validation set; ``remove_unused_columns=False`` because the on-the-fly transform
    needs the file columns.
    """

    output_dir: str | None = field(
        default="outputs/nail-segformer", metadata={"help": "Where checkpoints and the model go."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start afresh in a non-empty output_dir: its old content is moved to a "
            "sibling '<output_dir>.bak-<time>' folder, never deleted."
        },
    )
    learning_rate: float = field(default=6e-5, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup_steps: float = field(
        default=0.05, metadata={"help": "Warm-up steps, or a fraction of all steps if < 1."}
    )
    num_train_epochs: float = field(default=50.0, metadata={"help": "Training epochs."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Batch size per device."})
    per_device_eval_batch_size: int = field(
        default=8, metadata={"help": "Eval batch size per device."}
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints kept (the best one is always kept)."}
    )
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Finish with the best checkpoint's weights."}
    )
    metric_for_best_model: str | None = field(
        default="iou_nail", metadata={"help": "Metric that picks the best checkpoint."}
    )
    greater_is_better: bool | None = field(
        default=True, metadata={"help": "Whether a larger metric_for_best_model is better."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep False: the transform reads the file columns."}
    )
    batch_eval_metrics: bool = field(
        default=True, metadata={"help": "Stream metrics batch by batch (constant memory)."}
    )
    average_tokens_across_devices: bool = field(
        default=False,
        metadata={"help": "Keep False: token averaging would rescale a segmentation loss."},
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={
            "help": "Keep False: every SegFormer parameter takes part in each forward pass, and "
            "True makes DDP search the graph for unused ones at every step."
        },
    )
    dataloader_pin_memory: bool | None = field(
        default=None,
        metadata={"help": "Pin batches in page-locked memory (default: when a GPU is present)."},
    )
    dataloader_num_workers: int = field(
        default=2, metadata={"help": "Data loading worker processes."}
    )
    head_lr_multiplier: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the decode head as a multiple of --learning_rate "
            "(SegFormer's recipe: 10). Default: 10 when fine-tuning a checkpoint, 1 with "
            "--from_scratch_preset."
        },
    )
    no_weight_decay_for: str | None = field(
        default=None,
        metadata={
            "help": "Parameters without weight decay: 'norm' (normalisation layers and position "
            "blocks: SegFormer's recipe), 'norm_and_bias' (also every bias: the Trainer's rule), "
            "'none'. Default: 'norm' when fine-tuning a checkpoint, 'norm_and_bias' with "
            "--from_scratch_preset.",
            "choices": list(NO_DECAY_RULES),
        },
    )
    dataloader_persistent_workers: bool | None = field(
        default=None,
        metadata={
            "help": "Keep the data-loading workers between epochs (default: on when "
            "--dataloader_num_workers > 0). Off, a small data set restarts them every few steps "
            "and the first batch of each epoch waits for them."
        },
    )
    disable_tqdm: bool | None = field(
        default=None,
        metadata={
            "help": "Hide the progress bar (default: when the output is not a terminal; the log "
            "then gets a progress line with steps per second and time left every logging_steps)."
        },
    )

    def __post_init__(self):
        # Defaults that depend on the machine or on other flags, resolved before
        # TrainingArguments checks combinations. (HfArgumentParser ignores default_factory on
        # bool fields, so None stands for "decide here".)
        if self.dataloader_pin_memory is None:
            self.dataloader_pin_memory = _cuda_available()
        if self.dataloader_persistent_workers is None:
            self.dataloader_persistent_workers = self.dataloader_num_workers > 0  # needs workers
        if self.disable_tqdm is None:
            self.disable_tqdm = not sys.stderr.isatty()
        if self.head_lr_multiplier is not None and not self.head_lr_multiplier > 0:
            raise ValueError(f"--head_lr_multiplier must be > 0, got {self.head_lr_multiplier}")
        if self.no_weight_decay_for is not None and self.no_weight_decay_for not in NO_DECAY_RULES:
            raise ValueError(
                f"--no_weight_decay_for must be one of {NO_DECAY_RULES}, got "
                f"{self.no_weight_decay_for!r}"
            )
        if getattr(self.hub_strategy, "value", self.hub_strategy) in _UNPUBLISHABLE_HUB_STRATEGIES:
            raise ValueError(
                f"--hub_strategy {self.hub_strategy} would publish whole checkpoint folders, "
                "whose training_args.bin holds local paths; use 'every_save' (the default) or "
                "'end', and resume from the local output folder"
            )
        super().__post_init__()


# --------------------------------------------------------------------------- parsing

_USAGE = "python run_finetune.py [config.yaml|config.json] [--flag value ...]"
_HELP = "`python run_finetune.py --help` lists every flag"
_CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
# NailTrainingArguments types these as plain `str`, so argparse does not check their choices.
_STRATEGIES = {"eval_strategy": IntervalStrategy, "save_strategy": SaveStrategy}
# TrainingArguments accepts 0 or negative values here and fails only once training has begun.
_AT_LEAST_ONE = (
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
)


class ArgumentsError(ValueError):
    """A bad flag, value, config file or combination of settings; the message says what to do."""


class _Parser(HfArgumentParser):
    """``HfArgumentParser`` raising :class:`ArgumentsError` where argparse would exit.

    argparse prints the usage of all ~150 flags before its one-line message; the message alone
    says what is wrong, and ``--help`` still lists every flag.
    """

    def error(self, message: str):
        raise ArgumentsError(f"{message} ({_HELP})")


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # argparse reads `--save_steps 10` as 10.0
    return str(value)


@dataclass(frozen=True)
class _Origins:
    """Where each setting came from, so that a message can name it: flag, config file, default."""

    given: frozenset[str]  # set by a flag on the command line
    in_config: frozenset[str]  # set by the config file (and possibly overridden by a flag)
    config_path: str | None

    def is_explicit(self, name: str) -> bool:
        return name in self.given or name in self.in_config

    def describe(self, name: str, value: Any) -> str:
        """``--save_steps 10 from the command line`` (or ``from <file>``, or ``by default``)."""
        if name in self.given:
            where = "from the command line"
        elif name in self.in_config:
            where = f"from {self.config_path}"
        else:
            where = "by default"
        return f"--{name} {_format(value)} {where}"


def parse_args(argv: list[str] | None = None):
    """Parse ``[config.yaml|config.json] [--flag value ...]`` into the three dataclasses.

    A config file gives defaults for any field of the three dataclasses; command-line flags
    override it. :func:`resolve_args` also returns the settings derived from the user's choices.

    Raises:
        ArgumentsError: an unknown flag or config key, a bad value, or conflicting settings.
    """
    data_args, model_args, training_args, _ = resolve_args(argv)
    return data_args, model_args, training_args


def resolve_args(
    argv: list[str] | None = None,
) -> tuple[DataArguments, ModelArguments, NailTrainingArguments, list[str]]:
    """:func:`parse_args`, and the lines that say which defaults followed the user's choices.

    With ``--eval_strategy no`` (flag or config file) and ``--load_best_model_at_end`` not set
    explicitly, the best-model reload is off: there is no evaluation to pick the best from.
    Every check runs before anything is built, and a conflict names where each of its settings
    came from (command line, config file or default) and the fix.

    Returns:
        ``(data_args, model_args, training_args, notes)``; each note is one line for the log.

    Raises:
        ArgumentsError: an unknown flag or config key, a bad value, or conflicting settings.
    """
    parser = _Parser((DataArguments, ModelArguments, NailTrainingArguments), usage=_USAGE)
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path, config = None, {}
    if argv and not argv[0].startswith("-") and argv[0].endswith(_CONFIG_SUFFIXES):
        config_path = argv.pop(0)
        config = _read_config_file(config_path, parser)
        parser.set_defaults(**config)
    origins = _Origins(_given_on_command_line(parser, argv), frozenset(config), config_path)
    namespace, leftover = parser.parse_known_args(argv)
    if leftover:
        raise ArgumentsError(_leftover_message(leftover, parser))
    values = vars(namespace)
    derived, notes = _derived_defaults(values, origins)
    values = {**values, **derived}
    _check_training_values(values, origins)
    data_args, model_args, training_args = _build(parser, values, origins)
    return data_args, model_args, training_args, notes


def _given_on_command_line(parser: HfArgumentParser, argv: list[str]) -> frozenset[str]:
    """The fields that ``argv`` sets, abbreviations and ``--no_<flag>`` forms included."""
    # argparse fills in a default only for a name missing from the namespace it is handed, so
    # a namespace of markers comes back with real values exactly where a flag was given.
    unset = object()
    namespace = argparse.Namespace(
        **{a.dest: unset for a in parser._actions if a.default is not argparse.SUPPRESS}
    )
    parser.parse_known_args(argv, namespace)
    return frozenset(name for name, value in vars(namespace).items() if value is not unset)


def _leftover_message(leftover: list[str], parser: HfArgumentParser) -> str:
    flags = [arg.split("=", 1)[0] for arg in leftover if arg.startswith("-")]
    if not flags:
        return (
            f"unexpected argument(s) {leftover}: only a config file "
            f"({', '.join(_CONFIG_SUFFIXES)}) may come before the flags, and only first; {_HELP}"
        )
    known = sorted({f"--{a.dest}" for a in parser._actions if a.default is not argparse.SUPPRESS})
    named = []
    for flag in flags:
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.8)
        named.append(f"{flag} (did you mean {close[0]}?)" if close else flag)
    return f"unknown flag(s) {', '.join(named)}; {_HELP}"


def _derived_defaults(
    values: dict[str, Any], origins: _Origins
) -> tuple[dict[str, Any], list[str]]:
    """Defaults that follow the user's other choices; an explicit setting always wins."""
    if (
        values["eval_strategy"] == "no"
        and values["load_best_model_at_end"]
        and not origins.is_explicit("load_best_model_at_end")
    ):
        note = (
            f"{origins.describe('eval_strategy', 'no')}: --load_best_model_at_end is off, as "
            "there is no evaluation to pick the best checkpoint from"
        )
        return {"load_best_model_at_end": False}, [note]
    return {}, []


def _is_multiple(save_steps: float, eval_steps: float) -> bool:
    """What TrainingArguments requires of the two for ``load_best_model_at_end``."""
    if save_steps % eval_steps == 0:
        return True
    if save_steps < 1 and eval_steps < 1:  # both fractions of the run: compare them exactly
        return round(save_steps * 1_000_000) % round(eval_steps * 1_000_000) == 0
    return False


def _check_training_values(values: dict[str, Any], origins: _Origins) -> None:
    """Check the ``TrainingArguments`` settings whose errors are unclear or come late.

    Raises:
        ArgumentsError: naming each setting involved, where it came from, and the fix.
    """
    for name, strategy in _STRATEGIES.items():
        choices = [s.value for s in strategy]
        if values[name] not in choices:
            raise ArgumentsError(
                f"{origins.describe(name, values[name])}: must be one of {', '.join(choices)}"
            )
    for name in _AT_LEAST_ONE:
        if values[name] < 1:
            raise ArgumentsError(f"{origins.describe(name, values[name])}: must be at least 1")
    if values["dataloader_num_workers"] < 0:
        raise ArgumentsError(
            f"{origins.describe('dataloader_num_workers', values['dataloader_num_workers'])}: "
            "must be 0 (load in the main process) or more"
        )

    if not values["load_best_model_at_end"] or values["save_strategy"] == "best":
        return
    best = origins.describe("load_best_model_at_end", True)
    evals, saves = values["eval_strategy"], values["save_strategy"]
    if evals == "no":
        raise ArgumentsError(
            f"{best} reloads the best evaluated checkpoint, but "
            f"{origins.describe('eval_strategy', evals)} turns evaluation off: pass "
            "--eval_strategy epoch (or steps), or leave out --load_best_model_at_end"
        )
    if evals != saves:
        raise ArgumentsError(
            f"{origins.describe('eval_strategy', evals)} and "
            f"{origins.describe('save_strategy', saves)}: with {best}, a checkpoint must be "
            f"saved at every evaluation; pass --save_strategy {evals} too, or "
            "--load_best_model_at_end false"
        )
    if evals != "steps":
        return
    save_steps = values["save_steps"]
    if values["eval_steps"]:
        eval_steps = values["eval_steps"]
        eval_text = origins.describe("eval_steps", eval_steps)
    else:  # as TrainingArguments does, evaluate every logging_steps
        eval_steps = values["logging_steps"]
        eval_text = f"{origins.describe('logging_steps', eval_steps)} (in place of --eval_steps)"
    if eval_steps and not _is_multiple(save_steps, eval_steps):
        raise ArgumentsError(
            f"{origins.describe('save_steps', save_steps)} and {eval_text}: with {best}, a "
            "checkpoint must be saved at every evaluation, so --save_steps must be a multiple "
            f"of --eval_steps; pass --eval_steps {_format(save_steps)} (or a divisor of it), "
            f"or --save_steps {_format(eval_steps)} (or a multiple of it), or "
            "--load_best_model_at_end false"
        )


def _build(
    parser: HfArgumentParser, values: dict[str, Any], origins: _Origins
) -> tuple[DataArguments, ModelArguments, NailTrainingArguments]:
    """Construct the dataclasses; a ``ValueError`` of their checks becomes one line."""
    built = []
    for dtype in parser.dataclass_types:
        names = {f.name for f in fields(dtype) if f.init}
        try:
            built.append(dtype(**{k: v for k, v in values.items() if k in names}))
        except ValueError as err:
            message = " ".join(str(err).split())  # TrainingArguments' messages span lines
            from_file = [
                name
                for name in dict.fromkeys(re.findall(r"--(\w+)", message))
                if name in origins.in_config and name not in origins.given
            ]
            if from_file:
                message += f" ({', '.join(from_file)} set in {origins.config_path})"
            raise ArgumentsError(message) from err
    return built[0], built[1], built[2]


def _read_config_file(path: str, parser: HfArgumentParser) -> dict[str, Any]:
    """The settings in a YAML or JSON file, checked against the parser's flags.

    Raises:
        ArgumentsError: the file cannot be read or parsed, is not a mapping, names an unknown
            setting (close names are suggested), or gives a YAML boolean to a text setting.
    """
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ArgumentsError(
            f"cannot read the config file {path}: {err.strerror}; a first argument ending in "
            f"{', '.join(_CONFIG_SUFFIXES)} is read as a config file"
        ) from err
    try:
        config = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ArgumentsError(f"{path} is not valid: {' '.join(str(err).split())}") from err
    if not isinstance(config, dict):
        raise ArgumentsError(f"{path} must hold a mapping of setting names to values")
    actions = {
        a.dest: a
        for a in parser._actions
        if a.default is not argparse.SUPPRESS and f"--{a.dest}" in a.option_strings
    }
    unknown = [str(key) for key in config if key not in actions]
    if unknown:
        named = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(actions), n=1, cutoff=0.8)
            named.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise ArgumentsError(
            f"unknown setting(s) in {path}: {', '.join(named)}; valid names are the flags of "
            "`python run_finetune.py --help`, without the dashes"
        )
    for key, value in config.items():
        action = actions[key]
        if isinstance(value, bool) and (action.type is str or action.choices is not None):
            raise ArgumentsError(
                f"{key} in {path} is {_format(value)}, but {key} takes a word: YAML reads an "
                f'unquoted no/yes/off/on as false/true; quote it, e.g. {key}: "no"'
            )
    return config
