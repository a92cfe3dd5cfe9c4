"""The command line both renderer scripts share: the original's common options, their checks, turning them into
option values once, and the error boundary (one line per failure, and the exit code).

Every option of the original is accepted with the same name, type and default; the text, guardrail, prompt
upsampler and multi-GPU options do nothing in the renderers (as in the original) and say so in ``--help``. Runs on
several GPUs are launched with torchrun (``distributed``; ``--context_parallel_size``). This module imports no torch:
``--help``, argument errors and a missing checkpoint answer before the models' libraries load.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_predict1.boundary import failure, report, signals_interrupt
from cosmos_predict1.errors import UserError
from cosmos_predict1.release import TOKENIZER

from . import distributed, timing
from .options import (
    FIT_MODES,
    OUTPUT_SIZES,
    TOKENIZER_CHUNK,
    FrameOptions,
    ModelOptions,
    OutputOptions,
    SamplingOptions,
    check_number,
)

if TYPE_CHECKING:
    from .run_loop import Job

log = logging.getLogger("cosmos_predict1")

NO_EFFECT = "Accepted for compatibility with the original; has no effect in the renderers."
FRAME_CHOICES = [8 * n + 1 for n in range(16)] + [10, 117]  # what the original's parser offers
INTERRUPTED = "interrupted: finished outputs are kept; rerun the same command to do the rest."


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
    add(
        "--compile",
        type=str2bool,
        default=None,
        help="torch.compile the DiT and tokenizer: true, false, or (default) only what pays for this run's work.",
    )
    add(
        "--fp8",
        action="store_true",
        help="FP8 matrix products in the DiT's large layers (Hopper GPUs): faster, approximate (see BENCHMARKS.md).",
    )
    add("--overwrite", action="store_true", help="Redo work items whose outputs already exist.")
    add(
        "--allow_unsafe_checkpoint",
        action="store_true",
        help="Allow full unpickling of checkpoint files that hold more than tensors and plain data (trusted files "
        "only: unpickling can run code).",
    )
    add("--debug", action="store_true", help="Show full tracebacks instead of one-line errors.")
    add(
        "--fit",
        type=str,
        default="stretch",
        choices=FIT_MODES,
        help="How inputs of another aspect ratio meet --height × --width: stretch (the original), crop or pad "
        "(both keep the aspect ratio; pad marks the border in the model's padding mask).",
    )
    add(
        "--output_size",
        type=str,
        default="model",
        choices=OUTPUT_SIZES,
        help="model: outputs at --height × --width scale (cut to the content with --fit pad); input: resized back "
        "to the input's resolution.",
    )
    add(
        "--contact_sheet",
        type=str2bool,
        default=False,
        help="Also write contact_sheets/<clip>.png: the input and every output of a clip side by side.",
    )


def model_options(args: argparse.Namespace) -> ModelOptions:
    """Which weights and how they run; ``ModelOptions.check_files`` is the caller's next step."""
    check_number("--context_parallel_size", args.context_parallel_size, 1, math.inf, integer=True)
    return ModelOptions(
        checkpoint_dir=Path(args.checkpoint_dir),
        network_folder=args.diffusion_transformer_dir,
        tokenizer_folder=args.tokenizer_dir,
        device=args.device,
        offload_network=args.offload_diffusion_transformer,
        offload_tokenizer=args.offload_tokenizer,
        compile=args.compile,
        fp8=args.fp8,
        allow_unsafe_checkpoint=args.allow_unsafe_checkpoint,
    )


def sampling_options(args: argparse.Namespace) -> SamplingOptions:
    return SamplingOptions(num_steps=args.num_steps, guidance=args.guidance, max_batch=args.max_batch)


def frame_options(args: argparse.Namespace) -> FrameOptions:
    resize = tuple(args.resize_resolution) if args.resize_resolution else None
    return FrameOptions(
        height=args.height, width=args.width, resize_resolution=resize, fit=args.fit, output_size=args.output_size
    )


def output_options(args: argparse.Namespace) -> OutputOptions:
    """The output settings both scripts have; ``--stitch_chunks`` needs the per-frame files it reads back.

    The output folder must have a name (an empty one would mean the current folder) and lie outside
    ``--dataset_path`` (a later run would read the outputs as inputs).
    """
    folder = Path(args.video_save_folder)
    if not args.video_save_folder.strip():
        raise UserError(
            "--video_save_folder is empty: give the folder for the outputs, say outputs/ (an empty name would "
            "write into the current folder)."
        )
    dataset = Path(args.dataset_path).resolve()
    if folder.resolve() == dataset or dataset in folder.resolve().parents:
        raise UserError(
            f"--video_save_folder {folder} is inside --dataset_path {args.dataset_path}: a later run would read the "
            "outputs as inputs; choose an output folder outside the dataset."
        )
    if args.stitch_chunks and not args.save_image:
        raise UserError("--stitch_chunks builds the clip videos from the per-frame files: keep --save_image=True.")
    frames = args.num_video_frames
    if args.stitch_chunks and not 0 <= 2 * args.overlap_n_frames <= frames:
        raise UserError(
            f"--overlap_n_frames {args.overlap_n_frames}: must be from 0 to {frames // 2} (half of --num_video_frames "
            f"{frames}) for --stitch_chunks."
        )
    if not 0 <= args.overlap_n_frames < frames:
        raise UserError(
            f"--overlap_n_frames {args.overlap_n_frames}: must be an integer from 0 to {frames - 1} (fewer than "
            f"--num_video_frames {frames})."
        )
    return OutputOptions(
        folder=folder,
        fps=args.fps,
        seed=args.seed,
        save_image=args.save_image,
        overwrite=args.overwrite,
        contact_sheet=args.contact_sheet,
        stitch_chunks=args.stitch_chunks,
        overlap=args.overlap_n_frames,
    )


def check_frame_count(args: argparse.Namespace) -> int:
    """``--num_video_frames``, checked against what the released models take."""
    frames = args.num_video_frames
    if frames != 1 and frames % TOKENIZER_CHUNK:
        raise UserError(
            f"--num_video_frames {frames}: the released models take 1 frame (images) or {TOKENIZER_CHUNK} frames "
            "(videos); use --num_video_frames 1 or 57."
        )
    return frames


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None, start: Callable[[argparse.Namespace], Job]) -> int:
    """Parse, let ``start`` check the arguments and make the script's job, run it, and turn every failure into one
    line on stderr; returns the exit code.

    0 = done; 1 = an internal error (a bug; --debug shows the traceback); 2 = a problem the user can fix (the message
    says how); 130 = interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP (rerun to resume; the last two end like
    Ctrl-C: ``boundary.signals_interrupt``): ``cosmos_predict1.boundary``'s mapping, which the helper scripts
    share. Before the run, the output folder is checked and temporary files of killed earlier runs are removed from
    it; the run's one-line summary is printed at the end.

    Under torchrun every rank runs this; rank 0 prints the summaries of the ranks that wrote files, after all ranks
    are done. A rank that fails exits with its code without waiting, and torchrun then stops the others.
    """
    args = parser.parse_args(argv)
    prefix = f"[rank {distributed.launched_rank()}] " if distributed.launched_world_size() > 1 else ""
    logging.basicConfig(level=logging.INFO, format=prefix + "%(levelname)s: %(message)s")
    logging.captureWarnings(True)
    run_start = timing.start_run()
    try:
        with signals_interrupt():
            job = start(args)
            from . import run_loop, writers  # the run's libraries, once the arguments are known to be good

            timing.add("start-up", time.perf_counter() - run_start)

            place = distributed.setup(args.device, args.context_parallel_size)
            removed = writers.prepare_output_folder(job.output.folder)
            if removed:
                log.info("Removed %d temporary file(s) left in %s by an interrupted run", removed, job.output.folder)
            distributed.barrier()  # no rank writes before every rank has cleared old temporary files
            summaries = distributed.writer_summaries(run_loop.run(job))
    except (Exception, KeyboardInterrupt) as err:  # one line each (see cosmos_predict1.boundary)
        return report(*failure(err, interrupted=INTERRUPTED), args.debug)
    distributed.teardown()
    elapsed = time.perf_counter() - run_start
    if place.is_main and len(summaries) == 1:
        print(f"{summaries[0][1]} in {elapsed:.1f} s ({timing.summary()})", file=sys.stderr)
    elif place.is_main:
        lines = [f"rank {rank}: {summary}" for rank, summary in summaries]
        print("\n".join([*lines, f"{place.world_size} ranks done in {elapsed:.1f} s"]), file=sys.stderr)
    return 0
