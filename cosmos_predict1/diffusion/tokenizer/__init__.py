"""The video tokenizer (Cosmos-Tokenize1-CV8x8x8-720p) on diffusers' ``AutoencoderKLCosmos``."""

from .attention import FramewiseSpatialAttention
from .export import export_jit_pair
from .names import diffusers_name, released_name
from .video_tokenizer import VideoTokenizer, load_tokenizer

__all__ = [
    "FramewiseSpatialAttention",
    "VideoTokenizer",
    "diffusers_name",
    "export_jit_pair",
    "load_tokenizer",
    "released_name",
]
