"""Where a renderer run left its outputs (``--video_save_folder``), per clip and chunk.

Inverse runs: ``gbuffer_frames/<clip>/<chunk:04d>.<frame:04d>.<pass>.<jpg|png|exr>``. Forward runs, per lighting
index k: ``relit_frames_<k:04d>/<clip>/<chunk:04d>.<frame:04d>.jpg`` (with ``--save_image=True``), else the clip
file ``<clip with "/" → "__">__<chunk:04d>.relit_<k:04d>.<mp4|jpg>`` that every forward run writes.
"""

from __future__ import annotations

import re
from pathlib import Path

from cosmos_predict1.diffusion.layout import disambiguated_name, flat_clip_name
from cosmos_predict1.errors import UserError

from .frames import IMAGE_SUFFIXES, Frames

INVERSE, FORWARD = "inverse", "forward"
GBUFFER_FRAMES = "gbuffer_frames"
_RELIT_FILE = re.compile(r".+\.relit_(?P<light>\d{4})\.(mp4|jpg)")
_RELIT_FOLDER = re.compile(r"relit_frames_(?P<light>\d{4})")


def run_kind(folder: Path) -> str:
    """INVERSE or FORWARD from the files in ``folder``; ``UserError`` if it holds neither (or both)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"Prediction folder {folder} does not exist; pass a renderer's --video_save_folder.")
    inverse = (folder / GBUFFER_FRAMES).is_dir()
    forward = bool(light_indices(folder))
    if inverse == forward:
        what = "both G-buffer frames and relit outputs" if inverse else "no gbuffer_frames/ folder and no relit output"
        raise UserError(f"{folder} holds {what}; pass the --video_save_folder of one inverse or forward run.")
    return INVERSE if inverse else FORWARD


def light_indices(folder: Path) -> list[int]:
    """The lighting indices k of the relit outputs in a forward run's folder."""
    found = set()
    for path in Path(folder).iterdir():
        match = _RELIT_FILE.fullmatch(path.name) if path.is_file() else _RELIT_FOLDER.fullmatch(path.name)
        if match:
            found.add(int(match["light"]))
    return sorted(found)


def inverse_chunks(folder: Path, clip: str, pass_name: str) -> dict[int, Frames]:
    """Chunk index → the predicted frames of ``pass_name`` for ``clip`` (empty if the run has none)."""
    return _chunks(chunk_frame_files(Path(folder) / GBUFFER_FRAMES / clip, re.escape(pass_name)))


def forward_chunks(folder: Path, clip: str, light: int) -> dict[int, Frames]:
    """Chunk index → the relit frames of ``clip`` under lighting ``light``: per-frame JPEGs where the run saved
    them, else its clip file (a video, or a JPEG for one frame), under the original's name or, where the run had to
    tell clips apart, its disambiguated one (``layout.unique_names``)."""
    folder = Path(folder)
    chunks = _chunks(chunk_frame_files(folder / f"relit_frames_{light:04d}" / clip, None))
    flat = flat_clip_name(clip)
    pattern = re.compile(rf"{re.escape(flat)}__(?P<chunk>\d{{4}})(?P<tag>~[0-9a-f]+)?\.relit_{light:04d}\.(mp4|jpg)")
    for path in sorted(folder.glob(f"{glob_escape(flat)}__*.relit_{light:04d}.*")):
        match = pattern.fullmatch(path.name)
        if not match or int(match["chunk"]) in chunks:
            continue
        name = f"{flat}__{match['chunk']}"
        if match["tag"] and f"{name}{match['tag']}" != disambiguated_name(name, f"{clip}/{match['chunk']}"):
            continue  # another clip's output, renamed apart from this one's
        chunks[int(match["chunk"])] = Frames(video=path) if path.suffix == ".mp4" else Frames(files={0: path})
    return dict(sorted(chunks.items()))


def chunk_frame_files(folder: Path, suffix_pattern: str | None) -> dict[int, dict[int, Path]]:
    """Image files ``<chunk>.<frame>[.<suffix>].<ext>`` of ``folder``: chunk → frame → path."""
    tail = rf"\.{suffix_pattern}" if suffix_pattern else ""
    pattern = re.compile(rf"(?P<chunk>\d+)\.(?P<frame>\d+){tail}\.\w+")
    by_chunk: dict[int, dict[int, Path]] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            match = pattern.fullmatch(path.name)
            if match and path.suffix.lower() in IMAGE_SUFFIXES:
                by_chunk.setdefault(int(match["chunk"]), {})[int(match["frame"])] = path
    return by_chunk


def glob_escape(text: str) -> str:
    """``text`` with glob metacharacters made literal."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _chunks(by_chunk: dict[int, dict[int, Path]]) -> dict[int, Frames]:
    return {chunk: Frames(files=files) for chunk, files in sorted(by_chunk.items())}
