"""Forward rendering: G-buffers + an HDR environment map (or random lighting) → relit frames.

Same command line, folder layout and file names as the original:

    python cosmos_predict1/diffusion/inference/inference_forward_renderer.py --checkpoint_dir checkpoints \\
        --diffusion_transformer_dir Diffusion_Renderer_Forward_Cosmos_7B \\
        --dataset_path=asset/example_results/image_delighting/gbuffer_frames --num_video_frames 1 \\
        --envlight_ind 0 1 2 3 --use_custom_envmap=True \\
        --video_save_folder=asset/example_results/image_relighting/

New: ``--envlight_path`` relights with any .hdr/.exr files (they replace the bundled list that ``--envlight_ind``
indexes), ``--env_strength``, ``--env_rotation`` and ``--env_flip`` expose the environment-map settings. All
lightings of a clip are sampled in one batch from one encoding of its G-buffers; each lighting's condition
latents are computed once and shared by all clips. What one clip does is in ``forward_job.py``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file from a checkout: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from cosmos_predict1.diffusion import cli
from cosmos_predict1.diffusion.assets import ENV_LIGHT_PATH_LIST, bundled_hdris
from cosmos_predict1.diffusion.data import IMAGE_EXTENSIONS
from cosmos_predict1.diffusion.options import (
    MAX_ROTATION,
    MAX_SEED,
    MAX_STRENGTH,
    ForwardRunOptions,
    Lighting,
    check_number,
    check_regular_file,
)
from cosmos_predict1.errors import UserError
from cosmos_predict1.release import FORWARD_MODEL

log = logging.getLogger("cosmos_predict1")

RANDOM_LIGHT_SEED_STRIDE = 1000  # random lighting k uses seed + 1000·k, as the original intended


def build_parser() -> argparse.ArgumentParser:
    parser, groups = cli.renderer_parser(
        "Cosmos DiffusionRenderer: forward rendering (re-lighting).",
        model=FORWARD_MODEL,
        dataset="The inverse run's gbuffer_frames folder.",
    )
    add = groups.original.add_argument
    add("--save_image", type=cli.str2bool, default=False, help="Also write per-frame JPEGs under relit_frames_XXXX/.")
    add("--use_custom_envmap", type=cli.str2bool, default=True, help="Light with an HDRI; false: random lighting.")
    add(
        "--envlight_ind",
        type=int,
        nargs="+",
        default=None,
        help=f"HDRIs to light with, one output each (bundled: 0–{len(ENV_LIGHT_PATH_LIST) - 1}; default: all). "
        "With --use_custom_envmap false: random lightings (seed + 1000·index).",
    )
    add("--rotate_light", type=cli.str2bool, default=False, help="Turn the lighting once around over the clip.")
    add("--use_fixed_frame_ind", type=cli.str2bool, default=False, help="One G-buffer frame for every output frame.")
    add("--fixed_frame_ind", type=int, default=0, help="The frame that --use_fixed_frame_ind uses.")
    add = groups.new.add_argument
    add(
        "--envlight_path",
        type=str,
        nargs="+",
        default=None,
        metavar="FILE",
        help="HDRIs (.hdr/.exr) to index instead of the bundled ones.",
    )
    add("--env_strength", type=float, default=1.0, help="Multiplier of the HDRI's radiance.")
    add("--env_rotation", type=float, default=180.0, help="Horizontal rotation of the HDRI in degrees.")
    add("--env_flip", type=cli.str2bool, default=True, help="Mirror the HDRI horizontally (as the original).")
    add(
        "--camera_poses",
        type=str,
        default=None,
        metavar="FILE",
        help="JSON of camera-to-world frames[].transform_matrix: the lighting then stays fixed in the world.",
    )
    add(
        "--stitch_chunks",
        type=cli.str2bool,
        default=False,
        help="One video per inverse clip from its chunks, cross-fading their --overlap_n_frames (needs --save_image "
        "true).",
    )
    add("--overlap_n_frames", type=int, default=0, help="The inverse run's --overlap_n_frames (for --stitch_chunks).")
    add(
        "--output_linear",
        type=cli.str2bool,
        default=False,
        help="Also write linear-light EXR frames (inverse sRGB, not true HDR) under relit_linear_XXXX/.",
    )
    groups.no_effect.add_argument("--inference_passes", type=str, nargs="+", default=["rgb"], metavar="PASS")
    return parser


def requested_lightings(args: argparse.Namespace) -> tuple[Lighting, ...]:
    """The lightings of ``--envlight_ind`` over ``--envlight_path`` or the bundled HDRIs, or random lightings."""
    paths = [Path(p) for p in args.envlight_path] if args.envlight_path else None
    bundled = bundled_hdris() if args.use_custom_envmap and paths is None else None
    count = len(paths) if paths else len(ENV_LIGHT_PATH_LIST)
    indices = (
        args.envlight_ind if args.envlight_ind is not None else list(range(count if args.use_custom_envmap else 4))
    )
    if len(set(indices)) != len(indices):
        raise UserError("--envlight_ind: an index is listed twice.")
    hdri = {"strength": args.env_strength, "rotation": args.env_rotation, "flip": args.env_flip, "seed": args.seed}
    lightings = []
    for k in indices:
        if not args.use_custom_envmap:
            if k < 0:
                raise UserError(f"--envlight_ind {k}: must be ≥ 0.")
            if args.seed + RANDOM_LIGHT_SEED_STRIDE * k > MAX_SEED:
                raise UserError(
                    f"--envlight_ind {k}: random lighting {k} uses the seed --seed + {RANDOM_LIGHT_SEED_STRIDE}·{k}, "
                    f"above {MAX_SEED}; use a smaller index or --seed."
                )
            lightings.append(Lighting(seed=args.seed + RANDOM_LIGHT_SEED_STRIDE * k, index=k))
        elif paths is not None:
            if not 0 <= k < len(paths):
                raise UserError(f"--envlight_ind {k}: out of range for {len(paths)} --envlight_path file(s).")
            if not paths[k].exists():
                raise UserError(f"--envlight_path {paths[k]}: file not found.")
            check_regular_file(paths[k], "an equirectangular .hdr or .exr file to --envlight_path")
            lightings.append(Lighting(paths[k], index=k, **hdri))
        else:
            if not 0 <= k < len(bundled.paths):
                raise UserError(f"--envlight_ind {k} is out of range: choose from 0 to {len(bundled.paths) - 1}.")
            lightings.append(Lighting(bundled.paths[k], index=k, **hdri))
    if bundled is not None and bundled.notice(indices):
        log.warning(bundled.notice(indices))
    return tuple(lightings)


def run_options(args: argparse.Namespace) -> ForwardRunOptions:
    """The command line as option values, checked before anything is loaded."""
    if args.dataset_path is None:
        raise UserError("--dataset_path is required: the inverse renderer's gbuffer_frames folder.")
    if args.use_fixed_frame_ind:
        check_number("--fixed_frame_ind", args.fixed_frame_ind, 0, args.num_video_frames - 1, integer=True)
    check_number("--env_strength", args.env_strength, 0, MAX_STRENGTH, open_low=True)  # also for random lighting
    check_number("--env_rotation", args.env_rotation, -MAX_ROTATION, MAX_ROTATION)
    if args.camera_poses:
        check_regular_file(Path(args.camera_poses), "a JSON pose file to --camera_poses")
    return ForwardRunOptions(
        model=cli.model_options(args),
        sampling=cli.sampling_options(args),
        frames=cli.frame_options(args),
        output=cli.output_options(args),
        dataset=Path(args.dataset_path),
        num_frames=args.num_video_frames,
        lightings=requested_lightings(args),
        rotate_light=args.rotate_light,
        hold_frame=args.fixed_frame_ind if args.use_fixed_frame_ind else None,
        camera_poses=Path(args.camera_poses) if args.camera_poses else None,
        output_linear=args.output_linear,
        extensions=tuple(args.image_extensions or IMAGE_EXTENSIONS),
    )


def start(args: argparse.Namespace):
    """Check the command line and the checkpoint files, then make the job (the models load when it runs)."""
    options = run_options(args)
    options.model.check_files()
    from cosmos_predict1.diffusion.inference.forward_job import ForwardJob  # the models' libraries (torch) from here on

    return ForwardJob(options)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), argv, start)


if __name__ == "__main__":
    sys.exit(main())
