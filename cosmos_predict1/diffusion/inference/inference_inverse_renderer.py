"""Inverse rendering: images or video frames → G-buffers (basecolor, normal, depth, roughness, metallic).

Same command line, folder layout and file names as the original:

    python cosmos_predict1/diffusion/inference/inference_inverse_renderer.py --checkpoint_dir checkpoints \\
        --diffusion_transformer_dir Diffusion_Renderer_Inverse_Cosmos_7B \\
        --dataset_path=asset/examples/image_examples/ --num_video_frames 1 --group_mode webdataset \\
        --video_save_folder=asset/example_results/image_delighting/ --save_video=False

Work items already complete on disk are skipped (``--overwrite`` redoes them), so rerunning an interrupted command
finishes the rest. What one work item does is in ``inverse_job.py``; the loop around it in ``run_loop.py``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file from a checkout: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from cosmos_predict1.diffusion import cli
from cosmos_predict1.diffusion.data import IMAGE_EXTENSIONS
from cosmos_predict1.diffusion.options import GBUFFER_INDEX, GBUFFER_PASSES, OUTPUT_FORMATS, InverseRunOptions
from cosmos_predict1.errors import UserError
from cosmos_predict1.release import INVERSE_MODEL


def build_parser() -> argparse.ArgumentParser:
    parser, groups = cli.renderer_parser(
        "Cosmos DiffusionRenderer: inverse rendering (de-lighting).",
        model=INVERSE_MODEL,
        dataset="Folder of input images or video frames (searched recursively).",
    )
    add = groups.original.add_argument
    add(
        "--inference_passes",
        type=str,
        nargs="+",
        default=list(GBUFFER_PASSES),
        metavar="PASS",
        help=f"G-buffers to produce, in this order; any of {', '.join(GBUFFER_INDEX)}.",
    )
    add("--normalize_normal", type=cli.str2bool, default=False, help="Renormalise the normal pass to unit vectors.")
    add("--save_image", type=cli.str2bool, default=True, help="Write per-frame JPEGs under gbuffer_frames/.")
    add("--save_video", type=cli.str2bool, default=True, help="Write one video per clip and pass (.jpg for 1 frame).")
    add("--overlap_n_frames", type=int, default=0, help="Frames shared by consecutive chunks of a clip.")
    add("--chunk_mode", type=str, default="first", choices=["first", "all", "drop_last"], help="Chunks to process.")
    add(
        "--group_mode",
        type=str,
        default="folder",
        choices=["folder", "webdataset"],
        help="Clips: a folder's frames (videos) or each file (images).",
    )
    add = groups.new.add_argument
    add(
        "--output_format",
        type=str,
        default="jpg",
        choices=OUTPUT_FORMATS,
        help="Per-frame files: jpg (8-bit, as the original), png16, or exr (float depth and normal, 16-bit PNG for "
        "the rest).",
    )
    add(
        "--stitch_chunks",
        type=cli.str2bool,
        default=False,
        help="With --chunk_mode all: one video per clip, cross-fading the chunks' overlap (needs --save_image true).",
    )
    return parser


def run_options(args: argparse.Namespace) -> InverseRunOptions:
    """The command line as option values, checked before anything is loaded."""
    unknown = [name for name in args.inference_passes if name not in GBUFFER_INDEX]
    if unknown:
        raise UserError(f"--inference_passes: unknown pass {unknown[0]!r}; choose from {', '.join(GBUFFER_INDEX)}.")
    if len(set(args.inference_passes)) != len(args.inference_passes):
        raise UserError("--inference_passes: a pass is listed twice.")
    if not args.save_image and not args.save_video:
        raise UserError("--save_image and --save_video are both False: nothing would be written.")
    if args.dataset_path is None:
        raise UserError("--dataset_path is required: the folder of input images or video frames.")
    return InverseRunOptions(
        model=cli.model_options(args),
        sampling=cli.sampling_options(args),
        frames=cli.frame_options(args),
        output=cli.output_options(args),
        dataset=Path(args.dataset_path),
        num_frames=args.num_video_frames,
        passes=tuple(args.inference_passes),
        normalize_normal=args.normalize_normal,
        save_video=args.save_video,
        output_format=args.output_format,
        chunk_mode=args.chunk_mode,
        group_mode=args.group_mode,
        extensions=tuple(args.image_extensions or IMAGE_EXTENSIONS),
    )


def start(args: argparse.Namespace):
    """Check the command line and the checkpoint files, then make the job (the models load when it runs)."""
    options = run_options(args)
    options.model.check_files()
    from cosmos_predict1.diffusion.inference.inverse_job import InverseJob  # the models' libraries (torch) from here on

    return InverseJob(options)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), argv, start)


if __name__ == "__main__":
    sys.exit(main())
