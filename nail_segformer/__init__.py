"""Fine-tune SegFormer for nail segmentation on Images/Masks folders.

Importing the package is cheap: it pulls in no Hugging Face model code, downloads nothing and
configures no logging. Import the submodules (``nail_segformer.data``, ``.train``, ...) for work.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
