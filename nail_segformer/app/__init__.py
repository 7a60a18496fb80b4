"""A demo page: try a trained model on your photos in the browser.

Command line::

    pip install -e ".[app]"
    python -m nail_segformer.app --model outputs/nails

serves a Gradio page on http://127.0.0.1:7860: upload a photo or use the webcam, and see the
nails tinted, outlined and numbered, each nail's area and mean nail probability, and the mask to
download. The threshold starts at the model's own (``nail_threshold``, chosen on validation),
else the argmax. Uploads are read by the package's own reader (pixel cap, EXIF orientation)
and answered at most :data:`~nail_segformer.app.analysis.MAX_SIDE` px on a side; they live in
the app's temporary folder, removed at exit.
"""

from typing import TYPE_CHECKING

from nail_segformer._lazy import lazy_exports

# Imported on first use: importing the package loads neither torch nor Gradio.
__all__ = ["MAX_SIDE", "Analysis", "analyze", "fit_to_max_side", "read_upload"]
_EXPORTS = dict.fromkeys(__all__, "nail_segformer.app.analysis")

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports
    from nail_segformer.app.analysis import (
        MAX_SIDE,
        Analysis,
        analyze,
        fit_to_max_side,
        read_upload,
    )

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
