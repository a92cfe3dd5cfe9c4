"""What both renderer scripts share: the original's common options, model loading, and the error boundary.

Every option of the original is accepted with the same name, type and default; the text, guardrail, prompt
upsampler and multi-GPU options do nothing in the renderers (as in the original) and say so in ``--help``. Runs on
several GPUs are launched with torchrun instead (``distributed``; ``--context_parallel_size``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from cosmos_predict1.checkpoints import TOKENIZER, download_command
from cosmos_predict1.errors import UserError

from . import distributed, fit, io
from .frames import Preprocessing
from .networks import DiffusionRendererDiT, DiTConfig, build_network, context_parallel
from .networks.acceleration import compile_blocks
from .networks.fp8 import use_fp8
from .renderer import Renderer, SamplingOptions
from .tokenizer import VideoTokenizer, load_tokenizer

log = logging.getLogger("cosmos_predict1")

NO_EFFECT = "Accepted for compatibility with the original; has no effect in the renderers."
FRAME_CHOICES = [8 * n + 1 for n in range(16)] + [10, 117]  # what the original's parser offers
TOKENIZER_CHUNK = 57  # pixel frames per tokenizer chunk


def str2bool(value: str | bool) -> bool:
    """The original's boolean option values: yes/true/t/y/1 and no/false/f/n/0, any case."""
    if isinstance(value, bool):
        return value
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError("Boolean value expected.")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by the inverse and forward scripts (original names and defaults, plus a few new ones)."""
    add = parser.add_argument
    add("--checkpoint_dir", type=str, default="checkpoints", help="Folder holding the downloaded checkpoints.")
    add("--tokenizer_dir", type=str, default=TOKENIZER, help="Tokenizer folder inside --checkpoint_dir.")
    add("--video_save_name", type=str, default="output", help=NO_EFFECT)
    add("--video_save_folder", type=str, default="outputs/", help="Folder that receives all outputs.")
    add("--prompt", type=str, default="", help=NO_EFFECT)
    add("--batch_input_path", type=str, default=None, help=NO_EFFECT)
    add("--negative_prompt", type=str, default="", help=NO_EFFECT)
    add("--num_steps", type=int, default=15, help="Number of sampling steps.")
    add("--guidance", type=float, default=0, help="Classifier-free guidance weight (0 = conditional only).")
    add(
        "--num_video_frames",
        type=int,
        default=57,
        choices=FRAME_CHOICES,
        help=f"Frames per clip. The released models take 1 (images) or {TOKENIZER_CHUNK} (videos).",
    )
    add("--height", type=int, default=704, help="Frame height (multiple of 16).")
    add("--width", type=int, default=1280, help="Frame width (multiple of 16).")
    add("--fps", type=int, default=24, help="Frame rate written into output videos (the model always sees 24).")
    add("--seed", type=int, default=1000, help="Seed of the initial noise (see README: noise per work item).")
    add("--num_gpus", type=int, default=1, help=f"{NO_EFFECT} Several GPUs: launch with torchrun (see README).")
    add("--disable_prompt_upsampler", action="store_true", help=NO_EFFECT)
    add("--offload_diffusion_transformer", action="store_true", help="Keep the DiT off the GPU between uses.")
    add("--offload_tokenizer", action="store_true", help="Keep the tokenizer off the GPU between uses.")
    add("--offload_text_encoder_model", action="store_true", help=NO_EFFECT)
    add("--offload_prompt_upsampler", action="store_true", help=NO_EFFECT)
    add("--offload_guardrail_models", action="store_true", help=NO_EFFECT)
    add("--disable_guardrail", action="store_true", help=NO_EFFECT)
    # New in this implementation.
    add(
        "--device",
        type=str,
        default="cuda",
        help="cuda, cuda:N or cpu (cpu runs float32; for tiny models). Under torchrun, cuda is cuda:LOCAL_RANK.",
    )
    add(
        "--context_parallel_size",
        type=int,
        default=1,
        help="Under torchrun: groups of this many consecutive ranks sample each clip together, each on a share of "
        "the DiT's tokens (lower latency per clip); it must divide the number of processes and the 32 heads. "
        "Data parallel runs across the groups.",
    )
    add(
        "--max_batch",
        type=int,
        default=None,
        help="Most outputs of one clip sampled together (default: from the clip size; all 5 passes of an image).",
    )
    add("--compile", type=str2bool, default=None, help="torch.compile the DiT and tokenizer (default: on for GPUs).")
    add(
        "--fp8",
        action="store_true",
        help="FP8 matrix products in the DiT's large layers (Hopper GPUs): faster, approximate (see BENCHMARKS.md).",
    )
    add("--overwrite", action="store_true", help="Redo work items whose outputs already exist.")
    add(
        "--allow_unsafe_checkpoint",
        action="store_true",
        help="Allow full unpickling of a model.pt that is not a plain tensor file (only for files you trust).",
    )
    add("--debug", action="store_true", help="Show full tracebacks instead of one-line errors.")
    add(
        "--fit",
        type=str,
        default="stretch",
        choices=fit.FIT_MODES,
        help="How inputs of another aspect ratio meet --height × --width: stretch (the original), crop or pad "
        "(both keep the aspect ratio; pad marks the border in the model's padding mask).",
    )
    add(
        "--output_size",
        type=str,
        default="model",
        choices=fit.OUTPUT_SIZES,
        help="model: outputs at --height × --width scale (cut to the content with --fit pad); input: resized back "
        "to the input's resolution.",
    )
    add(
        "--contact_sheet",
        type=str2bool,
        default=False,
        help="Also write contact_sheets/<clip>.png: the input and every output of a clip side by side.",
    )


def validate_common_arguments(args: argparse.Namespace) -> None:
    """Reject settings the models cannot take, before anything is loaded."""
    frames = args.num_video_frames
    if frames != 1 and frames % TOKENIZER_CHUNK:
        raise UserError(
            f"--num_video_frames {frames}: the released models take 1 frame (images) or {TOKENIZER_CHUNK} frames "
            "(videos); use --num_video_frames 1 or 57."
        )
    for name in ("height", "width"):
        value = getattr(args, name)
        if value <= 0 or value % 16:
            raise UserError(f"--{name} {value}: must be a positive multiple of 16 (e.g. 704 × 1280).")
    if args.height > 1920 or args.width > 1920:
        raise UserError("--height/--width: at most 1920 (the network's position tables cover 240 latent rows).")
    if args.num_steps < 1:
        raise UserError(f"--num_steps {args.num_steps}: must be at least 1.")
    if args.max_batch is not None and args.max_batch < 1:
        raise UserError(f"--max_batch {args.max_batch}: must be at least 1.")
    if args.guidance < 0:
        raise UserError(f"--guidance {args.guidance}: must be ≥ 0.")
    if args.fp8 and args.offload_diffusion_transformer:
        raise UserError("--fp8 and --offload_diffusion_transformer cannot be combined; choose one.")


def compute_device(name: str) -> torch.device:
    """The requested device, checked: a missing GPU is a clear error, not a crash deep inside."""
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
            raise UserError("--device cuda: no CUDA GPU is available; use --device cpu (practical for tiny models only).")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) present.")
    elif device.type != "cpu":
        raise UserError(f"--device {name}: use cuda, cuda:N or cpu.")
    return device


def model_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on GPUs (the released models' precision), float32 on the CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_models(
    args: argparse.Namespace, model_folder: str, base: DiTConfig, device: torch.device
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(network, tokenizer) from ``--checkpoint_dir``, built on the CPU when they are to be offloaded."""
    root = Path(args.checkpoint_dir)
    dtype = model_dtype(device)
    for folder in (root / model_folder, root / args.tokenizer_dir):
        if not folder.is_dir():
            raise UserError(f"{folder}: checkpoint folder missing; download it with: {download_command(str(root))}")
    network = build_network(
        root / model_folder,
        base,
        device="cpu" if args.offload_diffusion_transformer else device,
        dtype=dtype,
        allow_pickle=args.allow_unsafe_checkpoint,
    )
    tokenizer = load_tokenizer(
        root / args.tokenizer_dir,
        device="cpu" if args.offload_tokenizer else device,
        dtype=dtype,
        pixel_chunk_duration=TOKENIZER_CHUNK,
    )
    _attach_context_parallel(network, tokenizer, args)
    return network, tokenizer


def _attach_context_parallel(
    network: DiffusionRendererDiT, tokenizer: VideoTokenizer, args: argparse.Namespace
) -> None:
    """Give the network this rank's context-parallel group (if any), after checking that it can split the clips."""
    group = distributed.context_parallel_group()
    if group is None:
        return
    config = network.config
    rows, cols = args.height // 8 // config.patch_spatial, args.width // 8 // config.patch_spatial
    tokens = tokenizer.latent_frames(args.num_video_frames) // config.patch_temporal * rows * cols
    problem = context_parallel.unsupported(config.num_heads, tokens, group.size())
    if problem:
        raise UserError(
            f"--context_parallel_size {group.size()}: {problem} (images need (height/16)·(width/16) divisible by it)."
        )
    network.context_parallel_group = group


def preprocessing(args: argparse.Namespace, **options: bool) -> Preprocessing:
    """How this run turns input files into model frames (``options``: the script's EXR handling)."""
    resize = tuple(args.resize_resolution) if args.resize_resolution else None
    return Preprocessing(height=args.height, width=args.width, resize_resolution=resize, fit=args.fit, **options)


def clip_placement(args: argparse.Namespace, frames: Preprocessing, first_file: Path) -> fit.Placement | None:
    """The placement of a clip in the model frame, or None when outputs stay exactly the model frame."""
    if args.fit == "stretch" and args.output_size == "model":
        return None
    return frames.placement(first_file)


def restore_output(args: argparse.Namespace, video: torch.Tensor, placement: fit.Placement | None) -> torch.Tensor:
    """A decoded output mapped back to the input's aspect ratio / size (identity for the original's settings)."""
    return video if placement is None else fit.restore(video, placement, args.output_size)


def input_padding_mask(placement: fit.Placement | None) -> torch.Tensor | None:
    """The DiT's padding-mask input for ``--fit pad`` (None: no padding)."""
    return fit.padding_mask(placement) if placement is not None and placement.mode == "pad" else None


def sampling_options(args: argparse.Namespace) -> SamplingOptions:
    return SamplingOptions(num_steps=args.num_steps, guidance=args.guidance, max_batch=args.max_batch)


RendererType = TypeVar("RendererType", bound=Renderer)


def build_renderer(
    args: argparse.Namespace, renderer_class: type[RendererType], base: DiTConfig, device: torch.device
) -> tuple[RendererType, tuple[int, ...]]:
    """The script's renderer on ``device`` (models loaded, offloading and speed options applied) and the shape of
    one output's latent ``[1, 16, T', H/8, W/8]``."""
    network, tokenizer = load_models(args, args.diffusion_transformer_dir, base, device)
    renderer = renderer_class(
        network,
        tokenizer,
        device=device,
        options=sampling_options(args),
        offload_network=args.offload_diffusion_transformer,
        offload_tokenizer=args.offload_tokenizer,
    )
    accelerate(network, tokenizer, args, device)
    frames = tokenizer.latent_frames(args.num_video_frames)
    return renderer, (1, tokenizer.latent_channels, frames, args.height // 8, args.width // 8)


def accelerate(network: DiffusionRendererDiT, tokenizer: VideoTokenizer, args: argparse.Namespace, device: torch.device) -> None:
    """FP8 layers if asked, then compile the DiT blocks and the tokenizer where asked (default: on CUDA devices)."""
    if args.fp8:
        use_fp8(network)
    if args.compile if args.compile is not None else device.type == "cuda":
        compile_blocks(network)
        tokenizer.compile()


def all_exist(paths: Iterable[Path]) -> bool:
    return all(path.is_file() for path in paths)


Item = TypeVar("Item")
Output = TypeVar("Output")


def pending_work(
    work: Sequence[tuple[Item, Sequence[Output]]], done: Callable[[Item, Output], bool], overwrite: bool
) -> list[tuple[Item, list[Output]]]:
    """The work items with an output not ``done`` yet (every item with ``overwrite``), each with all its outputs.

    An unfinished item is redone whole, not only its missing outputs: outputs are sampled in batches, and which other
    outputs share a batch can change the floating-point result, so only the same batches make the files of a resumed
    run byte-identical to those of an uninterrupted one.
    """
    return [(item, list(outputs)) for item, outputs in work if overwrite or not all(done(item, o) for o in outputs)]


def my_share(
    todo: Sequence[tuple[Item, list]], renderer: Renderer, latent_shape: Sequence[int], whole_items: bool
) -> list[tuple[Item, list]]:
    """This process's part of ``todo`` under torchrun (all of it in a single process; see ``distributed.shard``).

    An item's outputs may go to different ranks, cut only between the batches that the renderer samples together
    (for latents of ``latent_shape``), so every output is sampled exactly as in a single process. ``whole_items``
    keeps each item on one rank (its contact sheet shows all of its outputs).
    """
    latent = torch.empty(tuple(latent_shape), device="meta")
    units = [
        (item, [outputs[i] for i in batch])
        for item, outputs in todo
        for batch in ([range(len(outputs))] if whole_items else renderer.batches(len(outputs), latent))
    ]
    return distributed.shard(units)


class Progress:
    """A progress bar over work items whose postfix shows the sampling step."""

    def __init__(self, items: Sequence, num_steps: int, outputs_per_item: Sequence[int]) -> None:
        self.num_steps = num_steps
        total_outputs = sum(outputs_per_item)
        self.bar = tqdm(
            total=len(items),
            unit="item",
            desc=f"{total_outputs} output(s)",
            dynamic_ncols=True,
            disable=not distributed.layout().is_main,  # one bar under torchrun: rank 0's share
        )
        self.redirect = logging_redirect_tqdm()

    def __enter__(self) -> "Progress":
        self.redirect.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
        self.redirect.__exit__(*exc)

    def step(self, index: int, state: torch.Tensor) -> None:
        self.bar.set_postfix_str(f"step {index + 1}/{self.num_steps}")

    def item_done(self) -> None:
        self.bar.update(1)


def run(main: Callable[[argparse.Namespace], str], parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse, run ``main`` and turn every failure into one line on stderr; returns the exit code.

    0 = done; 1 = an internal error (a bug; --debug shows the traceback); 2 = a problem the user can fix (the message
    says how); 130 = interrupted (rerun to resume). Before ``main``, the output folder is checked and temporary files
    of killed earlier runs are removed from it. ``main`` returns a one-line summary that is printed at the end.

    Under torchrun every rank runs this; rank 0 prints the summaries of the ranks that wrote files, after all ranks
    are done. A rank that fails exits with its code without waiting, and torchrun then stops the others.
    """
    args = parser.parse_args(argv)
    rank_prefix = f"[rank {distributed.launched_rank()}] " if distributed.launched_world_size() > 1 else ""
    logging.basicConfig(level=logging.INFO, format=rank_prefix + "%(levelname)s: %(message)s")
    logging.captureWarnings(True)
    start = time.perf_counter()
    try:
        place = distributed.setup(args.device, args.context_parallel_size)
        _prepare_output_folder(args.video_save_folder)
        distributed.barrier()  # no rank writes before every rank has cleared old temporary files
        summaries = distributed.writer_summaries(main(args))
    except UserError as err:
        return _fail(args, f"error: {err}")
    except KeyboardInterrupt:
        return _fail(args, "interrupted: finished outputs are kept; rerun the same command to do the rest.", 130)
    except Exception as err:  # an internal error: still one line unless --debug
        if _is_out_of_memory(err):
            return _fail(args, OUT_OF_MEMORY)
        return _fail(args, f"internal error: {type(err).__name__}: {err} (rerun with --debug for the traceback)", 1)
    distributed.teardown()
    elapsed = time.perf_counter() - start
    if place.is_main and len(summaries) == 1:
        print(f"{summaries[0][1]} in {elapsed:.1f} s", file=sys.stderr)
    elif place.is_main:
        lines = [f"rank {rank}: {summary}" for rank, summary in summaries]
        print("\n".join([*lines, f"{place.world_size} ranks done in {elapsed:.1f} s"]), file=sys.stderr)
    return 0


OUT_OF_MEMORY_SIGNS = ("CUDA out of memory", "CUDA error: out of memory", "_ALLOC_FAILED")  # in RuntimeErrors
OUT_OF_MEMORY = (
    "error: the GPU ran out of memory; retry with a smaller --max_batch (down to 1) and/or "
    "--offload_diffusion_transformer --offload_tokenizer (finished outputs are kept)."
)


def _is_out_of_memory(err: Exception) -> bool:
    """A GPU allocation failure: PyTorch's own error, or one that cuBLAS/cuDNN report as a RuntimeError."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and any(sign in str(err) for sign in OUT_OF_MEMORY_SIGNS)


def _prepare_output_folder(folder: str) -> None:
    """Fail early on an unusable output folder and clear the temporary files that killed runs left in it."""
    removed = io.prepare_output_folder(folder)
    if removed:
        log.info("Removed %d temporary file(s) left in %s by an interrupted run", removed, folder)


def _fail(args: argparse.Namespace, message: str, code: int = 2) -> int:
    """Print ``message`` as one line (the traceback first with --debug); returns ``code``."""
    if getattr(args, "debug", False):
        traceback.print_exc()
    print(" ".join(line.strip() for line in message.splitlines() if line.strip()), file=sys.stderr)
    return code
