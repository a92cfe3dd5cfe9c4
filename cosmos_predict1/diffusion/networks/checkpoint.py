"""Reading and writing the released ``model.pt`` layout of the renderer DiT.

The released files name the network's weights ``net.<original name>`` (q, k and v as separate matrices). This
module maps them to this implementation's names (q, k, v fused), checks that every weight is there with the right
shape, and loads them straight into the target dtype and device, one tensor at a time. The file is read as tensors
and plain data only (``cosmos_predict1.safe_load``), so a crafted ``model.pt`` cannot run code while it loads.
"""

from __future__ import annotations

import re
from pathlib import Path
from pickle import UnpicklingError
from typing import Any

import torch

from cosmos_predict1.errors import UserError
from cosmos_predict1.release import missing_file, redownload_hint
from cosmos_predict1.safe_load import UNSAFE_OPTION, load_torch_file
from cosmos_predict1.weights import check_finite

from .config import DiTConfig, load_config
from .dit import DiffusionRendererDiT
from .transfer import to_device

# This implementation's key -> the original keys it is made of (concatenated along dim 0).
_TOP_LEVEL = {
    "patch_embed.weight": ["x_embedder.proj.1.weight"],
    "time_embed.linear_1.weight": ["t_embedder.1.linear_1.weight"],
    "time_embed.linear_2.weight": ["t_embedder.1.linear_2.weight"],
    "time_norm": ["affline_norm.weight"],
    "context_embedding.weight": ["context_embedding.weight"],
    "final_layer.linear.weight": ["final_layer.linear.weight"],
    "final_layer.adaln.down.weight": ["final_layer.adaLN_modulation.1.weight"],
    "final_layer.adaln.up.weight": ["final_layer.adaLN_modulation.2.weight"],
}
_PER_BLOCK = {
    "self_attn.qkv.weight": [f"blocks.0.block.attn.to_{n}.0.weight" for n in "qkv"],
    "self_attn.q_norm": ["blocks.0.block.attn.to_q.1.weight"],
    "self_attn.k_norm": ["blocks.0.block.attn.to_k.1.weight"],
    "self_attn.out.weight": ["blocks.0.block.attn.to_out.0.weight"],
    "self_attn_adaln.down.weight": ["blocks.0.adaLN_modulation.1.weight"],
    "self_attn_adaln.up.weight": ["blocks.0.adaLN_modulation.2.weight"],
    "cross_attn.q.weight": ["blocks.1.block.attn.to_q.0.weight"],
    "cross_attn.kv.weight": [f"blocks.1.block.attn.to_{n}.0.weight" for n in "kv"],
    "cross_attn.q_norm": ["blocks.1.block.attn.to_q.1.weight"],
    "cross_attn.k_norm": ["blocks.1.block.attn.to_k.1.weight"],
    "cross_attn.out.weight": ["blocks.1.block.attn.to_out.0.weight"],
    "cross_attn_adaln.down.weight": ["blocks.1.adaLN_modulation.1.weight"],
    "cross_attn_adaln.up.weight": ["blocks.1.adaLN_modulation.2.weight"],
    "mlp.fc1.weight": ["blocks.2.block.layer1.weight"],
    "mlp.fc2.weight": ["blocks.2.block.layer2.weight"],
    "mlp_adaln.down.weight": ["blocks.2.adaLN_modulation.1.weight"],
    "mlp_adaln.up.weight": ["blocks.2.adaLN_modulation.2.weight"],
}
# Network entries of the original that carry no weights of this implementation (recomputed or unused).
_IGNORED = re.compile(r"(^|\.)_extra_state$|^pos_embedder\.|^extra_pos_embedder\.")


def released_names(key: str) -> list[str]:
    """The original (``net.``-less) names of the tensors that make up this implementation's ``key``."""
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
    if match:
        return [f"blocks.block{match[1]}.{name}" for name in _PER_BLOCK[match[2]]]
    return list(_TOP_LEVEL[key])


def to_released_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This implementation's state dict in the released layout (``net.`` prefix, q/k/v split)."""
    released: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        names = released_names(key)
        for name, part in zip(names, tensor.chunk(len(names), dim=0)):
            released[f"net.{name}"] = part.clone()
    return released


def _read_checkpoint(path: Path, allow_pickle: bool) -> Any:
    """The content of ``model.pt``, memory-mapped where possible, built from tensors and plain data only.

    What that allows (transformer-engine ``_extra_state`` blobs included) is stated in ``cosmos_predict1.safe_load``;
    a file that would call anything else is refused in one line, and only ``allow_pickle`` unpickles it fully.
    """
    try:
        return load_torch_file(path, allow_unsafe=allow_pickle, mmap=True)
    except UserError:
        raise
    except Exception as err:  # a damaged file fails in many ways (zip, pickle, records); all mean unreadable
        raise _corrupt(path, err) from err


def _corrupt(path: Path, err: BaseException) -> UserError:
    """The one-line error for an unreadable ``model.pt``; a pickle the safe loader cannot follow (``pickle``
    protocol 4+, say) may also be a custom file, which only ``--allow_unsafe_checkpoint`` reads."""
    trusted = f", or, only if you trust it as it is, rerun with {UNSAFE_OPTION}"
    custom = trusted if isinstance(err, UnpicklingError) else ""
    return UserError(
        f"{path}: cannot be read as a PyTorch checkpoint ({type(err).__name__}); the file is corrupt or "
        f"incomplete: {redownload_hint(path)}{custom}."
    )


def network_state_dict(checkpoint: Any, source: str) -> dict[str, torch.Tensor]:
    """The network's tensors under original names without ``net.``, from any layout the original accepts.

    Layouts: ``{"model": sd}``, ``{"ema": sd}`` (EMA keys with '-' for '.'), or ``sd`` itself; keys with or
    without the ``net.`` prefix (with it, entries outside ``net.`` such as ``logvar.*`` are ignored).
    """
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]
    elif isinstance(checkpoint, dict) and isinstance(checkpoint.get("ema"), dict):
        checkpoint = {key.replace("-", "."): value for key, value in checkpoint["ema"].items()}
    if not isinstance(checkpoint, dict):
        raise UserError(f"{source}: not a state dict (found {type(checkpoint).__name__}).")
    prefixed = any(key.startswith("net.") for key in checkpoint)
    state = {}
    for key, value in checkpoint.items():
        if prefixed:
            if not key.startswith("net."):
                continue
            key = key[len("net.") :]
        elif key.startswith("logvar."):
            continue
        if _IGNORED.search(key) or not isinstance(value, torch.Tensor):
            continue
        state[key] = value
    return state


def load_network_weights(
    model: DiffusionRendererDiT,
    released: dict[str, torch.Tensor],
    source: str,
    *,
    device: torch.device | str,
    dtype: torch.dtype,
) -> None:
    """Fill ``model`` (possibly on the meta device) from released-name tensors: all names and shapes are checked
    first (strict), then the tensors are copied and cast (``transfer.to_device``) and checked to be finite, on
    their device (``cosmos_predict1.weights``)."""
    missing, mismatched, used = [], [], set()
    sources: list[tuple[str, list[torch.Tensor]]] = []
    for key, target in model.state_dict().items():
        names = released_names(key)
        if any(name not in released for name in names):
            missing.extend(name for name in names if name not in released)
            continue
        parts = [released[name] for name in names]
        used.update(names)
        shape = (sum(part.shape[0] for part in parts), *parts[0].shape[1:]) if parts[0].ndim else parts[0].shape
        if tuple(shape) != tuple(target.shape) or any(part.shape[1:] != parts[0].shape[1:] for part in parts):
            mismatched.append(f"{'+'.join(names)} {list(shape)} (expected {list(target.shape)})")
            continue
        sources.append((key, parts))
    unexpected = sorted(set(released) - used)
    if missing or mismatched or unexpected:
        problems = []
        for label, items in (("missing", missing), ("wrong shape", mismatched), ("unexpected", unexpected)):
            if items:
                problems.append(f"{len(items)} {label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}")
        raise UserError(
            f"{source}: does not match the network configuration ({'; '.join(problems)}). Is it the right "
            "model (inverse vs forward), and does config.json describe it? If so, the file is damaged: "
            f"{redownload_hint(source)}."
        )
    weights = to_device(sources, device, dtype)
    check_finite(weights, source, f"the file is damaged: {redownload_hint(source)}")
    model.load_state_dict(weights, assign=True)


def build_network(
    model_dir: Path,
    base: DiTConfig,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    allow_pickle: bool = False,
) -> DiffusionRendererDiT:
    """The DiT of ``model_dir`` (``model.pt`` + optional ``config.json``) in ``dtype`` on ``device``, eval mode.

    The network is created on the meta device and its weights are assigned straight from the (memory-mapped)
    checkpoint, so no random 7B weights are ever allocated.
    """
    model_dir = Path(model_dir)
    config = load_config(model_dir, base)
    path = model_dir / "model.pt"
    if not path.is_file():
        raise missing_file(path)
    released = network_state_dict(_read_checkpoint(path, allow_pickle), str(path))
    with torch.device("meta"):
        model = DiffusionRendererDiT(config)
    load_network_weights(model, released, str(path), device=device, dtype=dtype)
    return model.eval().requires_grad_(False)
