"""The video tokenizer as the renderers use it: RGB video ⇄ the normalised latent the diffusion model works with.

Follows the original: videos are cut into chunks of ``pixel_chunk_duration`` frames encoded independently (each
chunk restarts the causal network: its first frame is encoded as an image), latents are normalised per channel
and per latent frame (``mean_std.pt``) or, for single images, per channel (``image_mean_std.pt``), then scaled
by sigma_data = 0.5. Statistics are kept in the network's dtype (bf16-rounded for a bf16 network, as the
original keeps them); the arithmetic runs in the caller's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKLCosmos
from torch import nn

from cosmos_predict1.errors import UserError
from cosmos_predict1.release import missing_file, redownload_hint
from cosmos_predict1.safe_load import load_torch_file

from .attention import use_framewise_attention
from .convert import (
    DIFFUSERS_WEIGHTS,
    build_vae,
    load_diffusers_weights,
    load_released_weights,
)
from .names import infer_config

SIGMA_DATA = 0.5
VIDEO_STATISTICS = "mean_std.pt"
IMAGE_STATISTICS = "image_mean_std.pt"

Statistics = tuple[torch.Tensor, torch.Tensor]


class VideoTokenizer(nn.Module):
    """Cosmos-Tokenize1-CV8x8x8 around diffusers' ``AutoencoderKLCosmos`` (8× in time, 8×8 in space, 16 channels).

    ``video_statistics``: (mean, std) with ``latent_channels × N`` values, channel-major (N latent frames ≥ the
    latent frames of one chunk); ``image_statistics``: (mean, std) with ``latent_channels`` values.
    """

    def __init__(
        self,
        vae: AutoencoderKLCosmos,
        video_statistics: Statistics,
        image_statistics: Statistics,
        pixel_chunk_duration: int = 57,
    ) -> None:
        super().__init__()
        step = vae.config.temporal_compression_ratio
        if pixel_chunk_duration < 2 or (pixel_chunk_duration - 1) % step:
            raise UserError(
                f"pixel_chunk_duration {pixel_chunk_duration}: must be 1 + {step}·k frames, k ≥ 1 (e.g. 57)"
            )
        self.vae = vae
        use_framewise_attention(vae)
        self.pixel_chunk_duration = pixel_chunk_duration
        self.latent_chunk_duration = (pixel_chunk_duration - 1) // step + 1
        channels, frames = self.latent_channels, self.latent_chunk_duration
        available, remainder = divmod(video_statistics[0].numel(), channels)
        if remainder or available < frames:
            raise UserError(
                f"video latent statistics of {video_statistics[0].numel()} values: need {channels}·N with N ≥ "
                f"{frames}, the latent frames of a {pixel_chunk_duration}-frame chunk"
            )
        if image_statistics[0].numel() != channels:
            raise UserError(f"image latent statistics of {image_statistics[0].numel()} values: need {channels}")
        for kind, (mean, std), frames_used in (("video", video_statistics, frames), ("image", image_statistics, 1)):
            for name, values in (("mean", mean), ("std", std)):
                table = values.reshape(channels, -1)[:, :frames_used].reshape(1, channels, frames_used, 1, 1)
                self.register_buffer(f"{kind}_{name}", table.to(vae.device, vae.dtype), persistent=False)

    def compile(self) -> None:
        """``torch.compile`` the encoder and decoder in place (fuses the per-frame GroupNorms and activations
        around the convolutions: about 2–3× faster on an H100 and less memory; same function up to rounding)."""
        for network in (self.vae.encoder, self.vae.decoder):
            network.forward = torch.compile(network.forward, dynamic=False)

    @property
    def spatial_compression(self) -> int:
        return self.vae.config.spatial_compression_ratio

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames of a ``num_frames`` video: 1 for an image, else L per chunk of P frames."""
        chunk = self.pixel_chunk_duration
        if num_frames == 1:
            return 1
        if num_frames < 1 or num_frames % chunk:
            raise UserError(f"{num_frames} frames: the tokenizer takes 1 or a multiple of {chunk} ({chunk}, ...)")
        return num_frames // chunk * self.latent_chunk_duration

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` RGB in [−1, 1] (T = 1 or a multiple of P; H, W multiples of 8) → the model latent
        ``[B, 16, T', H/8, W/8]`` (normalised, × 0.5) in ``video``'s dtype."""
        self._check(video, "video", 3, self.pixel_chunk_duration, self.spatial_compression)
        mean, std = self._statistics(video.shape[2] == 1, video.dtype)

        def encode_chunk(chunk: torch.Tensor) -> torch.Tensor:
            raw = self.vae.encode(chunk.to(self.vae.dtype)).latent_dist.mode().to(video.dtype)
            return (raw - mean) / std

        return _chunkwise(video, self.pixel_chunk_duration, encode_chunk) * SIGMA_DATA

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """The model latent ``[B, 16, T', h, w]`` (T' = 1 or a multiple of L) → video ``[B, 3, T, 8h, 8w]``,
        roughly in [−1, 1] but not clamped, in ``latent``'s dtype."""
        self._check(latent, "latent", self.latent_channels, self.latent_chunk_duration, 1)
        mean, std = self._statistics(latent.shape[2] == 1, latent.dtype)

        def decode_chunk(chunk: torch.Tensor) -> torch.Tensor:
            raw = (chunk * std + mean).to(self.vae.dtype)
            return self.vae.decode(raw).sample.to(latent.dtype)

        return _chunkwise(latent / SIGMA_DATA, self.latent_chunk_duration, decode_chunk)

    def _statistics(self, image: bool, dtype: torch.dtype) -> Statistics:
        mean, std = (self.image_mean, self.image_std) if image else (self.video_mean, self.video_std)
        return mean.to(dtype), std.to(dtype)

    @staticmethod
    def _check(x: torch.Tensor, what: str, channels: int, chunk: int, multiple: int) -> None:
        shape = tuple(x.shape)
        if (
            len(shape) == 5
            and shape[1] == channels
            and (shape[2] == 1 or shape[2] % chunk == 0)
            and shape[3] % multiple == 0
            and shape[4] % multiple == 0
        ):
            return
        sizes = f"; H and W multiples of {multiple}" if multiple > 1 else ""
        raise UserError(
            f"{what} of shape {list(shape)}: the tokenizer takes [B, {channels}, T, H, W] with T = 1 or a multiple "
            f"of {chunk} ({chunk}, {2 * chunk}, ...){sizes}"
        )


def _chunkwise(x: torch.Tensor, length: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn`` on each ``[1, C, length, H, W]`` piece of ``x`` (one sample, one time chunk at a time), reassembled.

    Single frames (images) are small and go through in one batch, which keeps the GPU busy.
    """
    if x.shape[2] == 1:
        return fn(x)
    return torch.cat([torch.cat([fn(c) for c in sample.split(length, dim=2)], dim=2) for sample in x.split(1)])


def load_tokenizer(
    folder: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    pixel_chunk_duration: int = 57,
    allow_unsafe: bool = False,
) -> VideoTokenizer:
    """The tokenizer of a checkpoint folder, in ``dtype`` on ``device``.

    Released layout: ``encoder.jit``, ``decoder.jit``, ``mean_std.pt``, ``image_mean_std.pt``. Diffusers layout:
    ``config.json`` + ``diffusion_pytorch_model.safetensors``, with statistics from the two ``.pt`` files where
    present, else from the config's ``latents_mean``/``latents_std`` (their first latent frame for images).
    Every file is read as tensors and plain data (``cosmos_predict1.safe_load``); a file that would run code is
    refused in one line. ``allow_unsafe`` (``--allow_unsafe_checkpoint``) unpickles the ``.pt`` files fully and
    loads the ``.jit`` files with ``torch.jit.load``, which runs their code: only for files the user trusts.
    """
    folder = Path(folder)
    if (folder / DIFFUSERS_WEIGHTS).is_file():
        config, state = load_diffusers_weights(folder)
        video, image = _diffusers_statistics(folder, config, allow_unsafe)
    else:
        video = _read_statistics(folder / VIDEO_STATISTICS, allow_unsafe)
        image = _read_statistics(folder / IMAGE_STATISTICS, allow_unsafe)
        state = load_released_weights(folder, allow_unsafe)
        config = infer_config(state)
    vae = build_vae(config, state, device=device, dtype=dtype)
    return VideoTokenizer(vae, video, image, pixel_chunk_duration)


def _read_statistics(path: Path, allow_unsafe: bool) -> Statistics:
    """(mean, std) of a statistics file as float32 vectors, read as plain data unless ``allow_unsafe``."""
    if not path.is_file():
        raise missing_file(path)
    try:
        pair = load_torch_file(path, allow_unsafe=allow_unsafe)
    except UserError:
        raise
    except Exception as err:  # any other failure means an unreadable file
        raise UserError(f"{path}: unreadable ({type(err).__name__}); {redownload_hint(path)}") from err
    if not (
        isinstance(pair, (tuple, list))
        and len(pair) == 2
        and all(isinstance(t, torch.Tensor) for t in pair)
        and pair[0].shape == pair[1].shape
    ):
        raise UserError(f"{path}: expected a (mean, std) pair of equal-sized tensors; {redownload_hint(path)}")
    return _checked_statistics(pair[0], pair[1], path, redownload_hint(path))


def _checked_statistics(mean: object, std: object, source: Path, fix: str) -> Statistics:
    """(mean, std) as float32 vectors; ``UserError`` naming ``source`` and ``fix`` unless every mean is finite and
    every std finite and positive (a NaN, or a division by zero, would spread over the whole output)."""
    mean, std = torch.as_tensor(mean).float().flatten(), torch.as_tensor(std).float().flatten()
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
        raise UserError(f"{source}: the latent statistics hold NaN, infinite or non-positive std values; {fix}.")
    return mean, std


def _diffusers_statistics(folder: Path, config: dict, allow_unsafe: bool) -> tuple[Statistics, Statistics]:
    """(video, image) statistics of a diffusers-format folder: the ``.pt`` files where present, else the config."""
    video_file, image_file = folder / VIDEO_STATISTICS, folder / IMAGE_STATISTICS
    if video_file.is_file():
        video = _read_statistics(video_file, allow_unsafe)
    elif config.get("latents_mean") is not None and config.get("latents_std") is not None:
        fix = "correct latents_mean/latents_std or add mean_std.pt"
        video = _checked_statistics(config["latents_mean"], config["latents_std"], folder / "config.json", fix)
    else:
        raise UserError(f"{video_file}: missing, and {folder / 'config.json'} has no latents_mean/latents_std")
    if image_file.is_file():
        return video, _read_statistics(image_file, allow_unsafe)
    channels = config.get("latent_channels", 16)
    return video, (video[0].reshape(channels, -1)[:, 0], video[1].reshape(channels, -1)[:, 0])
