"""Writing a tokenizer as a TorchScript pair in the released layout (``encoder.jit`` + ``decoder.jit``).

Used for reduced checkpoints in tests: the files behave like the released ones towards the loader. Their
``state_dict()`` has exactly the released names (Haar patcher buffers included), ``encoder(video)`` returns
``(latent, (zeros1, zeros1))`` and ``decoder(latent)`` the video.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from diffusers import AutoencoderKLCosmos
from torch import nn

from .attention import stock_spatial_attention
from .convert import build_vae
from .names import DECODER_FILE, ENCODER_FILE, infer_config, released_file, released_tensors, released_to_diffusers

# Example sizes for tracing (frames, height, width); the traces do not freeze them. The latent has more than one
# frame so that the decoder's temporal upsampling is traced.
_VIDEO_EXAMPLE = (9, 32, 32)
_LATENT_EXAMPLE = (2, 4, 4)


class _ReleasedLayout(nn.Module):
    """A module tree holding the given tensors (shared, not copied) under their released names.

    Tracing ``run`` through it records every use of these tensors as an attribute of this tree, so the saved
    file's ``state_dict()`` has the released names. ``run`` itself (the diffusers network) is not a submodule.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], run: Callable[[torch.Tensor], object]) -> None:
        super().__init__()
        for name, tensor in tensors.items():
            *path, leaf = name.split(".")
            owner: nn.Module = self
            for part in path:
                if part not in owner._modules:
                    owner.add_module(part, nn.Module())
                owner = owner._modules[part]
            if isinstance(tensor, nn.Parameter):
                owner.register_parameter(leaf, tensor)
            else:
                owner.register_buffer(leaf, tensor)
        self.run = run

    def forward(self, x: torch.Tensor) -> object:
        return self.run(x)


def export_jit_pair(
    source: AutoencoderKLCosmos | tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]], folder: str | Path
) -> None:
    """Trace ``source`` into ``folder/encoder.jit`` and ``folder/decoder.jit``.

    ``source``: a network (traced in its own dtype and device), or (encoder, decoder) state dicts under the
    released names, built into a float32 CPU network.
    """
    folder = Path(folder)
    if isinstance(source, AutoencoderKLCosmos):
        vae = source
    else:
        state = released_to_diffusers({**source[0], **source[1]})
        vae = build_vae(infer_config(state), state, device="cpu", dtype=torch.float32)
    tensors = released_tensors(vae)

    def encode(video: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        placeholder = torch.zeros(1)
        return vae.encode(video).latent_dist.mode(), (placeholder, placeholder)

    def decode(latent: torch.Tensor) -> torch.Tensor:
        return vae.decode(latent).sample

    like = {"device": vae.device, "dtype": vae.dtype}
    parts = {
        ENCODER_FILE: (encode, torch.zeros(1, vae.config.in_channels, *_VIDEO_EXAMPLE, **like)),
        DECODER_FILE: (decode, torch.zeros(1, vae.config.latent_channels, *_LATENT_EXAMPLE, **like)),
    }
    folder.mkdir(parents=True, exist_ok=True)
    with stock_spatial_attention(vae), torch.no_grad(), warnings.catch_warnings():
        # diffusers turns a few sizes into Python numbers; they are the same for every valid input
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        for file, (run, example) in parts.items():
            layout = _ReleasedLayout({k: t for k, t in tensors.items() if released_file(k) == file}, run)
            traced = torch.jit.trace(layout, example, check_trace=False)
            torch.jit.save(traced, str(folder / file))
