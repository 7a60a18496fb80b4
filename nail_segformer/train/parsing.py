"""``[config.yaml|config.json] [--flag value ...]`` to the three argument dataclasses.

A config file gives defaults for any field; flags override it. Every problem, from our checks or
from ``TrainingArguments``, becomes one :class:`ArgumentsError` naming the flag, where its value
came from (command line or file) and the fix. Defaults that follow the user's choices (no
best-model reload without evaluation) are decided here, before the dataclasses are built.
"""

from __future__ import annotations

import argparse
import difflib
import enum
import json
import re
import sys
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from nail_segformer.train.args import DataArguments, ModelArguments, NailTrainingArguments

__all__ = ["ArgumentsError", "parse_args", "resolve_args"]

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
    _check_report_to(values, origins)
    data_args, model_args, training_args = _build(parser, values, origins)
    return data_args, model_args, training_args, notes


def _given_on_command_line(parser: HfArgumentParser, argv: list[str]) -> frozenset[str]:
    """The fields that ``argv`` sets, abbreviations and ``--no_<flag>`` forms included."""
    # argparse fills in a default only for a name missing from the namespace it is handed, so
    # a namespace of markers comes back with real values exactly where a flag was given.
    unset = object()
    namespace = argparse.Namespace(**dict.fromkeys(_setting_types(parser), unset))
    parser.parse_known_args(argv, namespace)
    return frozenset(name for name, value in vars(namespace).items() if value is not unset)


def _fields(parser: HfArgumentParser, name: str) -> list:
    """The dataclass field(s) behind a setting."""
    return [f for dtype in parser.dataclass_types for f in fields(dtype) if f.name == name]


def _setting_types(parser: HfArgumentParser) -> dict[str, Any]:
    """Each setting's name (its flag without the dashes) and its type, from the dataclasses."""
    return {
        f.name: typing.get_type_hints(dtype)[f.name]
        for dtype in parser.dataclass_types
        for f in fields(dtype)
        if f.init
    }


def _options(annotation: Any) -> list:
    """The types a setting's annotation allows (the members of a union, else itself)."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return list(typing.get_args(annotation)) if union else [annotation]


def _takes_words(annotation: Any) -> bool:
    """Whether a setting's values are words (text, a choice, or a list of them), not a bool."""
    options = _options(annotation)
    options = [typing.get_args(o)[0] if typing.get_origin(o) is list else o for o in options]
    if bool in options:
        return False
    return any(
        o is str
        or typing.get_origin(o) is typing.Literal
        or (isinstance(o, type) and issubclass(o, enum.Enum))
        for o in options
    )


def _leftover_message(leftover: list[str], parser: HfArgumentParser) -> str:
    flags = [arg.split("=", 1)[0] for arg in leftover if arg.startswith("-")]
    if not flags:
        return (
            f"unexpected argument(s) {leftover}: only a config file "
            f"({', '.join(_CONFIG_SUFFIXES)}) may come before the flags, and only first; {_HELP}"
        )
    known = sorted(f"--{name}" for name in _setting_types(parser))
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


# The pip package of each tracker integration whose name is not its own.
_TRACKER_PACKAGES = {"azure_ml": "azureml-core", "flyte": "flytekit", "kubeflow": "kfp"}


def _check_report_to(values: dict[str, Any], origins: _Origins) -> None:
    """Every tracker ``--report_to`` names exists and is installed; the Trainer would only
    find out after the data is read and the model built, and end in a traceback."""
    from transformers.integrations import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    requested = values.get("report_to")
    names = [requested] if isinstance(requested, str) else list(requested or [])
    names = [name for name in names if name not in ("none", "all")]
    unknown = [name for name in names if name not in INTEGRATION_TO_CALLBACK]
    if unknown:
        raise ArgumentsError(
            f"{origins.describe('report_to', requested)}: no such tracker {', '.join(unknown)}; "
            f"choose from {', '.join(INTEGRATION_TO_CALLBACK)}, all or none"
        )
    missing = [name for name in names if name not in get_available_reporting_integrations()]
    if missing:
        packages = " ".join(_TRACKER_PACKAGES.get(name, name) for name in missing)
        raise ArgumentsError(
            f"{origins.describe('report_to', requested)}: {', '.join(missing)} is not "
            f"installed; pip install {packages}, or leave --report_to out"
        )


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
            named = [n for n in dict.fromkeys(re.findall(r"--(\w+)", message)) if n in values]
            if "load_best_model_at_end" in named:  # its rules involve settings it does not name
                named += ["eval_strategy", "save_strategy"]
                if values["eval_strategy"] == "steps":  # TrainingArguments' eval_steps default
                    named += [
                        "save_steps",
                        "eval_steps" if values["eval_steps"] else "logging_steps",
                    ]
            named = list(dict.fromkeys(named))
            if len(named) == 1 and named[0] in origins.given:  # the message says it all
                named = []
            origin = "; ".join(origins.describe(n, values[n]) for n in named)
            message = f"{message} ({origin})" if origin else message
            if "load_best_model_at_end" in named:
                message += "; --load_best_model_at_end false turns the best-model reload off"
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
    settings = _setting_types(parser)
    unknown = [str(key) for key in config if key not in settings]
    if unknown:
        named = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(settings), n=1, cutoff=0.8)
            named.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise ArgumentsError(
            f"unknown setting(s) in {path}: {', '.join(named)}; valid names are the flags of "
            "`python run_finetune.py --help`, without the dashes"
        )
    for key, value in config.items():
        if isinstance(value, bool) and _takes_words(settings[key]):
            raise ArgumentsError(
                f"{key} in {path} is {_format(value)}, but {key} takes a word: YAML reads an "
                f'unquoted no/yes/off/on as false/true; quote it, e.g. {key}: "no"'
            )
    return {k: _as_flag_gives_it(k, v, settings[k], path, parser) for k, v in config.items()}


def _as_flag_gives_it(
    key: str, value: Any, annotation: Any, path: str, parser: HfArgumentParser
) -> Any:
    """A config file's value as its flag would give it, or the flag's own error (``annotation``:
    the setting's type, see :func:`_setting_types`).

    argparse types and checks what a flag says, never a default, which a config value is: a
    value the flag would refuse (a word for a number, a list for one value, an unknown choice)
    would reach the run as it is and end in a traceback there.
    """
    scalar = (str, int, float, bool)
    if value is None:
        return None  # the setting's "unset", which no flag can say
    if isinstance(value, list) and all(isinstance(v, scalar) for v in value):
        if any(typing.get_origin(o) is list for o in _options(annotation)):
            return [_format(v) for v in value]  # words, as a flag's list gives them
        comma = any("comma-separated" in f.metadata.get("help", "") for f in _fields(parser, key))
        example = f'; as the flag takes several: {key}: "{",".join(map(_format, value))}"'
        raise ArgumentsError(
            f"{key} in {path} is a list, but --{key} takes one value{example if comma else ''}"
        )
    if not isinstance(value, scalar):
        raise ArgumentsError(f"{key} in {path} is {value!r}, but --{key} takes one value")
    try:
        namespace, _ = parser.parse_known_args([f"--{key}={_format(value)}"])
    except ArgumentsError as err:
        raise ArgumentsError(f"{key} in {path} is {_format(value)}: {err}") from None
    return getattr(namespace, key)
