"""Context parallelism for the DiT (Ulysses style): the token sequence of one clip is split over a process group.

``install`` sets this up on a built network. With P ranks in the group, rank r holds the N/P consecutive tokens
``[r·N/P, (r+1)·N/P)`` (t-major order) from the patch embedding to the final layer. Everything per token runs on
that shard alone: patch embedding, the absolute embedding and RoPE (their tables are sliced to the same rows),
norms, modulation, the uniform-context cross-attention shortcut, the MLP and the final layer. Only self-attention
needs every token: an all-to-all turns (N/P tokens × all heads) into (all N tokens × heads/P), each rank runs SDPA
on its heads, and a second all-to-all turns the result back. The final layer's output is all-gathered so every rank
holds the whole prediction.

Constraints: P divides the head count (32 in the released models) and the token count N = T'·(H'/2)·(W'/2). Videos
of 57 frames have T' = 8, so N divides by 2, 4 and 8 at every frame size; single images need (H/16)·(W/16) divisible
by P.

Per block and rank the all-to-alls move about 4·B·N·D·(P−1)/P² values (q, k, v out and the attention output back).
"""

from __future__ import annotations

import functools

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def unsupported(heads: int, tokens: int, size: int) -> str | None:
    """Why a group of ``size`` ranks cannot split this attention (None when it can)."""
    if heads % size:
        return f"{size} ranks do not divide the network's {heads} attention heads"
    if tokens % size:
        return f"{size} ranks do not divide the {tokens} tokens of a clip"
    return None


class Shards:
    """The token sequence of one clip split over a process group: this rank's slice, and gathering the slices."""

    def __init__(self, group: dist.ProcessGroup, heads: int) -> None:
        self.group, self.heads = group, heads

    def local(self, tokens: int) -> slice:
        """The token positions this rank holds out of ``tokens``; ValueError if the group cannot split them."""
        size = self.group.size()
        problem = unsupported(self.heads, tokens, size)
        if problem:
            raise ValueError(f"context parallel: {problem}")
        share = tokens // size
        start = self.group.rank() * share
        return slice(start, start + share)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N/P, F]`` on every rank → ``[B, N, F]`` (the ranks' shards in rank order) on every rank."""
        x = x.contiguous()
        shards = [torch.empty_like(x) for _ in range(self.group.size())]
        dist.all_gather(shards, x, group=self.group)
        return torch.cat(shards, dim=1)


def install(network: nn.Module, group: dist.ProcessGroup) -> None:
    """Make ``network`` (a ``DiffusionRendererDiT``) compute each clip together with the other ranks of ``group``:
    it keeps only its share of the tokens, and every block's self-attention runs over the group's whole sequence."""
    network.token_shards = Shards(group, network.config.num_heads)
    for block in network.blocks:
        block.self_attn.attend = functools.partial(attention, group=group)


def _all_to_all(x: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """Exchange the P slices of dim 0: slice j goes to rank j, and slice j of the result came from rank j."""
    x = x.contiguous()
    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=group)
    return out


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """Full self-attention over the group's whole sequence for this rank's tokens.

    Args:
        q, k, v: ``[B, heads, N/P, d]``, this rank's tokens with every head (RoPE already applied).

    Returns:
        ``[B, heads, N/P, d]``: the attention output of this rank's tokens.
    """
    size = group.size()
    batch, heads, tokens, dim = q.shape
    # [3, B, P, heads/P, n, d] → [P, 3, B, heads/P, n, d]: head group j to rank j.
    qkv = torch.stack([q, k, v]).view(3, batch, size, heads // size, tokens, dim).transpose(0, 2).transpose(1, 2)
    qkv = _all_to_all(qkv, group)  # slice j: rank j's tokens of this rank's head group
    q, k, v = qkv.permute(1, 2, 3, 0, 4, 5).reshape(3, batch, heads // size, size * tokens, dim)
    out = F.scaled_dot_product_attention(q, k, v)  # [B, heads/P, N, d]
    out = out.view(batch, heads // size, size, tokens, dim).permute(2, 0, 1, 3, 4)  # [P, B, heads/P, n, d]
    out = _all_to_all(out, group)  # slice j: head group j of this rank's tokens
    return out.permute(1, 0, 2, 3, 4).reshape(batch, heads, tokens, dim)
