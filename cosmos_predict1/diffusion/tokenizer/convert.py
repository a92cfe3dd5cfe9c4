"""Tokenizer weights from a checkpoint folder into diffusers' ``AutoencoderKLCosmos``.

Two folder layouts are read:
- released: ``encoder.jit`` + ``decoder.jit`` (TorchScript; only their tensors are used). Renaming these
  takes a while for the full-size files, so the renamed tensors are cached as safetensors in :func:`cache_dir`,
  keyed by the files' absolute paths, sizes and modification times. The checkpoint folder is never written.
- diffusers: ``config.json`` + ``diffusion_pytorch_model.safetensors``.
Weights are checked strictly (every name, every shape) before anything is built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLCosmos
from diffusers.models.autoencoders.autoencoder_kl_cosmos import CosmosPatchEmbed3d, CosmosUnpatcher3d
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cosmos_predict1.release import download_command
from cosmos_predict1.errors import UserError

from .names import (
    DECODER_FILE,
    ENCODER_FILE,
    infer_config,
    released_file,
    released_tensors,
    released_to_diffusers,
)

DIFFUSERS_CONFIG = "config.json"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
_CACHE_FORMAT = "tokenizer-diffusers-v1"  # change when the cached content changes

log = logging.getLogger(__name__)


def redownload_hint(path: Path) -> str:
    """``re-download it with: <command>`` for a file inside ``<checkpoint_dir>/<tokenizer folder>/``."""
    return f"re-download it with: {download_command(str(path.parent.parent))}"


def read_jit_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a TorchScript file under its module names, on the CPU, in the dtype they were saved in."""
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, OSError, ValueError) as err:
        raise UserError(
            f"{path}: cannot be read as a TorchScript file ({type(err).__name__}); {redownload_hint(path)}"
        ) from err
    return {name: tensor.detach() for name, tensor in module.state_dict().items()}


def check_tensors(found: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size], path: Path) -> None:
    """Raise a one-line ``UserError`` naming ``path`` unless ``found`` has exactly the expected names and shapes."""
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    wrong = [
        f"{name} {list(found[name].shape)} (expected {list(expected[name])})"
        for name in sorted(expected.keys() & found.keys())
        if found[name].shape != expected[name]
    ]
    problems = [
        f"{len(items)} {label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        if items
    ]
    if problems:
        raise UserError(f"{path}: not the expected tokenizer weights ({'; '.join(problems)}); {redownload_hint(path)}")


def _meta_vae(config: Mapping[str, Any]) -> AutoencoderKLCosmos:
    with torch.device("meta"):
        return AutoencoderKLCosmos.from_config(dict(config))


def build_vae(
    config: Mapping[str, Any], state: Mapping[str, torch.Tensor], *, device: torch.device | str, dtype: torch.dtype
) -> AutoencoderKLCosmos:
    """The network in ``dtype`` on ``device``, eval mode, from diffusers-named weights (checked already).

    Entries for the Haar buffers (``*.wavelets``, ``*._arange``) replace diffusers' defaults: the released files
    carry the taps the original computes with. The network is created on the meta device and takes the weights
    by assignment, so no random weights are ever allocated.
    """
    vae = _meta_vae(config)
    buffers = {name for name, _ in vae.named_buffers()}
    weights = {name: t.to(device=device, dtype=dtype) for name, t in state.items() if name not in buffers}
    vae.load_state_dict(weights, strict=True, assign=True)
    # The (un)patchers hold only non-persistent buffers, which the meta-device build left without values.
    vae.encoder.patch_embed = CosmosPatchEmbed3d(vae.config.patch_size, vae.config.patch_type)
    vae.decoder.unpatch_embed = CosmosUnpatcher3d(vae.config.patch_size, vae.config.patch_type)
    with torch.no_grad():
        for name in buffers & state.keys():
            vae.get_buffer(name).copy_(state[name])
    for patcher in (vae.encoder.patch_embed, vae.decoder.unpatch_embed):
        patcher.to(device=device, dtype=dtype)
    return vae.eval().requires_grad_(False)


def cache_dir() -> Path:
    """``$COSMOS_CACHE_DIR``, else ``$XDG_CACHE_HOME/cosmos_predict1``, else ``~/.cache/cosmos_predict1``."""
    if os.environ.get("COSMOS_CACHE_DIR"):
        return Path(os.environ["COSMOS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cosmos_predict1"


def _cache_path(sources: list[Path]) -> Path:
    stats = [(str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns) for path in sources]
    key = hashlib.sha256(json.dumps([_CACHE_FORMAT, stats]).encode()).hexdigest()[:32]
    return cache_dir() / "tokenizer" / f"{key}.safetensors"


def _read_cache(path: Path) -> dict[str, torch.Tensor] | None:
    try:
        return load_file(path)
    except FileNotFoundError:
        return None
    except (OSError, SafetensorError) as err:
        log.warning("ignoring unreadable tokenizer cache %s (%s)", path, err)
        return None


def _write_cache(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    """Write atomically (temporary file, then rename); an unwritable cache only costs the next load time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        os.close(handle)
        try:
            save_file({name: t.contiguous() for name, t in state.items()}, temporary)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    except OSError as err:
        log.warning("not caching the converted tokenizer weights in %s (%s)", path.parent, err)


def _require(path: Path) -> Path:
    if not path.is_file():
        raise UserError(f"{path}: missing; download the tokenizer with: {download_command(str(path.parent.parent))}")
    return path


def load_released_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Diffusers-named tensors of ``encoder.jit`` + ``decoder.jit`` in ``folder`` (Haar buffers included), in
    the dtype they were saved in; from the conversion cache when it holds these exact files."""
    sources = [_require(folder / ENCODER_FILE), _require(folder / DECODER_FILE)]
    cache = _cache_path(sources)
    cached = _read_cache(cache)
    if cached is not None:
        return cached
    released = {path.name: read_jit_state_dict(path) for path in sources}
    state = released_to_diffusers(released[ENCODER_FILE] | released[DECODER_FILE])
    try:
        config = infer_config(state)
    except KeyError as err:
        raise UserError(
            f"{folder}: {ENCODER_FILE}/{DECODER_FILE} do not hold a Cosmos video tokenizer (no {err}); "
            f"{redownload_hint(sources[0])}"
        ) from None
    expected = released_tensors(_meta_vae(config))
    for path in sources:
        shapes = {name: t.shape for name, t in expected.items() if released_file(name) == path.name}
        check_tensors(released[path.name], shapes, path)
    _write_cache(cache, state)
    return state


def load_diffusers_weights(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, weights) of a diffusers-format folder, checked strictly against the config."""
    config_path, weights_path = _require(folder / DIFFUSERS_CONFIG), _require(folder / DIFFUSERS_WEIGHTS)
    try:
        config = json.loads(config_path.read_text())
        state = load_file(weights_path)
    except (OSError, ValueError, SafetensorError) as err:
        raise UserError(f"{folder}: unreadable diffusers tokenizer ({type(err).__name__}: {err})") from None
    if config.get("_class_name", AutoencoderKLCosmos.__name__) != AutoencoderKLCosmos.__name__:
        raise UserError(f"{config_path}: describes a {config['_class_name']}, not an {AutoencoderKLCosmos.__name__}")
    check_tensors(state, {name: t.shape for name, t in _meta_vae(config).state_dict().items()}, weights_path)
    return config, state
