"""Model assembly: from ``ModelOptions`` to a ready renderer — device and dtype, loading the DiT and the tokenizer,
offloading, FP8, compilation and context parallelism; and before it, the checks that read no weights and the lines
that say what will load (``check_model``, ``describe_loading``).

Everything that is installed on a built network happens here, in this order: load (on the CPU when offloaded),
context parallelism (under torchrun with ``--context_parallel_size``), FP8 layers, compilation.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch

from cosmos_predict1.errors import UserError

from . import distributed
from .compilation import describe_choice
from .networks import DiffusionRendererDiT, DiTConfig, build_network, context_parallel
from .networks.config import check_clip_shape
from .networks.fp8 import use_fp8
from .options import TOKENIZER_CHUNK, ModelOptions, SamplingOptions
from .renderer import Renderer

if TYPE_CHECKING:
    from .tokenizer import VideoTokenizer


def compute_device(name: str) -> torch.device:
    """The requested device, checked: a missing GPU is a clear error, not a crash deep inside.

    Under torchrun, ``cuda`` means ``cuda:LOCAL_RANK``.
    """
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"--device {name}: not a device name ({err}).") from err
    if device.type == "cuda" and distributed.layout().world_size > 1:
        if device.index is not None:
            raise UserError(f"--device {name}: under torchrun use --device cuda; each rank takes cuda:LOCAL_RANK.")
        device = torch.device("cuda", distributed.layout().local_rank)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                "--device cuda: no CUDA GPU is available; use --device cpu (practical for tiny models only)."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) present.")
    elif device.type != "cpu":
        raise UserError(f"--device {name}: use cuda, cuda:N or cpu.")
    return device


def model_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on GPUs (the released models' precision), float32 on the CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def check_model(options: ModelOptions, base: DiTConfig, clip_shape: Sequence[int] | None = None) -> torch.device:
    """Every check of what ``load_renderer`` loads that reads no weights, so that a problem is reported before any
    expensive step: the files are there (``ModelOptions.check_files``), the ``config.json`` describes a network for
    clips of ``clip_shape`` (T, H, W), the device exists. Returns the device."""
    options.check_files()
    if clip_shape is not None:
        check_clip_shape(options.network_dir, base, tuple(clip_shape))
    return compute_device(options.device)


def describe_loading(options: ModelOptions, device: torch.device) -> list[str]:
    """The lines printed before the models load: the device and dtype, the folders loaded, whether compiling."""
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        name = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    else:
        name = str(device)
    kept = " (kept in CPU memory between uses)"
    network = f"{options.network_dir}{kept if options.offload_network else ''}"
    network += " with FP8 layers" if options.fp8 else ""
    tokenizer = f"{options.tokenizer_dir}{kept if options.offload_tokenizer else ''}"
    return [
        f"Device: {name}, {str(model_dtype(device)).removeprefix('torch.')} weights",
        f"Loading the DiT from {network} and the tokenizer from {tokenizer}",
        describe_choice(options.compile, device.type),
    ]


def load_renderer(
    renderer_class: type[Renderer],
    base: DiTConfig,
    options: ModelOptions,
    sampling: SamplingOptions,
    *,
    clip_shape: Sequence[int] | None = None,
) -> Renderer:
    """The renderer of ``options`` on its device, every switch applied but compilation (``Renderer.compile``, which
    is decided from the planned work).

    ``base``: the architecture ``config.json`` overrides (inverse or forward 7B). ``clip_shape`` (T, H, W): the
    frames a run will sample, checked against the context-parallel group (if any).
    """
    device = check_model(options, base, clip_shape)
    dtype = model_dtype(device)
    with ThreadPoolExecutor(1, "cosmos-tokenizer") as background:  # diffusers' import and the tokenizer overlap
        tokenizer = background.submit(_load_tokenizer, options, device, dtype)
        network = build_network(
            options.network_dir,
            base,
            device="cpu" if options.offload_network else device,
            dtype=dtype,
            allow_pickle=options.allow_unsafe_checkpoint,
        )
        tokenizer = tokenizer.result()
    _install_context_parallel(network, tokenizer, clip_shape)
    if options.fp8:
        use_fp8(network)
    renderer = renderer_class(
        network,
        tokenizer,
        device=device,
        options=sampling,
        offload_network=options.offload_network,
        offload_tokenizer=options.offload_tokenizer,
    )
    return renderer


def _load_tokenizer(options: ModelOptions, device: torch.device, dtype: torch.dtype) -> VideoTokenizer:
    from .tokenizer import load_tokenizer  # imports diffusers: seconds, spent while the DiT loads

    return load_tokenizer(
        options.tokenizer_dir,
        device="cpu" if options.offload_tokenizer else device,
        dtype=dtype,
        pixel_chunk_duration=TOKENIZER_CHUNK,
        allow_unsafe=options.allow_unsafe_checkpoint,
    )


def _install_context_parallel(
    network: DiffusionRendererDiT, tokenizer: VideoTokenizer, clip_shape: Sequence[int] | None
) -> None:
    """Share each clip's tokens with this rank's context-parallel group (if any), after checking it can split them."""
    group = distributed.context_parallel_group()
    if group is None:
        return
    config = network.config
    if clip_shape is not None:
        frames, height, width = clip_shape
        rows, cols = height // 8 // config.patch_spatial, width // 8 // config.patch_spatial
        tokens = tokenizer.latent_frames(frames) // config.patch_temporal * rows * cols
        problem = context_parallel.unsupported(config.num_heads, tokens, group.size())
        if problem:
            raise UserError(
                f"--context_parallel_size {group.size()}: {problem} (images need (height/16)·(width/16) divisible "
                "by it)."
            )
    context_parallel.install(network, group)
