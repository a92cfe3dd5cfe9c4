"""Architecture of the renderer DiT as data.

The defaults are the released 7B renderers. A checkpoint folder's ``config.json`` may override them under its
``"net"`` key, with the original network config's field names (the released folders only say
``{"model_size": "7b"}``; tiny test checkpoints carry their whole architecture there).

Every value of ``config.json`` is checked before anything is built: its type and range (``SCHEMA``), then the rules
between values (heads divide the width, what the renderer feeds the network); each failure is one ``UserError`` line
naming the file, the key and the allowed values. ``DiTConfig.check_frame_size`` checks a run's frame size against
the position tables. Imports no torch: a script may read a config before the models' libraries load.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, NamedTuple

from cosmos_predict1.errors import UserError

from ..options import check_number, check_regular_file

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


class Rule(NamedTuple):
    """The allowed values of one setting: an "int", a "number" (int or float) or a "bool"; numbers in [low, high]
    (in (low, high] with ``open_low``)."""

    kind: str
    low: float = 0
    high: float = 0
    open_low: bool = False


WIDTH = 65536  # the largest width of any layer (the 7B: 4096)
SCHEMA: dict[str, Rule] = {
    "in_channels": Rule("int", 1, WIDTH),
    "out_channels": Rule("int", 1, WIDTH),
    "model_channels": Rule("int", 12, WIDTH),
    "num_blocks": Rule("int", 1, 1024),
    "num_heads": Rule("int", 1, 1024),
    "mlp_ratio": Rule("number", 0, 64, open_low=True),
    "crossattn_emb_channels": Rule("int", 1, WIDTH),
    "adaln_lora_dim": Rule("int", 1, WIDTH),
    "patch_spatial": Rule("int", 1, 16),
    "patch_temporal": Rule("int", 1, 8),
    "max_img_h": Rule("int", 2, WIDTH),
    "max_img_w": Rule("int", 2, WIDTH),
    "max_frames": Rule("int", 1, WIDTH),
    "additional_concat_ch": Rule("int", 0, WIDTH),
    "use_context_embedding": Rule("bool"),
    "context_embedding_rows": Rule("int", 1, WIDTH),
    "concat_padding_mask": Rule("bool"),
    "rope_base_fps": Rule("int", 1, 1000),
    **{
        f"{kind}_{axis}_extrapolation_ratio": Rule("number", 0.001, 1000)  # the RoPE base 10000·r^(d/(d-2)) ≥ 0.01
        for kind in ("rope", "extra")
        for axis in "hwt"
    },
}
# Settings whose value the renderer's code fixes: the latent channels it feeds and reads (the tokenizer's 16), the
# condition channels it concatenates, and whether it passes a G-buffer index. They must equal the base's.
FED_BY_RENDERER = ("in_channels", "out_channels", "additional_concat_ch", "use_context_embedding")
CONTEXT_ROWS_USED = 7  # the inverse renderer's G-buffer indices 0-6 (options.GBUFFER_INDEX)
MIN_HEAD_DIM = 12  # the rotary split gives each spatial axis 2·⌊d/6⌋ ≥ 4 dims (2 would divide by zero)
# Pixel frames → latent frames and pixels → latent pixels of the released tokenizer (CV8x8x8, chunks of 57 frames).
PIXEL_CHUNK, LATENT_CHUNK, SPATIAL_COMPRESSION = 57, 8, 8


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

    @property
    def position_table_grid(self) -> tuple[int, int, int]:
        """The largest token grid (frames, rows, columns) the network's position tables cover, as it checks it."""
        return self.max_frames, self.max_img_h // 2, self.max_img_w // 2

    def check_frame_size(self, frames: int, height: int, width: int, source: str = "the network config") -> None:
        """``UserError`` naming ``source`` (e.g. the config.json) unless clips of ``frames × height × width`` pixels
        (1 or 57 frames; sides multiples of 16) fit this network: its patches divide their latent size (1 latent
        frame per image, 8 per 57 frames; 1/8 of the pixels per side) and its position tables cover their token
        grid. Call it before a run builds or loads the network."""
        latent = (
            1 if frames == 1 else frames // PIXEL_CHUNK * LATENT_CHUNK,
            height // SPATIAL_COMPRESSION,
            width // SPATIAL_COMPRESSION,
        )
        patches = (self.patch_temporal, self.patch_spatial, self.patch_spatial)
        axes = (("--num_video_frames", frames, "frames"), ("--height", height, "rows"), ("--width", width, "columns"))
        patch_keys = ("patch_temporal", "patch_spatial", "patch_spatial")
        for (option, value, what), size, patch, key in zip(axes, latent, patches, patch_keys):
            if size % patch:
                raise UserError(
                    f"{source}: '{key}': {patch} does not divide the {size} latent {what} of {option} {value}; "
                    f"use another {option} or another checkpoint."
                )
        table_keys = ("max_frames", "max_img_h", "max_img_w")
        for (option, value, what), size, patch, key, covered in zip(
            axes, latent, patches, table_keys, self.position_table_grid
        ):
            needed = size // patch
            if needed > covered:
                least = needed if key == "max_frames" else 2 * needed
                raise UserError(
                    f"{source}: '{key}': {getattr(self, key)} is too small for {option} {value} (position tables "
                    f"for {covered} patch {what}, {needed} needed); it must be at least {least}, or use a smaller "
                    f"{option}."
                )


INVERSE_7B = DiTConfig(additional_concat_ch=16, use_context_embedding=True)
FORWARD_7B = DiTConfig(additional_concat_ch=136, use_context_embedding=False)


def config_from_dict(net: dict[str, Any], base: DiTConfig, source: str = "config") -> DiTConfig:
    """``base`` overridden by the original-style ``net`` settings, each checked (``check_setting``, then
    ``check_config``); unsupported or invalid settings raise ``UserError`` naming ``source`` and the key."""
    if not isinstance(net, dict):
        raise UserError(f"{source}: 'net': must be a JSON object of network settings, got {type(net).__name__}.")
    fields = {f.name for f in dataclasses.fields(DiTConfig)}
    changes: dict[str, Any] = {}
    for key, value in net.items():
        if key in fields:
            check_setting(key, value, source)
            changes[key] = value
        elif key in _FIXED_SETTINGS:
            if type(value) is not type(_FIXED_SETTINGS[key]) or value != _FIXED_SETTINGS[key]:
                raise UserError(f"{source}: '{key}': {value!r} is not supported (only {_FIXED_SETTINGS[key]!r}).")
        elif key not in _IGNORED_SETTINGS:
            raise UserError(f"{source}: unknown network setting '{key}'.")
    config = base.replace(**changes)
    check_config(config, base, source)
    return config


def check_setting(key: str, value: object, source: str = "config") -> None:
    """``UserError`` unless ``value`` has the type and range ``SCHEMA`` allows for ``key``."""
    rule = SCHEMA[key]
    if rule.kind == "bool":
        if not isinstance(value, bool):
            raise UserError(f"{source}: '{key}': {value!r}: must be true or false.")
        return
    check_number(f"{source}: '{key}':", value, rule.low, rule.high, integer=rule.kind == "int", open_low=rule.open_low)


def check_config(config: DiTConfig, base: DiTConfig, source: str = "config") -> None:
    """The rules between settings: attention heads of an even size ≥ ``MIN_HEAD_DIM``, an MLP of at least one
    channel, the values the renderer fixes (``FED_BY_RENDERER``) and enough context rows for the inverse renderer."""
    channels, heads = config.model_channels, config.num_heads
    if channels % heads or (channels // heads) % 2 or channels // heads < MIN_HEAD_DIM:
        raise UserError(
            f"{source}: 'model_channels': {channels} with 'num_heads': {heads}: model_channels must be num_heads × an "
            f"even head size of at least {MIN_HEAD_DIM} (the 7B: 32 × 128)."
        )
    if int(channels * config.mlp_ratio) < 1:
        raise UserError(f"{source}: 'mlp_ratio': {config.mlp_ratio}: must give at least 1 MLP channel.")
    for key in FED_BY_RENDERER:
        if getattr(config, key) != getattr(base, key):
            raise UserError(
                f"{source}: '{key}': {getattr(config, key)!r} is not what this renderer feeds its network (only "
                f"{getattr(base, key)!r}); is this the other renderer's checkpoint (inverse vs forward)?"
            )
    if config.use_context_embedding and config.context_embedding_rows < CONTEXT_ROWS_USED:
        raise UserError(
            f"{source}: 'context_embedding_rows': {config.context_embedding_rows}: must be at least "
            f"{CONTEXT_ROWS_USED} (one per G-buffer the inverse renderer can produce)."
        )


def load_config(model_dir: Path, base: DiTConfig) -> DiTConfig:
    """The architecture of the checkpoint in ``model_dir``: ``base`` plus ``config.json["net"]`` if present, checked.

    ``UserError`` naming the file for one that is not a regular file, not JSON (or nested too deeply), not an object,
    or whose settings are not allowed (``config_from_dict``).
    """
    path = Path(model_dir) / "config.json"
    if not path.exists() and not path.is_symlink():
        return base
    check_regular_file(path, "the checkpoint's config.json (a JSON file)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise UserError(
            f"{path}: not a readable JSON file ({reason}); delete it or re-download the checkpoint."
        ) from err
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object.")
    if data.get("model_size", "7b") != "7b" and "net" not in data:
        raise UserError(f"{path}: model_size {data['model_size']!r} is not supported (only '7b').")
    return config_from_dict(data.get("net", {}), base, source=str(path))


def check_clip_shape(model_dir: Path, base: DiTConfig, clip_shape: tuple[int, int, int]) -> DiTConfig:
    """The checked architecture of ``model_dir`` (``load_config``), also checked against clips of ``clip_shape``
    (T, H, W) (``DiTConfig.check_frame_size``): one ``UserError`` line for any problem, before anything is built."""
    config = load_config(model_dir, base)
    path = Path(model_dir) / "config.json"
    source = str(path) if path.exists() else f"the network of {model_dir} (no config.json: the 7B defaults)"
    config.check_frame_size(*clip_shape, source=source)
    return config
