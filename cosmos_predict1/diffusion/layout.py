"""Every output file's name, in one place: the original's layout plus this project's additions.

Inverse renderer (root = ``--video_save_folder``):
    gbuffer_frames/<clip>/<chunk:04d>.<frame:04d>.<pass>.jpg    per-frame G-buffers (.png/.exr with --output_format)
    <clip'>.<pass>.mp4                                          per clip and pass (.jpg when the clip is one frame)
Forward renderer:
    <clip'>.relit_<k:04d>.mp4                                   per clip and lighting k (.jpg for one frame)
    relit_frames_<k:04d>/<clip>.<frame:04d>.jpg                 per-frame relit images (--save_image)
    relit_linear_<k:04d>/<clip>.<frame:04d>.exr                 linear-light frames (--output_linear)
Both:
    contact_sheets/<clip'>.png                                  --contact_sheet

``<clip'>`` is the clip name with every "/" replaced by "__"; elsewhere a "/" in a clip name nests folders.
"""

from __future__ import annotations

import os
from pathlib import Path

FLOAT_PASSES = ("normal", "depth")  # passes written as float EXR by --output_format exr


def flat_clip_name(clip_name: str) -> str:
    """A clip name as one file-name component: every "/" becomes "__"."""
    return clip_name.replace("/", "__")


def image_or_video_path(path: str | os.PathLike, num_frames: int) -> Path:
    """Where ``num_frames`` frames meant for the video ``path`` go: a one-frame "video" is a ``.jpg``."""
    path = Path(path)
    return path.with_suffix(".jpg") if num_frames == 1 else path


def gbuffer_frame_suffix(output_format: str, pass_name: str) -> str:
    """File ending of a G-buffer frame: jpg → .jpg (8 bit); png16 → .png (16 bit); exr → .exr for normal and
    depth (float), .png (16 bit) for the other passes."""
    if output_format == "jpg":
        return ".jpg"
    if output_format == "exr" and pass_name in FLOAT_PASSES:
        return ".exr"
    return ".png"


def inverse_frame_path(
    root: str | os.PathLike, clip_name: str, chunk_index: int, frame_index: int, pass_name: str, output_format: str
) -> Path:
    """``<root>/gbuffer_frames/<clip>/<chunk:04d>.<frame:04d>.<pass><suffix>``."""
    suffix = gbuffer_frame_suffix(output_format, pass_name)
    return Path(root, "gbuffer_frames", clip_name, f"{chunk_index:04d}.{frame_index:04d}.{pass_name}{suffix}")


def inverse_video_path(root: str | os.PathLike, clip_name: str, pass_name: str, num_frames: int) -> Path:
    """``<root>/<clip'>.<pass>.mp4``, a ``.jpg`` for one frame."""
    return image_or_video_path(Path(root, f"{flat_clip_name(clip_name)}.{pass_name}.mp4"), num_frames)


def forward_video_path(root: str | os.PathLike, clip_name: str, light_index: int, num_frames: int) -> Path:
    """``<root>/<clip'>.relit_<k:04d>.mp4``, a ``.jpg`` for one frame."""
    return image_or_video_path(Path(root, f"{flat_clip_name(clip_name)}.relit_{light_index:04d}.mp4"), num_frames)


def forward_frame_path(root: str | os.PathLike, clip_name: str, light_index: int, frame_index: int) -> Path:
    """``<root>/relit_frames_<k:04d>/<clip>.<frame:04d>.jpg``."""
    return Path(root, f"relit_frames_{light_index:04d}", f"{clip_name}.{frame_index:04d}.jpg")


def forward_linear_frame_path(root: str | os.PathLike, clip_name: str, light_index: int, frame_index: int) -> Path:
    """``<root>/relit_linear_<k:04d>/<clip>.<frame:04d>.exr``: linear-light relit frames."""
    return Path(root, f"relit_linear_{light_index:04d}", f"{clip_name}.{frame_index:04d}.exr")


def contact_sheet_path(root: str | os.PathLike, clip_name: str) -> Path:
    """``<root>/contact_sheets/<clip'>.png``."""
    return Path(root, "contact_sheets", f"{flat_clip_name(clip_name)}.png")
