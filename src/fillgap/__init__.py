"""fillgap: image inpainting.

>>> import fillgap
>>> out = fillgap.inpaint(image, mask)            # uint8 H x W x 3, mask H x W; shipped model
>>> out = fillgap.inpaint(image, mask, model="runs/x/last.pt")
"""
from .checkpoint import load_model
from .errors import FillgapError
from .fill import inpaint

__version__ = "0.1.0"
__all__ = ["inpaint", "load_model", "FillgapError", "__version__"]
