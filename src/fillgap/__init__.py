"""fillgap: image inpainting.

>>> import fillgap
>>> out = fillgap.inpaint(image, mask)            # uint8 H x W x 3, mask H x W; the default method
>>> out = fillgap.inpaint(image, mask, model="runs/x/last.pt")
"""

import os

# Before anything imports torch: OpenMP reads its wait policy once, when the library loads.
# Passive: a thread waiting between parallel regions sleeps instead of spinning on a core that
# another program (or the thread it waits for) needs; see fillgap.runtime.threads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._version import __version__  # noqa: E402
from .errors import FillgapError  # noqa: E402

__all__ = ["inpaint", "load_model", "FillgapError", "__version__"]


def __getattr__(name: str):
    # Loaded on first use: `import fillgap` (and so the CLI's start-up) stays free of torch.
    if name == "inpaint":
        from .fill import inpaint

        return inpaint
    if name == "load_model":
        from .methods import load_network

        return load_network
    raise AttributeError(f"module 'fillgap' has no attribute {name!r}")
