"""Tensor names of the released tokenizer files ⇄ diffusers' ``AutoencoderKLCosmos``, and the config they imply.

The released ``encoder.jit`` / ``decoder.jit`` name their tensors after the original modules
(``encoder.down.0.block.1.conv2.1.conv3d.bias``); diffusers names the same tensors after its own
(``encoder.down_blocks.0.resnets.1.conv2.conv_t.bias``). One table of segment renames serves both directions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import chain
from typing import Any

import torch
from diffusers import AutoencoderKLCosmos

ENCODER_FILE = "encoder.jit"
DECODER_FILE = "decoder.jit"
# Released-only buffer: the patch size as an int32 tensor; diffusers keeps it in the config.
PATCH_SIZE_KEY = "encoder.patcher3d.patch_size_buffer"
RGB_CHANNELS = 3

_SAMPLER_RENAMES = tuple(
    (f"{released}.conv{i}.conv3d", f"{diffusers}.0.conv{i}")
    for released, diffusers in (("downsample", "downsamplers"), ("upsample", "upsamplers"))
    for i in (1, 2, 3)
)
# (released segments, diffusers segments), matched on whole dot-separated segments.
_RENAMES: tuple[tuple[str, str], ...] = (
    ("patcher3d", "patch_embed"),
    ("unpatcher3d", "unpatch_embed"),
    ("down", "down_blocks"),
    ("block", "resnets"),
    ("mid.block_1", "mid_block.resnets.0"),
    ("mid.attn_1.0", "mid_block.attentions.0"),
    ("mid.attn_1.1", "mid_block.temp_attentions.0"),
    ("mid.block_2", "mid_block.resnets.1"),
    *_SAMPLER_RENAMES,
    ("q.conv3d", "to_q"),
    ("k.conv3d", "to_k"),
    ("v.conv3d", "to_v"),
    ("proj_out.conv3d", "to_out.0"),
    ("0.conv3d", "conv_s"),
    ("1.conv3d", "conv_t"),
    ("nin_shortcut.conv3d", "conv_shortcut"),
    ("quant_conv.conv3d", "quant_conv"),
    ("post_quant_conv.conv3d", "post_quant_conv"),
)
# The decoder's levels: the released ``up.i`` is indexed by resolution, diffusers' ``up_blocks.i`` by execution
# order, so the level index is reversed (an involution, the same in both directions).
_UP = ("up", "up_blocks")


def _table(forward: bool) -> list[tuple[list[str], list[str]]]:
    pairs = [(a.split("."), b.split(".")) if forward else (b.split("."), a.split(".")) for a, b in _RENAMES]
    return sorted(pairs, key=lambda pair: -len(pair[0]))


_TO_DIFFUSERS, _TO_RELEASED = _table(True), _table(False)


def _rename(key: str, table: list[tuple[list[str], list[str]]], up: tuple[str, str], num_up_levels: int) -> str:
    """``key`` rewritten by ``table``; ``up`` = (source, target) name of the decoder's level list."""
    parts, out, i = key.split("."), [], 0
    while i < len(parts):
        if parts[i] == up[0] and i + 1 < len(parts):
            out += [up[1], str(num_up_levels - 1 - int(parts[i + 1]))]
            i += 2
            continue
        for source, target in table:
            if parts[i : i + len(source)] == source:
                out += target
                i += len(source)
                break
        else:
            out.append(parts[i])
            i += 1
    return ".".join(out)


def diffusers_name(released: str, num_up_levels: int) -> str:
    """The diffusers name of a released tensor name (``num_up_levels``: decoder levels, 3 in the release)."""
    return _rename(released, _TO_DIFFUSERS, _UP, num_up_levels)


def released_name(diffusers: str, num_up_levels: int) -> str:
    """The released tensor name of a diffusers name; inverse of :func:`diffusers_name`."""
    return _rename(diffusers, _TO_RELEASED, _UP[::-1], num_up_levels)


def released_file(released: str) -> str:
    """Which released file holds the tensor: ``encoder.jit`` (``encoder.*``, ``quant_conv.*``) or ``decoder.jit``."""
    return ENCODER_FILE if released.startswith(("encoder.", "quant_conv.")) else DECODER_FILE


def _level_indices(names: Iterable[str], prefix: str) -> set[int]:
    return {int(name[len(prefix) :].split(".")[0]) for name in names if name.startswith(prefix)}


def released_to_diffusers(released: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Released tensors (both files) under diffusers names; the released-only patch size buffer is dropped."""
    num_up_levels = len(_level_indices(released, "decoder.up."))
    return {diffusers_name(k, num_up_levels): v for k, v in released.items() if k != PATCH_SIZE_KEY}


def released_tensors(vae: AutoencoderKLCosmos) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of ``vae`` under its released name (the same tensor objects, not copies), plus
    the released-only int32 patch size buffer. Works on a meta-device ``vae`` (for names and shapes)."""
    num_up_levels = len(vae.decoder.up_blocks)
    named = chain(vae.named_parameters(), vae.named_buffers())
    tensors = {released_name(name, num_up_levels): tensor for name, tensor in named}
    tensors[PATCH_SIZE_KEY] = torch.tensor([vae.config.patch_size], dtype=torch.int32)
    return tensors


def infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``AutoencoderKLCosmos`` config for diffusers-named weights: widths, depth, patch and latent size read from
    the tensor shapes (so reduced test checkpoints work); everything else is the released architecture.

    Raises ``KeyError`` (the missing name) when the weights are not those of this architecture.
    """

    def width(name: str) -> int:
        return state[name].shape[0]

    levels = sorted(_level_indices(state, "encoder.down_blocks."))
    encoder = [width("encoder.conv_in.conv_s.weight")]
    encoder += [width(f"encoder.down_blocks.{i}.resnets.0.conv1.conv_s.weight") for i in levels]
    decoder = [width("decoder.conv_in.conv_s.weight")]
    decoder += [width(f"decoder.up_blocks.{i}.resnets.0.conv1.conv_s.weight") for i in levels]
    patch_channels = state["encoder.conv_in.conv_s.weight"].shape[1]
    return {
        "in_channels": RGB_CHANNELS,
        "out_channels": RGB_CHANNELS,
        "latent_channels": width("quant_conv.weight"),
        "encoder_block_out_channels": tuple(encoder),
        "decode_block_out_channels": tuple(reversed(decoder)),
        "num_layers": len(_level_indices(state, "encoder.down_blocks.0.resnets.")),
        "patch_size": round((patch_channels / RGB_CHANNELS) ** (1 / 3)),
        "latents_mean": None,
        "latents_std": None,
    }
