"""Tiny random-weight checkpoints in exactly the released folder layout, for smoke tests on any CPU.

Same architecture and code paths as the 7B renderers, with small widths (the DiT's widths go into each model's
``config.json``, the tokenizer's are read off its weights). The outputs are noise-like: this checks an installation
and the file plumbing, not image quality.

Real checkpoints are never overwritten by accident: the files are written under a hidden temporary folder and moved
into place, and ``MANIFEST`` records the size and MD5 of each; a folder in which any file to be written already
exists without matching its record (real weights, or anything else not written here) is refused unless
``overwrite``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
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
from cosmos_predict1.release import FORWARD_MODEL, INVERSE_MODEL, TOKENIZER, file_md5

TINY_NET = {"model_channels": 64, "num_blocks": 2, "num_heads": 2, "adaln_lora_dim": 16, "crossattn_emb_channels": 32}
TINY_TOKENIZER_CHANNELS = 8
LATENT_CHANNELS = 16
STATISTICS_FRAMES = 16  # latent frames covered by mean_std.pt, as in the released file
TINY_FILES = {  # every file written, per model folder
    INVERSE_MODEL: ("model.pt", "config.json"),
    FORWARD_MODEL: ("model.pt", "config.json"),
    TOKENIZER: ("encoder.jit", "decoder.jit", "mean_std.pt", "image_mean_std.pt"),
}
MANIFEST = "tiny_checkpoints.json"  # in the checkpoint folder: '<folder>/<file>' -> {"size": bytes, "md5": hex}


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


def write_tiny_checkpoints(checkpoint_dir: Path, seed: int = 0, overwrite: bool = False) -> None:
    """Both renderers and the tokenizer under ``checkpoint_dir`` in the released layout, and ``MANIFEST``.

    ``UserError`` (before anything is written) when ``checkpoint_dir`` is, or lies under, a file or cannot be
    written, or (unless ``overwrite``) holds a file to be written that is not the one recorded in its ``MANIFEST``;
    and when a write fails (full disk, permissions), in which case no file of ``checkpoint_dir`` has changed.
    """
    checkpoint_dir = Path(checkpoint_dir)
    check_writable_folder(checkpoint_dir)
    if not overwrite:
        check_nothing_foreign(checkpoint_dir)
    generator = torch.Generator().manual_seed(seed)
    staging = checkpoint_dir / f".tiny-{os.getpid()}"
    try:
        write_dit(staging / INVERSE_MODEL, INVERSE_7B, generator)
        write_dit(staging / FORWARD_MODEL, FORWARD_7B, generator)
        write_tokenizer(staging / TOKENIZER, generator)
        records = {relative: _record(staging / relative) for relative in _tiny_paths()}
        for relative in records:
            (checkpoint_dir / relative).parent.mkdir(exist_ok=True)
            os.replace(staging / relative, checkpoint_dir / relative)
        (checkpoint_dir / MANIFEST).write_text(json.dumps(records, indent=2) + "\n")
    except OSError as err:
        raise UserError(
            f"Cannot write tiny checkpoints to {err.filename or checkpoint_dir}: {err.strerror or err}; check free "
            "space and permissions, or choose another --checkpoint_dir."
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_nothing_foreign(checkpoint_dir: Path) -> None:
    """``UserError`` naming the files to be written that exist in ``checkpoint_dir`` but are not the ones its
    ``MANIFEST`` records (same size and MD5): real checkpoints, or anything else not written here."""
    try:
        records = json.loads((checkpoint_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        records = {}
    if not isinstance(records, dict):
        records = {}
    foreign = [
        checkpoint_dir / relative
        for relative in _tiny_paths()
        if (checkpoint_dir / relative).exists() and not _matches(checkpoint_dir / relative, records.get(relative))
    ]
    if foreign:
        raise UserError(
            f"--checkpoint_dir {checkpoint_dir} holds files that make_tiny_checkpoints.py did not write and would "
            f"overwrite ({', '.join(map(str, foreign))}); choose another folder, or pass --overwrite to replace them."
        )


def _tiny_paths() -> list[str]:
    """``<folder>/<file>`` of every file written."""
    return [f"{folder}/{name}" for folder, names in TINY_FILES.items() for name in names]


def _record(path: Path) -> dict[str, object]:
    """A file's size and MD5, as ``MANIFEST`` holds them."""
    return {"size": path.stat().st_size, "md5": file_md5(path)}


def _matches(path: Path, record: object) -> bool:
    """Whether ``path`` is the file of ``record``: the size first, so that real (large) weights are never read."""
    if not isinstance(record, dict) or not path.is_file():
        return False
    return record.get("size") == path.stat().st_size and record.get("md5") == file_md5(path)


def check_writable_folder(folder: Path) -> None:
    """``UserError`` unless ``folder`` is a folder (or can be created as one) that this process may write."""
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        raise UserError(f"--checkpoint_dir {folder}: {existing} is a file; choose a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"--checkpoint_dir {folder}: {existing} is not writable; fix its permissions or choose another folder."
        )
