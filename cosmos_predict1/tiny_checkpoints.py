"""Tiny random-weight checkpoints in exactly the released folder layout, for smoke tests on any CPU.

Same architecture and code paths as the 7B renderers, with small widths (the DiT's widths go into each model's
``config.json``, the tokenizer's are read off its weights). The outputs are noise-like: this checks an installation
and the file plumbing, not image quality.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import torch
from diffusers import AutoencoderKLCosmos

from cosmos_predict1.diffusion.networks import (
    FORWARD_7B,
    INVERSE_7B,
    DiffusionRendererDiT,
    DiTConfig,
    to_released_state_dict,
)
from cosmos_predict1.diffusion.tokenizer import export_jit_pair
from cosmos_predict1.errors import UserError
from cosmos_predict1.release import FORWARD_MODEL, INVERSE_MODEL, TOKENIZER

TINY_NET = {"model_channels": 64, "num_blocks": 2, "num_heads": 2, "adaln_lora_dim": 16, "crossattn_emb_channels": 32}
TINY_TOKENIZER_CHANNELS = 8
LATENT_CHANNELS = 16
STATISTICS_FRAMES = 16  # latent frames covered by mean_std.pt, as in the released file


def _random_network(base: DiTConfig, generator: torch.Generator) -> DiffusionRendererDiT:
    network = DiffusionRendererDiT(base.replace(**TINY_NET))
    with torch.no_grad():
        for param in network.parameters():
            if param.ndim == 2:
                param.copy_(torch.randn(param.shape, generator=generator) / param.shape[-1] ** 0.5)
            else:  # RMSNorm scales
                param.copy_(1 + 0.1 * torch.randn(param.shape, generator=generator))
    return network


def write_dit(folder: Path, base: DiTConfig, generator: torch.Generator) -> None:
    """``model.pt`` (flat ``net.*`` state dict, float32) + ``config.json`` with the tiny architecture."""
    folder.mkdir(parents=True, exist_ok=True)
    released = to_released_state_dict(_random_network(base, generator).state_dict())
    _save(released, folder / "model.pt")
    (folder / "config.json").write_text(json.dumps({"model_size": "7b", "net": TINY_NET}, indent=2) + "\n")


def write_tokenizer(folder: Path, generator: torch.Generator) -> None:
    """``encoder.jit``/``decoder.jit`` traced from a small ``AutoencoderKLCosmos`` + latent statistics files."""
    c = TINY_TOKENIZER_CHANNELS
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    vae = AutoencoderKLCosmos(
        encoder_block_out_channels=(c, 2 * c, 4 * c, 4 * c),
        decode_block_out_channels=(2 * c, 4 * c, 4 * c, 4 * c),
        latents_mean=None,
        latents_std=None,
    ).eval()
    export_jit_pair(vae, folder)
    values = LATENT_CHANNELS * STATISTICS_FRAMES
    mean = 0.05 * torch.randn(values, generator=generator)
    std = 0.5 + 0.5 * torch.rand(values, generator=generator)
    _save((mean, std), folder / "mean_std.pt")
    _save((mean[::STATISTICS_FRAMES].clone(), std[::STATISTICS_FRAMES].clone()), folder / "image_mean_std.pt")


def _save(value: object, path: Path) -> None:
    """``torch.save`` through memory, so that a failed write is an ``OSError`` with its errno (a full disk, say)."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    path.write_bytes(buffer.getvalue())


def write_tiny_checkpoints(checkpoint_dir: Path, seed: int = 0) -> None:
    """Both renderers and the tokenizer under ``checkpoint_dir`` in the released layout.

    ``UserError`` (before anything is written) when ``checkpoint_dir`` is, or lies under, a file or cannot be
    written, and when a write fails (full disk, permissions).
    """
    checkpoint_dir = Path(checkpoint_dir)
    check_writable_folder(checkpoint_dir)
    generator = torch.Generator().manual_seed(seed)
    try:
        write_dit(checkpoint_dir / INVERSE_MODEL, INVERSE_7B, generator)
        write_dit(checkpoint_dir / FORWARD_MODEL, FORWARD_7B, generator)
        write_tokenizer(checkpoint_dir / TOKENIZER, generator)
    except OSError as err:
        raise UserError(
            f"Cannot write tiny checkpoints to {err.filename or checkpoint_dir}: {err.strerror or err}; check free "
            "space and permissions, or choose another --checkpoint_dir."
        ) from err


def check_writable_folder(folder: Path) -> None:
    """``UserError`` unless ``folder`` is a folder (or can be created as one) that this process may write."""
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        raise UserError(f"--checkpoint_dir {folder}: {existing} is a file; choose a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"--checkpoint_dir {folder}: {existing} is not writable; fix its permissions or choose another folder."
        )
