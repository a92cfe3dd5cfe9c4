"""Cosmos DiffusionRenderer inference: de-lighting (inverse) and re-lighting (forward) of images and videos.

The Python API (see README "Use from Python"):

    from cosmos_predict1 import ForwardPipeline, InversePipeline, Lighting

Its names are imported on first use, so importing the package (the command-line scripts do) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cosmos_predict1.errors import UserError

if TYPE_CHECKING:
    from cosmos_predict1.diffusion.options import Lighting
    from cosmos_predict1.diffusion.pipelines import ForwardPipeline, InversePipeline

_LAZY = {
    "ForwardPipeline": "cosmos_predict1.diffusion.pipelines",
    "InversePipeline": "cosmos_predict1.diffusion.pipelines",
    "Lighting": "cosmos_predict1.diffusion.options",
}
__all__ = ["ForwardPipeline", "InversePipeline", "Lighting", "UserError"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cosmos_predict1' has no attribute {name!r}")
