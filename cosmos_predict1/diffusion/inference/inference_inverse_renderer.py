"""Inverse rendering: images or video frames → G-buffers (basecolor, normal, depth, roughness, metallic).

Same command line, folder layout and file names as the original:

    python cosmos_predict1/diffusion/inference/inference_inverse_renderer.py --checkpoint_dir checkpoints \
        --diffusion_transformer_dir Diffusion_Renderer_Inverse_Cosmos_7B \
        --dataset_path=asset/examples/image_examples/ --num_video_frames 1 --group_mode webdataset \
        --video_save_folder=asset/example_results/image_delighting/ --save_video=False

Work items already complete on disk are skipped (``--overwrite`` redoes them), so rerunning an interrupted command
finishes the rest.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file from a checkout: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from cosmos_predict1.checkpoints import INVERSE_MODEL
from cosmos_predict1.diffusion import cli, data, distributed, io
from cosmos_predict1.diffusion.contact_sheet import contact_sheet_path, write_contact_sheet
from cosmos_predict1.diffusion.frames import read_image
from cosmos_predict1.diffusion.stitch import write_stitched_video
from cosmos_predict1.diffusion.frames import load_frames
from cosmos_predict1.diffusion.networks import INVERSE_7B
from cosmos_predict1.diffusion.renderer import GBUFFER_INDEX, INVERSE_DEFAULT_PASSES, InverseRenderer, work_item_noise
from cosmos_predict1.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Cosmos DiffusionRenderer: inverse rendering (de-lighting).")
    cli.add_common_arguments(parser)
    add = parser.add_argument
    add(
        "--diffusion_transformer_dir",
        type=str,
        default=INVERSE_MODEL,
        help="DiT folder inside --checkpoint_dir (or a path): the released model or any fine-tune of the same 7B "
        "inverse renderer in the released layout (model.pt, optional config.json).",
    )
    add(
        "--inference_passes",
        type=str,
        nargs="+",
        default=list(INVERSE_DEFAULT_PASSES),
        help=f"G-buffers to produce, in this order; any of: {', '.join(GBUFFER_INDEX)}.",
    )
    add("--normalize_normal", type=cli.str2bool, default=False, help="Renormalise the normal pass to unit vectors.")
    add("--save_image", type=cli.str2bool, default=True, help="Write per-frame JPEGs under gbuffer_frames/.")
    add("--save_video", type=cli.str2bool, default=True, help="Write one video per clip and pass (.jpg for 1 frame).")
    add("--dataset_path", type=str, default=None, help="Folder of input images or video frames (searched recursively).")
    add("--overlap_n_frames", type=int, default=0, help="Frames shared by consecutive chunks of a clip.")
    add("--chunk_mode", type=str, default="first", choices=["first", "all", "drop_last"], help="Which chunks to process.")
    add("--group_mode", type=str, default="folder", choices=["folder", "webdataset"], help="How files form clips.")
    add("--image_extensions", type=str, nargs="+", default=None, help="File endings to read (default: common images).")
    add("--resize_resolution", type=int, nargs="+", default=None, help="Resize to H W (or shorter side) before the crop.")
    add(
        "--output_format",
        type=str,
        default="jpg",
        choices=io.OUTPUT_FORMATS,
        help="Per-frame G-buffer files: jpg (8 bit, as the original); png16 (16-bit PNG); exr (float EXR for depth "
        "and normal — normals as signed vectors — and 16-bit PNG for the others). Videos stay 8-bit MP4.",
    )
    add(
        "--stitch_chunks",
        type=cli.str2bool,
        default=False,
        help="With --chunk_mode all: write one continuous <clip>.<pass>.mp4 per clip, cross-fading the "
        "--overlap_n_frames frames that neighbouring chunks share (needs --save_image=True).",
    )
    return parser


def frame_paths(args: argparse.Namespace, item: data.WorkItem, pass_name: str) -> list[Path]:
    """The per-frame files of one pass of one work item."""
    suffix = io.gbuffer_frame_suffix(args.output_format, pass_name)
    return [
        io.inverse_frame_path(args.video_save_folder, item.clip_name, item.chunk_index, f, pass_name).with_suffix(suffix)
        for f in range(len(item.paths))
    ]


def expected_outputs(args: argparse.Namespace, item: data.WorkItem, pass_name: str, with_video: bool) -> list[Path]:
    """Every file one pass of one work item writes (``with_video``: its own clip video; False when stitched)."""
    paths = frame_paths(args, item, pass_name) if args.save_image else []
    if with_video:
        video = io.inverse_video_path(args.video_save_folder, item.clip_name, pass_name)
        paths.append(io.image_or_video_path(video, len(item.paths)))
    return paths


def write_outputs(args: argparse.Namespace, item: data.WorkItem, pass_name: str, decoded, with_video: bool) -> int:
    """Write one pass of one work item; returns the number of files written."""
    written = 0
    if args.save_image:
        paths = frame_paths(args, item, pass_name)
        io.write_gbuffer_frames(paths, decoded, pass_name, args.output_format)
        written += len(paths)
    if with_video:
        frames = io.frames_to_uint8(decoded)
        path = io.save_image_or_video(io.inverse_video_path(args.video_save_folder, item.clip_name, pass_name), frames, args.fps)
        cli.log.info("Saved video to %s", path)
        written += 1
    return written


def validate(args: argparse.Namespace) -> None:
    cli.validate_common_arguments(args)
    unknown = [name for name in args.inference_passes if name not in GBUFFER_INDEX]
    if unknown:
        raise UserError(f"--inference_passes: unknown pass {unknown[0]!r}; choose from {', '.join(GBUFFER_INDEX)}.")
    if len(set(args.inference_passes)) != len(args.inference_passes):
        raise UserError("--inference_passes: a pass is listed twice.")
    if not args.save_image and not args.save_video:
        raise UserError("--save_image and --save_video are both False: nothing would be written.")
    if args.dataset_path is None:
        raise UserError("--dataset_path is required: the folder of input images or video frames.")
    if args.stitch_chunks and not args.save_image:
        raise UserError("--stitch_chunks builds the clip videos from the per-frame files: keep --save_image=True.")
    if args.stitch_chunks and 2 * args.overlap_n_frames > args.num_video_frames:
        raise UserError("--stitch_chunks: --overlap_n_frames may be at most half of --num_video_frames.")


def stitch_clip_videos(args: argparse.Namespace, items: list[data.WorkItem], processed: set[str]) -> int:
    """One continuous video per multi-chunk clip and pass; redone for clips processed now or missing a video."""
    step = args.num_video_frames - args.overlap_n_frames
    chunks = defaultdict(list)
    for item in items:
        chunks[item.clip_name].append(item)
    written = 0
    for clip, clip_chunks in chunks.items():
        if len(clip_chunks) < 2:
            continue
        length = clip_chunks[-1].chunk_index * step + clip_chunks[-1].num_real_frames
        for name in args.inference_passes:
            path = io.inverse_video_path(args.video_save_folder, clip, name)
            if clip in processed or args.overwrite or not path.is_file():
                files = [frame_paths(args, chunk, name) for chunk in clip_chunks]
                signed = name == "normal" and io.gbuffer_frame_suffix(args.output_format, name) == ".exr"
                read = (lambda p: (read_image(p) + 1) / 2) if signed else read_image
                write_stitched_video(path, files, step, length, args.fps, read)
                cli.log.info("Saved stitched video to %s", path)
                written += 1
    return written


def render_all(args: argparse.Namespace) -> str:
    validate(args)
    preprocessing = cli.preprocessing(args, gamma_encode_exr=True)
    items = data.inverse_work_items(
        Path(args.dataset_path),
        args.num_video_frames,
        overlap=args.overlap_n_frames,
        chunk_mode=args.chunk_mode,
        group_mode=args.group_mode,
        extensions=args.image_extensions or data.IMAGE_EXTENSIONS,
    )
    chunks_per_clip = defaultdict(int)
    for item in items:
        chunks_per_clip[item.clip_name] += 1
    stitched = {clip for clip, count in chunks_per_clip.items() if args.stitch_chunks and count > 1}
    with_video = {item.clip_name: args.save_video and item.clip_name not in stitched for item in items}
    todo = cli.pending_work(
        [(item, args.inference_passes) for item in items],
        done=lambda item, name: cli.all_exist(expected_outputs(args, item, name, with_video[item.clip_name]))
        and not (args.contact_sheet and item.chunk_index == 0 and not contact_sheet_path(args.video_save_folder, item.clip_name).is_file()),
        overwrite=args.overwrite,
    )
    if not todo:
        if stitched and distributed.layout().is_main:
            stitch_clip_videos(args, items, processed=set())
        return f"Nothing to do: all outputs of {len(items)} work item(s) exist in {args.video_save_folder} (--overwrite redoes them)"

    device = cli.compute_device(args.device)
    renderer, latent_shape = cli.build_renderer(args, InverseRenderer, INVERSE_7B, device)
    share = cli.my_share(todo, renderer, latent_shape, whole_items=args.contact_sheet)  # this rank's part (torchrun)
    written = 0
    with cli.Progress(share, args.num_steps, [len(passes) for _, passes in share]) as progress:
        for item, passes in share:
            video = load_frames(item.paths, preprocessing)[None]
            placement = cli.clip_placement(args, preprocessing, item.paths[0])
            noises = [work_item_noise(latent_shape, args.seed, item.clip_name, item.chunk_index, p) for p in passes]
            outputs = renderer.render(
                video,
                passes,
                noises,
                normalize_normal=args.normalize_normal,
                on_step=progress.step,
                padding_mask=cli.input_padding_mask(placement),
            )
            if not distributed.layout().writes_outputs:  # context parallel: the group's first rank writes
                continue
            outputs = {name: cli.restore_output(args, out, placement) for name, out in outputs.items()}
            video = cli.restore_output(args, video, placement)
            for name in passes:
                written += write_outputs(args, item, name, outputs[name], with_video[item.clip_name])
            if args.contact_sheet and item.chunk_index == 0:
                tiles = [("input", io.frames_to_uint8(video)[0])]
                tiles += [(name, io.frames_to_uint8(outputs[name])[0]) for name in passes]
                write_contact_sheet(args.video_save_folder, item.clip_name, tiles)
                written += 1
            progress.item_done()
    if stitched:
        distributed.barrier()  # a clip's chunks may come from several ranks
        if distributed.layout().is_main:
            written += stitch_clip_videos(args, items, processed={item.clip_name for item, _ in todo})
    return f"Done: {len(share)} work item(s), {written} file(s) written to {args.video_save_folder}"


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(render_all, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
