"""The renderer diffusion transformer: configuration, network, and the released checkpoint layout."""

from .checkpoint import build_network, released_names, to_released_state_dict
from .config import FORWARD_7B, INVERSE_7B, DiTConfig, load_config
from .dit import DiffusionRendererDiT

__all__ = [
    "FORWARD_7B",
    "INVERSE_7B",
    "DiTConfig",
    "DiffusionRendererDiT",
    "build_network",
    "load_config",
    "released_names",
    "to_released_state_dict",
]
