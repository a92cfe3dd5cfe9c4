"""Architecture of the renderer DiT as data.

The defaults are the released 7B renderers. A checkpoint folder's ``config.json`` may override them under its
``"net"`` key, with the original network config's field names (the released folders only say
``{"model_size": "7b"}``; tiny test checkpoints carry their whole architecture there).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from cosmos_predict1.errors import UserError

# Settings of the original config that select code paths; this implementation has exactly one of each.
_FIXED_SETTINGS: dict[str, Any] = {
    "block_config": "FA-CA-MLP",
    "pos_emb_cls": "rope3d",
    "pos_emb_learnable": False,
    "use_adaln_lora": True,
    "affline_emb_norm": True,
    "extra_per_block_abs_pos_emb": True,
    "extra_per_block_abs_pos_emb_type": "sincos",
    "use_cross_attn_mask": False,
}
# Fields of the original config that do not change the function computed here.
_IGNORED_SETTINGS = {"block_x_format", "pos_emb_interpolation", "model_size"}


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    """Hyper-parameters of the renderer DiT (names as in the original network config)."""

    in_channels: int = 16
    out_channels: int = 16
    model_channels: int = 4096
    num_blocks: int = 28
    num_heads: int = 32
    mlp_ratio: float = 4.0
    crossattn_emb_channels: int = 1024
    adaln_lora_dim: int = 256
    patch_spatial: int = 2
    patch_temporal: int = 1
    max_img_h: int = 240
    max_img_w: int = 240
    max_frames: int = 128
    additional_concat_ch: int = 16
    use_context_embedding: bool = True
    context_embedding_rows: int = 16
    concat_padding_mask: bool = True
    rope_base_fps: int = 24
    rope_h_extrapolation_ratio: float = 1.0
    rope_w_extrapolation_ratio: float = 1.0
    rope_t_extrapolation_ratio: float = 1.0
    extra_h_extrapolation_ratio: float = 1.0
    extra_w_extrapolation_ratio: float = 1.0
    extra_t_extrapolation_ratio: float = 1.0

    @property
    def head_dim(self) -> int:
        return self.model_channels // self.num_heads

    @property
    def patch_embed_in_features(self) -> int:
        """C·p·p·pt with C = latent + condition (+ padding mask) channels."""
        channels = self.in_channels + self.additional_concat_ch + int(self.concat_padding_mask)
        return channels * self.patch_spatial**2 * self.patch_temporal

    @property
    def patch_out_features(self) -> int:
        return self.out_channels * self.patch_spatial**2 * self.patch_temporal

    @property
    def rope_ratios(self) -> tuple[float, float, float]:
        """RoPE extrapolation ratios in (t, h, w) order."""
        return self.rope_t_extrapolation_ratio, self.rope_h_extrapolation_ratio, self.rope_w_extrapolation_ratio

    @property
    def extra_ratios(self) -> tuple[float, float, float]:
        """Extrapolation ratios of the per-block sin-cos embedding in (t, h, w) order."""
        return self.extra_t_extrapolation_ratio, self.extra_h_extrapolation_ratio, self.extra_w_extrapolation_ratio

    def replace(self, **changes: Any) -> DiTConfig:
        return dataclasses.replace(self, **changes)


INVERSE_7B = DiTConfig(additional_concat_ch=16, use_context_embedding=True)
FORWARD_7B = DiTConfig(additional_concat_ch=136, use_context_embedding=False)


def config_from_dict(net: dict[str, Any], base: DiTConfig, source: str = "config") -> DiTConfig:
    """``base`` overridden by the original-style ``net`` settings; unsupported settings raise ``UserError``."""
    fields = {f.name for f in dataclasses.fields(DiTConfig)}
    changes: dict[str, Any] = {}
    for key, value in net.items():
        if key in fields:
            changes[key] = value
        elif key in _FIXED_SETTINGS:
            if value != _FIXED_SETTINGS[key]:
                raise UserError(f"{source}: '{key}': {value!r} is not supported (only {_FIXED_SETTINGS[key]!r}).")
        elif key not in _IGNORED_SETTINGS:
            raise UserError(f"{source}: unknown network setting '{key}'.")
    config = base.replace(**changes)
    if config.model_channels % config.num_heads or config.head_dim % 2:
        raise UserError(f"{source}: model_channels must be a multiple of 2·num_heads.")
    return config


def load_config(model_dir: Path, base: DiTConfig) -> DiTConfig:
    """The architecture of the checkpoint in ``model_dir``: ``base`` plus ``config.json["net"]`` if present."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return base
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable JSON file ({err}); delete it or re-download the checkpoint.") from err
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object.")
    if data.get("model_size", "7b") != "7b" and "net" not in data:
        raise UserError(f"{path}: model_size {data['model_size']!r} is not supported (only '7b').")
    return config_from_dict(data.get("net", {}), base, source=str(path))
