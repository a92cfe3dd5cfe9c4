"""The Cosmos DiffusionRenderer DiT (7B by default): one network for both the inverse and the forward renderer.

The network predicts the EDM "F" for a noisy video latent that the sampler has already scaled by c_in. Its
input is the latent concatenated with the renderer's condition latents (and a padding-mask channel), cut into
1×2×2 patches. Each of the 28 blocks adds a fixed sin-cos position embedding and runs self-attention with 3D RoPE,
cross-attention and an MLP, each modulated by AdaLN-LoRA from the noise level.

Context: the inverse renderer replaces the (empty) text context by one learned row per G-buffer, repeated over
all context tokens; the forward renderer's context is all zeros. Both contexts are "uniform" (identical rows), so
the cross-attention output is the same for every token and is computed from one row (``cross_attention_shortcut``;
mathematically exact). A non-uniform context (``crossattn_emb``) takes the full attention path.

Context parallelism is installed on a built network (``context_parallel.install``): ``token_shards`` then cuts the
token sequence into this rank's share and gathers the final layer's output; None (the default) runs everything here.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .config import DiTConfig
from .layers import (
    MLP,
    AdaLNModulation,
    CrossAttention,
    FinalLayer,
    SelfAttention,
    TimestepEmbedding,
    layer_norm,
    modulate,
    rms_norm,
)
from .position_embedding import rope_angles, sincos_embedding, timestep_sinusoid

CONTEXT_TOKENS = 512  # length of the (dummy) text context the original feeds


class TokenShards(Protocol):
    """How a context-parallel group splits the token sequence (``context_parallel.Shards``)."""

    def local(self, tokens: int) -> slice: ...

    def gather(self, x: torch.Tensor) -> torch.Tensor: ...


class Block(nn.Module):
    """Absolute embedding, then self-attention, cross-attention and MLP sub-layers with gated residuals."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        dim, lora = config.model_channels, config.adaln_lora_dim
        self.self_attn = SelfAttention(dim, config.num_heads)
        self.self_attn_adaln = AdaLNModulation(dim, lora, chunks=3)
        self.cross_attn = CrossAttention(dim, config.crossattn_emb_channels, config.num_heads)
        self.cross_attn_adaln = AdaLNModulation(dim, lora, chunks=3)
        self.mlp = MLP(dim, int(dim * config.mlp_ratio))
        self.mlp_adaln = AdaLNModulation(dim, lora, chunks=3)

    def forward(
        self,
        x: torch.Tensor,
        abs_emb: torch.Tensor,
        silu_emb: torch.Tensor,
        lora: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        context: torch.Tensor,
        uniform_context: bool,
    ) -> torch.Tensor:
        """x ``[B, N, D]``; abs_emb ``[N, D]``; context ``[B, 1, D_ctx]`` if uniform else ``[B, L, D_ctx]``."""
        x = x + abs_emb
        shift, scale, gate = self.self_attn_adaln(silu_emb, lora)
        x = x + gate * self.self_attn(modulate(layer_norm(x), shift, scale), *rope)
        shift, scale, gate = self.cross_attn_adaln(silu_emb, lora)
        if uniform_context:
            x = x + gate * self.cross_attn.uniform_context(context)
        else:
            x = x + gate * self.cross_attn(modulate(layer_norm(x), shift, scale), context)
        shift, scale, gate = self.mlp_adaln(silu_emb, lora)
        return x + gate * self.mlp(modulate(layer_norm(x), shift, scale))


class DiffusionRendererDiT(nn.Module):
    """Video DiT of the renderers; ``config`` selects inverse (context embedding) or forward (136 condition ch.)."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.model_channels
        self.patch_embed = nn.Linear(config.patch_embed_in_features, dim, bias=False)
        self.time_embed = TimestepEmbedding(dim)
        self.time_norm = nn.Parameter(torch.ones(dim))
        self.context_embedding = (
            nn.Embedding(config.context_embedding_rows, config.crossattn_emb_channels)
            if config.use_context_embedding
            else None
        )
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_blocks))
        self.final_layer = FinalLayer(dim, config.adaln_lora_dim, config.patch_out_features)
        self.cross_attention_shortcut = True
        self.token_shards: TokenShards | None = None  # set by ``context_parallel.install``
        self._position_tables: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embed.weight.dtype

    def position_tables(
        self, grid: tuple[int, int, int], fps: float, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(abs_emb ``[N, D]`` in the model dtype, RoPE cos and sin float32 ``[N, d]``) for a token grid, cached."""
        key = (grid, fps, device, self.dtype)
        if key not in self._position_tables:
            c = self.config
            fps_tensor = torch.tensor([fps], dtype=torch.float32)
            common = {"dtype": self.dtype, "device": device}
            angles = rope_angles(
                *grid, c.head_dim, fps_tensor, base_fps=c.rope_base_fps, extrapolation_ratios=c.rope_ratios, **common
            )
            abs_emb = sincos_embedding(*grid, c.model_channels, extrapolation_ratios=c.extra_ratios, **common)
            if len(self._position_tables) >= 8:
                self._position_tables.clear()
            self._position_tables[key] = (abs_emb, angles.cos(), angles.sin())
        return self._position_tables[key]

    def patchify(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` → ``[B, T', H', W', C·pt·p·p]`` (feature index channel-major: c, dt, dy, dx)."""
        b, c, t, h, w = video.shape
        p, pt = self.config.patch_spatial, self.config.patch_temporal
        x = video.reshape(b, c, t // pt, pt, h // p, p, w // p, p)
        return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, t // pt, h // p, w // p, c * pt * p * p)

    def unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``[B, N, p·p·pt·C]`` (patch-major: dy, dx, dt, c) → ``[B, C, T, H, W]``."""
        t, h, w = grid
        p, pt, c = self.config.patch_spatial, self.config.patch_temporal, self.config.out_channels
        x = tokens.reshape(tokens.shape[0], t, h, w, p, p, pt, c)
        return x.permute(0, 7, 1, 6, 2, 4, 3, 5).reshape(tokens.shape[0], c, t * pt, h * p, w * p)

    def _context(
        self, batch: int, crossattn_emb: torch.Tensor | None, context_index: torch.Tensor | None, device: torch.device
    ) -> tuple[torch.Tensor, bool]:
        """The cross-attention context and whether its rows are all identical (then only one row is returned)."""
        if self.context_embedding is not None:
            if context_index is None:
                raise ValueError("the inverse renderer network needs context_index (the G-buffer to produce)")
            row = self.context_embedding(context_index.reshape(batch).to(device))[:, None, :].to(self.dtype)
            tokens = CONTEXT_TOKENS if crossattn_emb is None else crossattn_emb.shape[1]
        elif crossattn_emb is None:
            row = torch.zeros(batch, 1, self.config.crossattn_emb_channels, device=device, dtype=self.dtype)
            tokens = CONTEXT_TOKENS
        else:
            return crossattn_emb.to(device=device, dtype=self.dtype), False
        if self.cross_attention_shortcut:
            return row, True
        return row.expand(batch, tokens, -1), False

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        latent_condition: torch.Tensor,
        *,
        fps: float | torch.Tensor = 24.0,
        padding_mask: torch.Tensor | None = None,
        crossattn_emb: torch.Tensor | None = None,
        context_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict F for a batch of scaled noisy latents.

        Args:
            x: ``[B, 16, T', H', W']`` noisy latent already multiplied by c_in; H', W' multiples of the patch size.
            timesteps: c_noise = ¼·ln σ, a scalar or ``[B]`` (the sampler passes it rounded to the model dtype).
            latent_condition: ``[B, additional_concat_ch, T', H', W']`` condition latents (+ mask channels).
            fps: the clip's frame rate for the temporal RoPE positions (the renderers always use 24).
            padding_mask: ``[B, 1, H, W]`` at pixel resolution, 1 = padded; None = no padding (zeros).
            crossattn_emb: ``[B, L, crossattn_emb_channels]`` context; None = the renderers' all-zero context.
            context_index: ``[B]`` or ``[B, 1]`` int, G-buffer row of the inverse network's context embedding.

        Returns:
            ``[B, 16, T', H', W']`` in the model dtype.
        """
        c = self.config
        dtype, device = self.dtype, x.device
        batch, _, frames, height, width = x.shape
        if height % c.patch_spatial or width % c.patch_spatial or frames % c.patch_temporal:
            raise ValueError(f"latent size {frames}×{height}×{width} is not a multiple of the patch size")
        grid = (frames // c.patch_temporal, height // c.patch_spatial, width // c.patch_spatial)
        if any(size > limit for size, limit in zip(grid, c.position_table_grid)):
            raise ValueError(f"latent size {frames}×{height}×{width} exceeds the network's position tables")

        inputs = [x.to(dtype), latent_condition.to(device=device, dtype=dtype)]
        if c.concat_padding_mask:
            if padding_mask is None:
                mask = x.new_zeros(batch, 1, frames, height, width, dtype=dtype)
            else:
                mask = F.interpolate(padding_mask.to(device=device, dtype=dtype), size=(height, width), mode="nearest")
                mask = mask[:, :, None].expand(-1, -1, frames, -1, -1)
            inputs.append(mask)
        patches = self.patchify(torch.cat(inputs, dim=1)).reshape(batch, -1, c.patch_embed_in_features)

        sinusoid = timestep_sinusoid(torch.as_tensor(timesteps, device=device), c.model_channels).to(dtype)
        lora = self.time_embed(sinusoid)
        silu_emb = F.silu(rms_norm(sinusoid, self.time_norm))

        fps_value = float(fps.reshape(-1)[0]) if isinstance(fps, torch.Tensor) else float(fps)
        abs_emb, rope_cos, rope_sin = self.position_tables(grid, fps_value, device)
        if self.token_shards is not None:  # this rank's slice of the token sequence and of its position tables
            span = self.token_shards.local(patches.shape[1])
            patches, abs_emb, rope_cos, rope_sin = patches[:, span], abs_emb[span], rope_cos[span], rope_sin[span]
        tokens = self.patch_embed(patches)
        context, uniform = self._context(batch, crossattn_emb, context_index, device)
        for block in self.blocks:
            tokens = block(tokens, abs_emb, silu_emb, lora, (rope_cos, rope_sin), context, uniform)
        out = self.final_layer(tokens, silu_emb, lora)
        if self.token_shards is not None:
            out = self.token_shards.gather(out)
        return self.unpatchify(out, grid)
