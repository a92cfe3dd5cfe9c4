"""The command line both renderer scripts share: the options they have in common, their checks, turning them into
option values once, and the error boundary (one line per failure, and the exit code).

Every option of the original is accepted with the same name and default; ``--num_video_frames`` takes the counts
the released models take (1 and 57; the original also offered counts its tokenizer then refused). ``--help`` sorts
the options into three groups: the original's, the new ones, and those that do nothing in the renderers (text,
guardrail, prompt upsampler and multi-GPU options, as in the original). Argument errors are one line
(``cosmos_predict1.arguments``). Runs on several GPUs are launched with torchrun (``distributed``;
``--context_parallel_size``). This module imports no torch: ``--help``, argument errors and a missing checkpoint
answer before the models' libraries load.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from cosmos_predict1.arguments import Parser, str2bool
from cosmos_predict1.boundary import failure, report, signals_interrupt
from cosmos_predict1.errors import UserError
from cosmos_predict1.release import TOKENIZER

from . import distributed, pixel_limit, timing
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

FRAME_COUNTS = (1, TOKENIZER_CHUNK)  # what the released models take (the original offered 9, 17, …, 121, 10, 117 too)
INTERRUPTED = "interrupted: finished outputs are kept; rerun the same command to do the rest."


class OptionGroups(NamedTuple):
    """The three sections of a renderer's ``--help``; each script adds its own options to them too."""

    original: argparse._ArgumentGroup  # the original's options: same names and defaults
    new: argparse._ArgumentGroup  # options new in this implementation
    no_effect: argparse._ArgumentGroup  # the original's options that change nothing (as there)


def frame_count(text: str) -> int:
    """``--num_video_frames``: 1 (images) or 57 (videos)."""
    frames = int(text) if text.strip().isdigit() else None
    if frames not in FRAME_COUNTS:
        raise argparse.ArgumentTypeError(f"the released models take 1 (images) or {TOKENIZER_CHUNK} (videos)")
    return frames


def renderer_parser(description: str, model: str, dataset: str) -> tuple[Parser, OptionGroups]:
    """A renderer's parser with the options both scripts share, and its three option groups; ``model`` is the
    default ``--diffusion_transformer_dir``, ``dataset`` the help text of ``--dataset_path``."""
    parser = Parser(description)
    groups = OptionGroups(
        parser.add_argument_group(
            "options of the original", "Same names and defaults as nv-tlabs/cosmos1-diffusion-renderer."
        ),
        parser.add_argument_group("options new in this implementation"),
        parser.add_argument_group(
            "accepted for compatibility; no effect",
            "The original ignores them too. For several GPUs, launch with torchrun.",
        ),
    )
    add = groups.original.add_argument
    add(
        "--checkpoint_dir", type=str, default="checkpoints", metavar="DIR", help="Folder of the downloaded checkpoints."
    )
    add(
        "--diffusion_transformer_dir",
        type=str,
        default=model,
        metavar="DIR",
        help="DiT folder in --checkpoint_dir, or a path: the released model or a fine-tune in its layout.",
    )
    add("--tokenizer_dir", type=str, default=TOKENIZER, metavar="DIR", help="Tokenizer folder in --checkpoint_dir.")
    add("--dataset_path", type=str, default=None, metavar="DIR", help=dataset)
    add("--video_save_folder", type=str, default="outputs/", metavar="DIR", help="Folder that receives all outputs.")
    add("--num_steps", type=int, default=15, help="Sampling steps.")
    add("--guidance", type=float, default=0, help="Classifier-free guidance weight (0: conditional only).")
    add(
        "--num_video_frames",
        type=frame_count,
        default=TOKENIZER_CHUNK,
        metavar="{1,57}",
        help="Frames per clip: 1 (images) or 57 (videos).",
    )
    add("--height", type=int, default=704, help="Frame height, a multiple of 16.")
    add("--width", type=int, default=1280, help="Frame width, a multiple of 16.")
    add("--fps", type=int, default=24, help="Frame rate of the output videos (the model always sees 24).")
    add("--seed", type=int, default=1000, help="Seed of the initial noise.")
    add(
        "--image_extensions",
        type=str,
        nargs="+",
        default=None,
        metavar="EXT",
        help="File endings to read (default: common image types).",
    )
    add(
        "--resize_resolution",
        type=int,
        nargs="+",
        default=None,
        help="Resize to H W (or the shorter side to N) before the crop.",
    )
    add("--offload_diffusion_transformer", action="store_true", help="Keep the DiT off the GPU between uses.")
    add("--offload_tokenizer", action="store_true", help="Keep the tokenizer off the GPU between uses.")

    add = groups.new.add_argument
    add("--device", type=str, default="cuda", help="cuda, cuda:N or cpu (float32, for tiny models).")
    add(
        "--context_parallel_size",
        type=int,
        default=1,
        help="Under torchrun: how many ranks sample each clip together (see README: Multi-GPU).",
    )
    add(
        "--max_batch",
        type=int,
        default=None,
        help="Most outputs of a clip sampled together (default: from the clip size; all 5 passes of an image).",
    )
    add(
        "--compile",
        type=str2bool,
        default=None,
        help="torch.compile the DiT and tokenizer (default: only what pays for this run's work).",
    )
    add("--fp8", action="store_true", help="FP8 matrix products in the DiT (Hopper GPUs): faster, approximate.")
    add("--overwrite", action="store_true", help="Redo work items whose outputs already exist.")
    add(
        "--allow_unsafe_checkpoint",
        action="store_true",
        help="Fully unpickle checkpoints that hold more than tensors (trusted files only: this can run code).",
    )
    add("--debug", action="store_true", help="Show full tracebacks instead of one-line errors.")
    add(
        "--fit",
        type=str,
        default="stretch",
        choices=FIT_MODES,
        help="Inputs of another aspect ratio: stretched (as in the original), cropped or padded.",
    )
    add(
        "--output_size",
        type=str,
        default="model",
        choices=OUTPUT_SIZES,
        help="Outputs at --height × --width (model) or resized back to each input's size (input).",
    )
    add(
        "--contact_sheet",
        type=str2bool,
        default=False,
        help="Also write contact_sheets/<clip>.png: the input and every output of a clip side by side.",
    )

    add = groups.no_effect.add_argument
    add("--video_save_name", type=str, default="output", metavar="TEXT")
    add("--prompt", type=str, default="", metavar="TEXT")
    add("--negative_prompt", type=str, default="", metavar="TEXT")
    add("--batch_input_path", type=str, default=None, metavar="PATH")
    add("--num_gpus", type=int, default=1)
    add("--disable_prompt_upsampler", action="store_true")
    add("--offload_text_encoder_model", action="store_true")
    add("--offload_prompt_upsampler", action="store_true")
    add("--offload_guardrail_models", action="store_true")
    add("--disable_guardrail", action="store_true")
    return parser, groups


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
        pixel_limit.replace_pillow_guard()  # this process's decoders all check the declared size first
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
