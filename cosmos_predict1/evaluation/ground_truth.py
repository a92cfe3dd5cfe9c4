"""The ground-truth folder: one folder per clip, named like the renderer's clip (``image_1``, ``video1``, ``a/b``).

A clip folder holds, for each G-buffer pass it labels (``basecolor``, ``normal``, ``depth``, ``roughness``,
``metallic``), the optional ``mask`` (white = evaluate this pixel) and, under ``relit/``, each HDRI stem:

    <name>.<image suffix>             the same ground truth for every frame (an image, or a video of a still view)
    <frame>.<name>.<image suffix>     frame <frame> of a video (a number counted from 0, e.g. 0007.depth.png)
    <name>.<video suffix>             a video: its frame k is frame k of the clip (relit renders only)

Encodings: basecolor as an sRGB image; normal as (n + 1) / 2 in camera space (x right, y up, z towards the camera),
or the signed vector n in an ``.exr``; depth as any values proportional to the distance along the viewing axis
(0 or below = no ground truth), e.g. 16-bit PNG millimetres or float EXR metres; roughness, metallic in [0, 1].
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cosmos_predict1.errors import UserError

from .frames import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Frames, numbered_files, single_file

GBUFFER_PASSES = ("basecolor", "normal", "depth", "roughness", "metallic")
MASK = "mask"
RELIT_FOLDER = "relit"
_PASS_FILE = re.compile(rf"(\d+\.)?({'|'.join(GBUFFER_PASSES)})\.\w+")


def find_frames(folder: Path, name: str, videos: bool = False) -> Frames | None:
    """The ground truth called ``name`` in ``folder`` (see the module docstring), or None if there is none.

    ``videos``: also accept ``<name>.<video suffix>``. Two forms of the same name raise ``UserError``.
    """
    still = single_file(folder, name, IMAGE_SUFFIXES)
    video = single_file(folder, name, VIDEO_SUFFIXES) if videos else None
    numbered = numbered_files(folder, rf"(?P<index>\d+)\.{re.escape(name)}\.\w+")
    forms = [Frames(still=still)] if still else []
    forms += [Frames(video=video)] if video else []
    forms += [Frames(files=numbered)] if numbered else []
    if len(forms) > 1:
        raise UserError(f"{folder}: ground truth {name!r} is given both per frame and for the whole clip; keep one.")
    return forms[0] if forms else None


def ground_truth_clips(root: Path) -> dict[str, Path]:
    """Clip name (POSIX path relative to ``root``) → folder, for every folder under ``root`` that holds a G-buffer
    pass or a ``relit/`` folder. ``UserError`` if there is none."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"Ground-truth folder {root} does not exist; pass --ground_truth with your labelled data.")
    clips = {}
    for folder, subfolders, names in os.walk(root):
        path = Path(folder)
        if path.name == RELIT_FOLDER:
            continue
        if RELIT_FOLDER in subfolders or any(_PASS_FILE.fullmatch(name) for name in names):
            clips[path.relative_to(root).as_posix()] = path
    if not clips:
        raise UserError(
            f"No ground truth in {root}: expected folders with basecolor/normal/depth/roughness/metallic images "
            "or a relit/ folder (see README, Evaluate against ground truth)."
        )
    return dict(sorted(clips.items()))


def find_input(input_folder: Path, clip: str) -> Frames | None:
    """The renderer's input frames of ``clip`` under ``input_folder`` (its ``--dataset_path``): the folder
    ``<clip>/`` of frames (sorted by name), the image ``<clip>.<suffix>`` or the video ``<clip>.<suffix>``."""
    folder = Path(input_folder) / clip
    if folder.is_dir():
        images = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        images = [path for path in images if not path.name.startswith(".")]
        return Frames(files=dict(enumerate(images))) if images else None
    image = single_file(folder.parent, folder.name, IMAGE_SUFFIXES)
    if image is not None:
        return Frames(still=image)
    video = single_file(folder.parent, folder.name, VIDEO_SUFFIXES)
    return Frames(video=video) if video is not None else None
