"""Speed switches for the DiT that leave the computed function unchanged (up to float rounding).

- ``attention_backends``: the order in which ``scaled_dot_product_attention`` tries its kernels; on Hopper the
  cuDNN kernel is the fastest for the DiT's 128-wide heads.
- ``compile_blocks``: ``torch.compile`` of each transformer block's forward (regional compilation: 28 identical
  blocks compile once), fusing the norms, modulation, RoPE and residual arithmetic around the matrix products.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .dit import DiffusionRendererDiT

log = logging.getLogger(__name__)

FAST_ATTENTION_ORDER = [
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.MATH,
]


@contextlib.contextmanager
def attention_backends(device: torch.device) -> Iterator[None]:
    """Prefer cuDNN, then flash, then memory-efficient attention on CUDA; PyTorch's default elsewhere."""
    if device.type != "cuda":
        yield
        return
    with sdpa_kernel(FAST_ATTENTION_ORDER, set_priority=True):
        yield


def compile_blocks(network: DiffusionRendererDiT) -> bool:
    """Compile every block's forward in place; returns False (and changes nothing) where compiling is unavailable.

    Only ``forward`` is compiled, so module hooks (block streaming) keep running eagerly around it.
    """
    try:
        import torch._inductor  # noqa: F401  (fails on builds without the compiler stack)
    except Exception as err:  # pragma: no cover - depends on the installation
        log.warning("torch.compile unavailable (%s); running uncompiled", err)
        return False
    torch._dynamo.config.suppress_errors = True  # a failing compile falls back to eager instead of stopping the run
    for block in network.blocks:
        block.forward = torch.compile(block.forward, dynamic=False, fullgraph=True)
    return True
