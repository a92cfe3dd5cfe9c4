"""The two renderers: condition latents → batched EDM sampling → decoded videos.

Inverse: one RGB clip → G-buffer videos; all requested passes of a clip are sampled together in one batch, each
with its own context row, from one encoding of the clip. Forward: G-buffer videos + lighting → relit videos; the
G-buffers are encoded once per clip and every requested lighting is sampled in the same batch.

Videos are ``[1, 3, T, H, W]`` in [−1, 1]; latents ``[B, 16, T', H/8, W/8]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from . import compilation, sampler, timing
from .networks import DiffusionRendererDiT
from .networks.acceleration import attention_backends, compile_blocks
from .networks.offload import BlockStreamer
from .options import GBUFFER_INDEX, MODEL_FPS, SamplingOptions

# Order of the forward network's condition blocks (16 latent channels + 1 mask channel each).
FORWARD_GBUFFER_KEYS = ("basecolor", "normal", "metallic", "roughness", "depth")
LIGHTING_KEYS = ("env_ldr", "env_log", "env_nrm")
TOKENS_PER_BATCH = 32768  # automatic batch size: about one 57-frame 704×1280 clip, or nine images

StepCallback = Callable[[int, torch.Tensor], None]


def work_item_noise(shape: Sequence[int], seed: int, *item: object) -> torch.Tensor:
    """Unit Gaussian noise, float32 on CPU, determined only by ``seed`` and the work item's identity.

    The item is e.g. (clip name, chunk index, pass name): the same item gets the same noise whatever else is
    requested in the run and in whatever order items are processed.
    """
    key = "\x1f".join(str(part) for part in (seed, *item)).encode()
    generator = torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1)
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32)


def normalize_normals(video: torch.Tensor) -> torch.Tensor:
    """Blend normal vectors towards unit length: unchanged below norm 0.2, unit above 0.4. ``[..., 3, T, H, W]``.

    Computed in ``video``'s dtype with the original's operations in its order, so that bf16 results match its bits.
    """
    norm = video.norm(dim=-4, keepdim=True)
    unit = video / norm.clamp_min(1e-12)
    blend = ((norm - 0.2) / 0.2).clamp(0, 1)
    return unit * blend + video * (1 - blend)


class Renderer:
    """Shared machinery: device placement (with optional offloading), batched sampling and decoding.

    Work is timed by phase (``timing``); with ``compile``, the first call of a compiled model at a new input shape
    counts as compiling, and is recorded as compiled for the next run's decision (``compilation``).
    """

    def __init__(
        self,
        network: DiffusionRendererDiT,
        tokenizer: nn.Module,
        *,
        device: torch.device | str,
        options: SamplingOptions | None = None,
        offload_network: bool = False,
        offload_tokenizer: bool = False,
    ) -> None:
        self.network, self.tokenizer = network, tokenizer
        self.device = torch.device(device)
        self.dtype = network.dtype
        self.options = options or SamplingOptions()
        self.offload_tokenizer = offload_tokenizer
        self.streamer = BlockStreamer(network, self.device) if offload_network else None
        if not offload_network:
            network.to(self.device)
        tokenizer.to("cpu" if offload_tokenizer else self.device)
        self.compiled = {"dit": False, "tokenizer": False}
        self._compiled_shapes: set[tuple] = set()

    def compile(self, network: bool, tokenizer: bool) -> None:
        """``torch.compile`` the DiT blocks and/or the tokenizer (kernels cached between runs, see ``compilation``)."""
        if not (network or tokenizer):
            return
        compilation.use_cache_folder()
        if network and compile_blocks(self.network):
            self.compiled["dit"] = True
        if tokenizer:
            self.tokenizer.compile()
            self.compiled["tokenizer"] = True

    def compile_identity(self, model: str) -> dict:
        """What a compiled model's kernels depend on besides the input shape (for ``compilation`` markers)."""
        config = self.network.config if model == "dit" else self.tokenizer.vae.config
        gpu = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return {"torch": torch.__version__, "device": gpu, "dtype": str(self.dtype), "config": repr(config)}

    def _first_compiled_call(self, model: str, shape: tuple) -> bool:
        return self.compiled[model] and (model, shape) not in self._compiled_shapes

    def _timed_call(self, phase: str, model: str, shape: tuple, call: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``call()`` timed as ``phase``, or as "compiling" when it is a compiled model's first call at ``shape``."""
        if not self._first_compiled_call(model, shape):
            with timing.phase(phase, self.device):
                return call()
        with timing.phase("compiling", self.device):
            out = call()
        self._compiled_shapes.add((model, shape))
        compilation.mark_warm(model, shape, self.compile_identity(model))
        return out

    @contextlib.contextmanager
    def _tokenizer(self) -> Iterator[nn.Module]:
        """The tokenizer on the compute device for the duration (moved back to the CPU after if offloaded)."""
        if not self.offload_tokenizer:
            yield self.tokenizer
            return
        self.tokenizer.to(self.device)
        try:
            yield self.tokenizer
        finally:
            self.tokenizer.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` in [−1, 1] → model latent ``[B, 16, T', H/8, W/8]`` in the model dtype."""
        with self._tokenizer() as tokenizer, torch.no_grad():
            video = video.to(device=self.device, dtype=self.dtype)
            return self._timed_call("encoding", "tokenizer", ("encode", *video.shape), lambda: tokenizer.encode(video))

    def decode(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Latents ``[B, 16, T', h, w]`` → B videos ``[1, 3, T, H, W]`` in the model dtype, not clamped.

        The model dtype is kept (bf16 on GPUs) so that the 8-bit conversion rounds exactly as the original's does.
        """
        with self._tokenizer() as tokenizer, torch.no_grad():
            shape = ("decode", *latents.shape)
            return list(self._timed_call("decoding", "tokenizer", shape, lambda: tokenizer.decode(latents)).split(1))

    def sample(
        self,
        latent_condition: torch.Tensor,
        noise: torch.Tensor,
        context_index: torch.Tensor | None = None,
        on_step: StepCallback | None = None,
        padding_mask: torch.Tensor | None = None,
        fps: float = MODEL_FPS,
    ) -> torch.Tensor:
        """Sample B latents at once: condition ``[B, C, T', h, w]``, unit noise ``[B, 16, T', h, w]``.

        With guidance g > 0 the unconditional prediction (condition set to zero) runs in the same batch.
        ``padding_mask``: ``[1, 1, H, W]``, 1 where the frames are padding (None: no padding). ``fps``: the clip's
        frame rate as the model sees it (temporal positions).
        """
        guidance = self.options.guidance
        condition = latent_condition.to(device=self.device, dtype=self.dtype)
        index = None if context_index is None else context_index.to(self.device)
        if guidance > 0:
            condition = torch.cat([condition, torch.zeros_like(condition)])
            index = None if index is None else torch.cat([index, index])
        mask = None
        if padding_mask is not None:
            mask = padding_mask.to(self.device).expand(condition.shape[0], -1, -1, -1)

        def evaluate(x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
            return self.network(x_in, c_noise, condition, fps=fps, context_index=index, padding_mask=mask)

        def denoise(x_scaled: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
            x_in = torch.cat([x_scaled, x_scaled]) if guidance > 0 else x_scaled
            shape = tuple(x_in.shape)
            if self._first_compiled_call("dit", shape):  # time the compilation on its own
                before = time.perf_counter()
                out = self._timed_call("sampling", "dit", shape, lambda: evaluate(x_in, c_noise))
                compiling[0] += time.perf_counter() - before
            else:
                out = evaluate(x_in, c_noise)
            if guidance > 0:
                conditional, unconditional = out.chunk(2)
                return conditional + guidance * (conditional - unconditional)
            return out

        compiling = [0.0]
        with attention_backends(self.device), torch.no_grad():
            with timing.phase("sampling", self.device):
                latents = sampler.sample(
                    denoise, noise.to(self.device), self.options.num_steps, dtype=self.dtype, on_step=on_step
                )
            timing.add("sampling", -compiling[0])  # that part was counted as compiling
        return latents

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        """The shape ``[1, 16, T', H/8, W/8]`` of one output's latent for ``frames`` frames of ``height × width``."""
        compression = self.tokenizer.spatial_compression
        channels = self.tokenizer.latent_channels
        return (1, channels, self.tokenizer.latent_frames(frames), height // compression, width // compression)

    def batches(self, count: int, latent_shape: Sequence[int]) -> list[range]:
        """Index ranges of the outputs sampled together, for ``count`` outputs of latent shape ``[1, C, T', h, w]``."""
        size = self.options.max_batch
        if size is None:
            config = self.network.config
            tokens = latent_shape[2] * latent_shape[3] * latent_shape[4]
            tokens //= config.patch_spatial**2 * config.patch_temporal
            size = max(1, TOKENS_PER_BATCH // tokens // (2 if self.options.guidance > 0 else 1))
        return [range(start, min(start + size, count)) for start in range(0, count, size)]


class InverseRenderer(Renderer):
    """RGB video → G-buffer videos."""

    def render(
        self,
        video: torch.Tensor,
        passes: Sequence[str],
        noises: Sequence[torch.Tensor],
        *,
        normalize_normal: bool = False,
        on_step: StepCallback | None = None,
        padding_mask: torch.Tensor | None = None,
        fps: float = MODEL_FPS,
    ) -> dict[str, torch.Tensor]:
        """G-buffers of one clip.

        Args:
            video: ``[1, 3, T, H, W]`` RGB in [−1, 1].
            passes: names from ``GBUFFER_INDEX``.
            noises: one unit-noise latent ``[1, 16, T', H/8, W/8]`` per pass.
            normalize_normal: renormalise the decoded normal vectors (see ``normalize_normals``).
            padding_mask: ``[1, 1, H, W]``, 1 over padded pixels (``--fit pad``); None = no padding.
            fps: the clip's frame rate as the model sees it (24 in the CLI, as in the original).

        Returns:
            pass name → decoded video ``[1, 3, T, H, W]`` in the model dtype, about [−1, 1].
        """
        condition = self.encode(video)
        outputs: dict[str, torch.Tensor] = {}
        for batch in self.batches(len(passes), condition.shape):
            names = [passes[i] for i in batch]
            index = torch.tensor([GBUFFER_INDEX[name] for name in names])
            latents = self.sample(
                condition.expand(len(names), -1, -1, -1, -1),
                torch.cat([noises[i] for i in batch]),
                context_index=index,
                on_step=on_step,
                padding_mask=padding_mask,
                fps=fps,
            )
            for name, decoded in zip(names, self.decode(latents)):
                outputs[name] = normalize_normals(decoded) if name == "normal" and normalize_normal else decoded
        return outputs


def _condition_block(latent: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Latent + mask channel ``[1, 17, T', h, w]``: ones for a present input, all zeros for an absent one."""
    if latent is None:
        return like.new_zeros(like.shape[0], like.shape[1] + 1, *like.shape[2:])
    return torch.cat([latent, torch.ones_like(latent[:, :1])], dim=1)


class ForwardRenderer(Renderer):
    """G-buffer videos + environment lighting → relit RGB videos."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._direction_latents: dict[tuple[int, ...], torch.Tensor] = {}

    def encode_gbuffers(self, gbuffers: dict[str, torch.Tensor]) -> torch.Tensor:
        """The G-buffer part of the condition, ``[1, 5·17, T', h, w]``; absent passes give zero blocks.

        ``gbuffers``: pass name → ``[1, 3, T, H, W]`` in [−1, 1]; at least one of the five passes.
        """
        present = {name: self.encode(video) for name, video in gbuffers.items() if name in FORWARD_GBUFFER_KEYS}
        if not present:
            raise ValueError("the forward renderer needs at least one G-buffer pass")
        like = next(iter(present.values()))
        return torch.cat([_condition_block(present.get(name), like) for name in FORWARD_GBUFFER_KEYS], dim=1)

    def encode_lighting(
        self, lighting: dict[str, torch.Tensor] | None, gbuffer_condition: torch.Tensor
    ) -> torch.Tensor:
        """The lighting part ``[1, 3·17, T', h, w]`` from env_ldr/env_log/env_nrm; None = no lighting (zeros).

        env_nrm (the per-pixel direction map) depends only on the frame size, so its latent is encoded once.
        """
        like = gbuffer_condition[:, : gbuffer_condition.shape[1] // len(FORWARD_GBUFFER_KEYS) - 1]
        if lighting is None:
            return torch.cat([_condition_block(None, like)] * len(LIGHTING_KEYS), dim=1)
        directions = lighting["env_nrm"]
        if tuple(directions.shape) not in self._direction_latents:
            self._direction_latents[tuple(directions.shape)] = self.encode(directions)
        latents = [self.encode(lighting["env_ldr"]), self.encode(lighting["env_log"])]
        latents.append(self._direction_latents[tuple(directions.shape)])
        return torch.cat([_condition_block(latent, like) for latent in latents], dim=1)

    def render(
        self,
        gbuffer_condition: torch.Tensor,
        lighting_conditions: Sequence[torch.Tensor],
        noises: Sequence[torch.Tensor],
        *,
        on_step: StepCallback | None = None,
        padding_mask: torch.Tensor | None = None,
        fps: float = MODEL_FPS,
    ) -> list[torch.Tensor]:
        """Relit videos of one clip, one per lighting.

        Args:
            gbuffer_condition: ``encode_gbuffers(...)`` of the clip.
            lighting_conditions: ``encode_lighting(...)`` per output.
            noises: one unit-noise latent ``[1, 16, T', h, w]`` per output.
            padding_mask: ``[1, 1, H, W]``, 1 over padded pixels (``--fit pad``); None = no padding.
            fps: the clip's frame rate as the model sees it (24 in the CLI, as in the original).

        Returns:
            decoded videos ``[1, 3, T, H, W]`` in the model dtype, in the order of ``lighting_conditions``.
        """
        outputs: list[torch.Tensor] = []
        for batch in self.batches(len(lighting_conditions), gbuffer_condition.shape):
            condition = torch.cat([torch.cat([gbuffer_condition, lighting_conditions[i]], dim=1) for i in batch])
            latents = self.sample(
                condition, torch.cat([noises[i] for i in batch]), on_step=on_step, padding_mask=padding_mask, fps=fps
            )
            outputs.extend(self.decode(latents))
        return outputs
