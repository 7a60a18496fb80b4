"""Predict nail masks for photos with a trained model; optionally evaluate against masks.

Command line::

    python -m nail_segformer.predict --model outputs/nail-segformer --input photos/ --output out/

Python::

    predictor = Predictor.from_pretrained("outputs/nail-segformer", mode="slide", tta=True)
    [prediction] = predictor.predict([load_image("hand.jpg")])

Definitions used in the outputs:

- *mask*: nail where the nail probability is above the threshold the run chose on validation
  (``nail_threshold`` in ``config.json``), or above ``threshold`` when one is given; where the
  nail class wins the argmax of the (averaged) scores when the model has none or with
  ``threshold="argmax"``. Always at the photo's own size and
  orientation (EXIF applied), as the photo is seen.
- *nail count*: 8-connected components of the mask of at least ``min_nail_area`` pixels. The
  default, :func:`default_min_nail_area`, is 0.01% of the photo's pixels (1,200 px on a 12 MP
  photo), a quarter of the smallest nail's share in the synthetic set (0.04%), so specks of a
  few upsampled logits are not counted as nails. The mask itself is never filtered.
- *mean confidence*: the mean nail probability over predicted nail pixels, i.e. the mean
  max-softmax probability where the default argmax predicts nail; ``None`` when no pixel is
  nail. Background pixels are left out because they cover ~98% of a photo and would push every
  photo's confidence towards 1.
- *nail fraction*: predicted nail pixels / all pixels.

Modes: ``resize`` (default) is the Hugging Face pipeline's processing; ``slide`` runs windows
over a larger version of the photo, for photos whose nails get too small when the whole photo is
resized to the model size. See :mod:`.infer`. Only safetensors weights are
loaded, and no remote code is run.
"""

from typing import TYPE_CHECKING

from nail_segformer._lazy import lazy_exports

# Imported on first use: importing the package loads no torch until a name is used.
_EXPORTS = {
    "MODES": "nail_segformer.predict.predictor",
    "TTA_CHOICES": "nail_segformer.predict.predictor",
    "Prediction": "nail_segformer.predict.predictor",
    "Predictor": "nail_segformer.predict.predictor",
    "count_nails": "nail_segformer.predict.predictor",
    "default_min_nail_area": "nail_segformer.predict.predictor",
    "ModelLoadError": "nail_segformer.predict.infer",
    "load_run_model": "nail_segformer.predict.infer",
    "load_run_processor": "nail_segformer.predict.infer",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports
    from nail_segformer.predict.infer import ModelLoadError, load_run_model, load_run_processor
    from nail_segformer.predict.predictor import (
        MODES,
        TTA_CHOICES,
        Prediction,
        Predictor,
        count_nails,
        default_min_nail_area,
    )

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
