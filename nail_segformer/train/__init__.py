"""Fine-tune (or train from scratch) a SegFormer on an Images/Masks folder with the ``Trainer``.

Entry point: ``python run_finetune.py [config.yaml|config.json] [--flag value ...]``. Every knob
is a field of :class:`DataArguments`, :class:`ModelArguments` or :class:`NailTrainingArguments`
(``transformers.TrainingArguments`` with defaults for this job); flags override the file.

The modules, in the order a run uses them: :mod:`.args` (settings), :mod:`.parsing` (command
line and config file to settings), :mod:`.run_dir` (the output
folder: lock, resume, move aside), :mod:`.build` (data, model, loss, Trainer),
:mod:`.trainer` (:class:`NailTrainer`), :mod:`.optim` (SegFormer's parameter groups),
:mod:`.stopping` (stop on a signal, agreed by every process), :mod:`.card` (the model card), :mod:`.pipeline` (:func:`main`, phase by phase) and :mod:`.cli` (exit codes).
"""

from typing import TYPE_CHECKING

from nail_segformer._lazy import lazy_exports

# Imported on first use: importing the package loads no torch until a name is used.
_EXPORTS = {
    "DataArguments": "nail_segformer.train.args",
    "ModelArguments": "nail_segformer.train.args",
    "NailTrainingArguments": "nail_segformer.train.args",
    "parse_args": "nail_segformer.train.parsing",
    "resolve_args": "nail_segformer.train.parsing",
    "ArgumentsError": "nail_segformer.train.parsing",
    "format_metrics_table": "nail_segformer.train.pipeline",
    "main": "nail_segformer.train.pipeline",
    "MANIFEST_NAME": "nail_segformer.train.run_dir",
    "RUN_ARGS_NAME": "nail_segformer.train.run_dir",
    "BAD_PAIRS_NAME": "nail_segformer.train.run_dir",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports
    from nail_segformer.train.args import DataArguments, ModelArguments, NailTrainingArguments
    from nail_segformer.train.parsing import ArgumentsError, parse_args, resolve_args
    from nail_segformer.train.pipeline import format_metrics_table, main
    from nail_segformer.train.run_dir import BAD_PAIRS_NAME, MANIFEST_NAME, RUN_ARGS_NAME

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
