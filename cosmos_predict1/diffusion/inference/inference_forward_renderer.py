"""Forward rendering: G-buffers + an HDR environment map (or random lighting) → relit frames.

Same command line, folder layout and file names as the original:

    python cosmos_predict1/diffusion/inference/inference_forward_renderer.py --checkpoint_dir checkpoints \
        --diffusion_transformer_dir Diffusion_Renderer_Forward_Cosmos_7B \
        --dataset_path=asset/example_results/image_delighting/gbuffer_frames --num_video_frames 1 \
        --envlight_ind 0 1 2 3 --use_custom_envmap=True \
        --video_save_folder=asset/example_results/image_relighting/

New: ``--envlight_path`` relights with any .hdr/.exr files (they replace the bundled list that ``--envlight_ind``
indexes), ``--env_strength``, ``--env_rotation`` and ``--env_flip`` expose the environment-map settings. All
lightings of a clip are sampled in one batch from one encoding of its G-buffers; each lighting's condition
latents are computed once and shared by all clips.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file from a checkout: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import torch

from cosmos_predict1.checkpoints import FORWARD_MODEL
from cosmos_predict1.diffusion import cli, data, distributed, io
from cosmos_predict1.diffusion.contact_sheet import contact_sheet_path, write_contact_sheet
from cosmos_predict1.diffusion.stitch import write_stitched_video
from cosmos_predict1.diffusion.assets import ENV_LIGHT_PATH_LIST, bundled_hdris
from cosmos_predict1.diffusion.envmap import EnvironmentMap, load_camera_rotations
from cosmos_predict1.diffusion.frames import Preprocessing, load_frames
from cosmos_predict1.diffusion.networks import FORWARD_7B
from cosmos_predict1.diffusion.renderer import ForwardRenderer, work_item_noise
from cosmos_predict1.errors import UserError

RANDOM_LIGHT_SEED_STRIDE = 1000  # random lighting k uses seed + 1000·k, as the original intended


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Cosmos DiffusionRenderer: forward rendering (re-lighting).")
    cli.add_common_arguments(parser)
    add = parser.add_argument
    add(
        "--diffusion_transformer_dir",
        type=str,
        default=FORWARD_MODEL,
        help="DiT folder inside --checkpoint_dir (or a path): the released model or any fine-tune of the same 7B "
        "forward renderer in the released layout (model.pt, optional config.json).",
    )
    add("--inference_passes", type=str, nargs="+", default=["rgb"], help=cli.NO_EFFECT)
    add("--save_image", type=cli.str2bool, default=False, help="Also write per-frame JPEGs under relit_frames_XXXX/.")
    add("--dataset_path", type=str, default=None, help="The inverse renderer's gbuffer_frames folder.")
    add("--image_extensions", type=str, nargs="+", default=None, help="File endings to read (default: common images).")
    add("--resize_resolution", type=int, nargs="+", default=None, help="Resize to H W (or shorter side) before the crop.")
    add("--use_custom_envmap", type=cli.str2bool, default=True, help="Light with an HDRI; False = random lighting.")
    add(
        "--envlight_ind",
        type=int,
        nargs="+",
        default=None,
        help=f"Indices into the HDRI list (bundled: 0–{len(ENV_LIGHT_PATH_LIST) - 1}; default all); each gives "
        "one output per clip. With --use_custom_envmap=False they select random lightings (seed + 1000·index).",
    )
    add("--envlight_path", type=str, nargs="+", default=None, help="HDRI files (.hdr/.exr) replacing the bundled list.")
    add("--env_strength", type=float, default=1.0, help="Multiplier of the HDRI's radiance.")
    add("--env_rotation", type=float, default=180.0, help="Horizontal rotation of the HDRI in degrees.")
    add("--env_flip", type=cli.str2bool, default=True, help="Mirror the HDRI horizontally (the original does).")
    add("--rotate_light", type=cli.str2bool, default=False, help="Turn the lighting once around the vertical axis over the clip.")
    add("--use_fixed_frame_ind", type=cli.str2bool, default=False, help="Use one G-buffer frame for every output frame.")
    add("--fixed_frame_ind", type=int, default=0, help="The frame used by --use_fixed_frame_ind.")
    add(
        "--camera_poses",
        type=str,
        default=None,
        help="JSON with frames[].transform_matrix (camera-to-world, NeRF style) for the clip's frames: the "
        "environment then stays fixed in the world while the camera moves (rotations relative to frame 0).",
    )
    add(
        "--stitch_chunks",
        type=cli.str2bool,
        default=False,
        help="Also write one continuous <clip>.relit_XXXX.mp4 per inverse clip from its chunks <clip>/<chunk>, "
        "cross-fading the overlap (needs --save_image=True and the inverse run's --overlap_n_frames).",
    )
    add("--overlap_n_frames", type=int, default=0, help="The inverse run's chunk overlap (for --stitch_chunks).")
    add(
        "--output_linear",
        type=cli.str2bool,
        default=False,
        help="Also write linear-light frames (inverse sRGB of the output) as EXR under relit_linear_XXXX/: an "
        "approximation of HDR, not true radiance.",
    )
    return parser


@dataclass(frozen=True)
class Lighting:
    """One requested lighting: output index k, the HDRI (None = random lighting) and the noise seed/label."""

    index: int
    hdri: Path | None
    seed: int
    label: str


def requested_lightings(args: argparse.Namespace) -> list[Lighting]:
    paths = [Path(p) for p in args.envlight_path] if args.envlight_path else None
    bundled = bundled_hdris() if args.use_custom_envmap and paths is None else None
    count = len(paths) if paths else len(ENV_LIGHT_PATH_LIST)
    indices = args.envlight_ind if args.envlight_ind is not None else list(range(count if args.use_custom_envmap else 4))
    if len(set(indices)) != len(indices):
        raise UserError("--envlight_ind: an index is listed twice.")
    lightings = []
    for k in indices:
        if not args.use_custom_envmap:
            if k < 0:
                raise UserError(f"--envlight_ind {k}: must be ≥ 0.")
            lightings.append(Lighting(k, None, args.seed + RANDOM_LIGHT_SEED_STRIDE * k, "random"))
            continue
        if paths is not None:
            if not 0 <= k < len(paths):
                raise UserError(f"--envlight_ind {k}: out of range for {len(paths)} --envlight_path file(s).")
            if not paths[k].is_file():
                raise UserError(f"--envlight_path {paths[k]}: file not found.")
            hdri = paths[k]
        else:
            if not 0 <= k < len(bundled.paths):
                raise UserError(f"--envlight_ind {k} is out of range: choose from 0 to {len(bundled.paths) - 1}.")
            hdri = bundled.paths[k]
        lightings.append(Lighting(k, hdri, args.seed, f"envlight:{hdri.name}"))
    if bundled is not None and bundled.notice(indices):
        cli.log.warning(bundled.notice(indices))
    return lightings


def expected_outputs(args: argparse.Namespace, clip: data.GBufferClip, light: Lighting) -> list[Path]:
    root, frames = args.video_save_folder, args.num_video_frames
    paths = [io.image_or_video_path(io.forward_video_path(root, clip.clip_name, light.index), frames)]
    if args.save_image:
        paths += [io.forward_frame_path(root, clip.clip_name, light.index, f) for f in range(frames)]
    if args.output_linear:
        paths += [io.forward_linear_frame_path(root, clip.clip_name, light.index, f) for f in range(frames)]
    return paths


def write_outputs(args: argparse.Namespace, clip: data.GBufferClip, light: Lighting, decoded: torch.Tensor) -> int:
    frames = io.frames_to_uint8(decoded)
    written = 0
    if args.save_image:
        for index, frame in enumerate(frames):
            io.write_image(io.forward_frame_path(args.video_save_folder, clip.clip_name, light.index, index), frame)
            written += 1
    if args.output_linear:
        for index, frame in enumerate(io.display_to_linear(io.frames_to_unit(decoded))):
            io.write_exr(io.forward_linear_frame_path(args.video_save_folder, clip.clip_name, light.index, index), frame)
            written += 1
    path = io.save_image_or_video(io.forward_video_path(args.video_save_folder, clip.clip_name, light.index), frames, args.fps)
    cli.log.info("Saved video to %s", path)
    return written + 1


def load_gbuffers(args: argparse.Namespace, clip: data.GBufferClip, preprocessing: Preprocessing) -> dict[str, torch.Tensor]:
    """The clip's present passes as ``[1, 3, T, H, W]``; with --use_fixed_frame_ind one frame repeated over T."""
    if clip.missing_passes:
        cli.log.warning(
            "%s: no %s frames (files named *.<pass>.<ext>); the model gets an empty condition for them",
            clip.clip_name,
            ", ".join(clip.missing_passes),
        )
    gbuffers = {}
    for name, paths in clip.passes.items():
        video = load_frames(paths, dataclasses.replace(preprocessing, signed_exr=name == "normal"))[None]
        if args.use_fixed_frame_ind:
            video = video[:, :, args.fixed_frame_ind : args.fixed_frame_ind + 1].expand_as(video)
        gbuffers[name] = video
    return gbuffers


def validate(args: argparse.Namespace) -> None:
    cli.validate_common_arguments(args)
    if args.dataset_path is None:
        raise UserError("--dataset_path is required: the inverse renderer's gbuffer_frames folder.")
    if args.use_fixed_frame_ind and not 0 <= args.fixed_frame_ind < args.num_video_frames:
        raise UserError(f"--fixed_frame_ind {args.fixed_frame_ind}: must be in 0..{args.num_video_frames - 1}.")
    if args.env_strength <= 0:
        raise UserError(f"--env_strength {args.env_strength}: must be positive.")
    if args.stitch_chunks and not args.save_image:
        raise UserError("--stitch_chunks builds the clip videos from the per-frame files: add --save_image=True.")
    if args.stitch_chunks and not 0 <= 2 * args.overlap_n_frames <= args.num_video_frames:
        raise UserError("--overlap_n_frames: between 0 and half of --num_video_frames for --stitch_chunks.")


def stitch_clip_videos(args: argparse.Namespace, clips: list[data.GBufferClip], lightings: list[Lighting]) -> int:
    """One continuous relit video per inverse clip with several chunks (``<clip>/<chunk>`` forward clips)."""
    step = args.num_video_frames - args.overlap_n_frames
    chunks = defaultdict(list)
    for clip in clips:
        parent, _, chunk = clip.clip_name.rpartition("/")
        if parent and chunk.isdigit():
            chunks[parent].append((int(chunk), clip))
    written = 0
    for parent, members in chunks.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda member: member[0])
        length = members[-1][0] * step + members[-1][1].num_real_frames
        for light in lightings:
            files = [
                [io.forward_frame_path(args.video_save_folder, clip.clip_name, light.index, f) for f in range(args.num_video_frames)]
                for _, clip in members
            ]
            path = io.forward_video_path(args.video_save_folder, parent, light.index)
            write_stitched_video(path, files, step, length, args.fps)
            cli.log.info("Saved stitched video to %s", path)
            written += 1
    return written


def render_all(args: argparse.Namespace) -> str:
    validate(args)
    lightings = requested_lightings(args)
    camera = load_camera_rotations(Path(args.camera_poses), args.num_video_frames) if args.camera_poses else None
    preprocessing = cli.preprocessing(args)
    clips = data.gbuffer_clips(
        Path(args.dataset_path), args.num_video_frames, extensions=args.image_extensions or data.IMAGE_EXTENSIONS
    )
    todo = cli.pending_work(
        [(clip, lightings) for clip in clips],
        done=lambda clip, light: cli.all_exist(expected_outputs(args, clip, light))
        and not (args.contact_sheet and not contact_sheet_path(args.video_save_folder, clip.clip_name).is_file()),
        overwrite=args.overwrite,
    )
    if not todo:
        if args.stitch_chunks and distributed.layout().is_main:
            stitch_clip_videos(args, clips, lightings)
        return f"Nothing to do: all outputs of {len(clips)} clip(s) exist in {args.video_save_folder} (--overwrite redoes them)"

    device = cli.compute_device(args.device)
    environment_maps = {
        light.hdri: EnvironmentMap.from_file(
            light.hdri, strength=args.env_strength, flip=args.env_flip, rotation_deg=args.env_rotation, device=device
        )
        for light in lightings
        if light.hdri is not None
    }
    renderer, latent_shape = cli.build_renderer(args, ForwardRenderer, FORWARD_7B, device)
    share = cli.my_share(todo, renderer, latent_shape, whole_items=args.contact_sheet)  # this rank's part (torchrun)
    lighting_latents: dict[int, torch.Tensor] = {}
    written = 0
    with cli.Progress(share, args.num_steps, [len(lights) for _, lights in share]) as progress:
        for clip, lights in share:
            gbuffers = load_gbuffers(args, clip, preprocessing)
            placement = cli.clip_placement(args, preprocessing, next(iter(clip.passes.values()))[0])
            gbuffer_condition = renderer.encode_gbuffers(gbuffers)
            for light in lights:
                if light.index not in lighting_latents:
                    conditions = None
                    if light.hdri is not None:
                        conditions = environment_maps[light.hdri].conditions(
                            args.height,
                            args.width,
                            args.num_video_frames,
                            rotate_light=args.rotate_light,
                            camera_to_world=camera,
                        )
                    lighting_latents[light.index] = renderer.encode_lighting(conditions, gbuffer_condition)
            noises = [work_item_noise(latent_shape, light.seed, clip.clip_name, light.label, light.index) for light in lights]
            outputs = renderer.render(
                gbuffer_condition,
                [lighting_latents[light.index] for light in lights],
                noises,
                on_step=progress.step,
                padding_mask=cli.input_padding_mask(placement),
            )
            if not distributed.layout().writes_outputs:  # context parallel: the group's first rank writes
                continue
            outputs = [cli.restore_output(args, out, placement) for out in outputs]
            gbuffers = {name: cli.restore_output(args, video, placement) for name, video in gbuffers.items()}
            for light, decoded in zip(lights, outputs):
                written += write_outputs(args, clip, light, decoded)
            if args.contact_sheet:
                tiles = [(name, io.frames_to_uint8(video)[0]) for name, video in gbuffers.items()]
                tiles += [(light.hdri.stem if light.hdri else f"random {light.index}", io.frames_to_uint8(out)[0]) for light, out in zip(lights, outputs)]
                write_contact_sheet(args.video_save_folder, clip.clip_name, tiles)
                written += 1
            progress.item_done()
    if args.stitch_chunks:
        distributed.barrier()  # a clip's chunks may come from several ranks
        if distributed.layout().is_main:
            written += stitch_clip_videos(args, clips, lightings)
    return f"Done: {len(share)} clip(s), {written} file(s) written to {args.video_save_folder}"


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(render_all, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
