"""Which input files form which clip, and which frames each unit of work loads (the original's datasets).

Inverse renderer: every image under the dataset folder (recursively) is grouped into clips by ``folder`` (its
directory) or ``webdataset`` (directory + base name up to the first dot); clips are cut into chunks of T frames that
overlap by O; a short chunk repeats its last frame. Forward renderer: the inverse renderer's ``gbuffer_frames``
folder, grouped by ``webdataset`` (``<clip>/<chunk>``), one clip per group with up to T frames of each G-buffer pass.

Deliberate differences from the original (none changes ordinary datasets): extensions match case-insensitively on
both sides; hidden files (name starting with ".") are skipped; in ``folder`` mode files directly in the dataset folder
form a clip named after that folder (the original names it "" and writes to the filesystem root); a clip shorter than
the overlap still yields its first chunk (the original drops it); a pass label is looked up in the base name only;
a forward group without any pass is skipped with a warning (the original crashes).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cosmos_predict1.errors import UserError

from .options import GBUFFER_PASSES

log = logging.getLogger(__name__)

GroupMode = Literal["folder", "webdataset"]
ChunkMode = Literal["first", "all", "drop_last"]

# Both renderers read these (the original's forward renderer skipped .exr; here it reads --output_format exr).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".tiff", ".bmp", ".exr")


@dataclass(frozen=True)
class WorkItem:
    """One chunk of one inverse-renderer clip: ``paths`` are T files (a short chunk repeats its last file);
    the first ``num_real_frames`` of them are distinct frames of the clip."""

    clip_name: str
    chunk_index: int
    paths: tuple[Path, ...]
    num_real_frames: int


@dataclass(frozen=True)
class GBufferClip:
    """One forward-renderer clip (``<inverse clip>/<chunk>``): per present pass, T files (padded by repeating the
    last, or the first T); ``num_real_frames`` = the most distinct frames any present pass has (≤ T)."""

    clip_name: str
    passes: Mapping[str, tuple[Path, ...]]
    num_real_frames: int

    @property
    def missing_passes(self) -> tuple[str, ...]:
        """The G-buffer passes this clip has no files for (the model gets a zero condition for them)."""
        return tuple(name for name in GBUFFER_PASSES if name not in self.passes)


def find_images(dataset_path: Path, extensions: Sequence[str]) -> list[str]:
    """Relative POSIX paths of the files under ``dataset_path`` (recursive, symlinked folders not followed) whose
    lower-cased name ends with one of ``extensions`` (compared lower-cased); hidden files are skipped.

    Only regular files and links to them are taken: anything else with such a name (a named pipe, a socket, a
    device, a broken link) is skipped with a warning, as reading a named pipe would block the run forever.
    """
    suffixes = tuple(extension.lower() for extension in extensions)
    found = []
    for folder, _, names in os.walk(dataset_path):
        for name in names:
            if not name.startswith(".") and name.lower().endswith(suffixes):
                path = Path(folder, name)
                if is_regular_file(path):
                    found.append(path.relative_to(dataset_path).as_posix())
    return found


def is_regular_file(path: Path) -> bool:
    """Whether ``path`` is a regular file or a link to one; a warning names anything else (pipe, socket, device,
    broken link), which is then skipped."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        log.warning("Skipping %s: cannot look it up (%s)", path, err.strerror or err)
        return False
    if stat.S_ISREG(mode):
        return True
    log.warning("Skipping %s: not a regular file (a named pipe, socket or device)", path)
    return False


def clip_key(relative_path: str, group_mode: GroupMode) -> str | None:
    """The clip a file belongs to: ``folder`` → its directory ("" at the top level); ``webdataset`` → directory +
    base name up to the first dot (``a.b/c.0001.jpg`` → ``a.b/c``), None for a base name without a dot."""
    directory, _, name = relative_path.rpartition("/")
    if group_mode == "folder":
        return directory
    if group_mode != "webdataset":
        raise ValueError(f"unknown group mode {group_mode!r}")
    stem, dot, _ = name.partition(".")
    if not stem or not dot:
        return None
    return f"{directory}/{stem}" if directory else stem


def group_clips(relative_paths: Sequence[str], group_mode: GroupMode) -> dict[str, list[str]]:
    """Files by clip key: keys in ascending string order, each clip's files sorted by relative path."""
    clips: dict[str, list[str]] = {}
    for path in relative_paths:
        key = clip_key(path, group_mode)
        if key is not None:
            clips.setdefault(key, []).append(path)
    return {key: sorted(clips[key]) for key in sorted(clips)}


def chunk_starts(num_files: int, num_frames: int, overlap: int, chunk_mode: ChunkMode) -> list[int]:
    """Start indices of the chunks of a clip of ``num_files`` files (chunk k = files[start : start + T]).

    Starts are 0, S, 2S, … below num_files − overlap with S = T − overlap (0 always); ``first`` keeps chunk 0,
    ``all`` keeps all, ``drop_last`` drops the last one if it is shorter than T.
    """
    if chunk_mode not in ("first", "all", "drop_last"):
        raise ValueError(f"unknown chunk mode {chunk_mode!r}")
    step = num_frames - overlap
    starts = [0, *range(step, num_files - overlap, step)]
    if chunk_mode == "first":
        return starts[:1]
    if chunk_mode == "drop_last" and num_files - starts[-1] < num_frames:
        return starts[:-1]
    return starts


def pad_to_length(paths: Sequence[Path], length: int) -> tuple[Path, ...]:
    """The first ``length`` paths, the last one repeated if there are fewer."""
    return (*paths[:length], *[paths[-1]] * (length - len(paths)))


def inverse_work_items(
    dataset_path: str | os.PathLike,
    num_frames: int,
    *,
    overlap: int = 0,
    chunk_mode: ChunkMode = "first",
    group_mode: GroupMode = "folder",
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> list[WorkItem]:
    """Every chunk of every clip under ``dataset_path``, clips in key order and chunks in index order.

    Raises ``UserError`` for a missing dataset folder, no matching files, an overlap outside [0, T) and a
    ``drop_last`` that leaves nothing.
    """
    root = Path(dataset_path)
    if not 0 <= overlap < num_frames:
        raise UserError(f"--overlap_n_frames must be in [0, {num_frames}) for {num_frames} frames, got {overlap}.")
    clips = group_clips(_find_or_fail(root, extensions), group_mode)
    if not clips:
        raise UserError(f"No image in {root} is named <name>.<extension>, which --group_mode webdataset needs.")
    root_clip_name = root.resolve().name or "root"
    if "" in clips and root_clip_name in clips:
        raise UserError(
            f"Images directly in {root} and in its sub-folder {root_clip_name}/ would share the clip name "
            f"{root_clip_name!r}; move the top-level images into a sub-folder."
        )
    items = []
    for key, files in clips.items():
        paths = [root / file for file in files]
        for index, start in enumerate(chunk_starts(len(paths), num_frames, overlap, chunk_mode)):
            chunk = paths[start : start + num_frames]
            items.append(WorkItem(key or root_clip_name, index, pad_to_length(chunk, num_frames), len(chunk)))
    if not items:
        raise UserError(f"--chunk_mode drop_last leaves nothing: every clip in {root} has < {num_frames} frames.")
    return items


def gbuffer_clips(
    dataset_path: str | os.PathLike,
    num_frames: int,
    *,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> list[GBufferClip]:
    """The forward renderer's clips under ``dataset_path`` (the inverse run's ``gbuffer_frames``), in key order.

    A pass's files are those of the group whose base name contains ``.<pass>.``. Groups without any pass are skipped
    with a warning; ``UserError`` if the folder is missing or no group has a pass.
    """
    root = Path(dataset_path)
    clips = []
    for key, files in group_clips(_find_or_fail(root, extensions), "webdataset").items():
        passes = {}
        for name in GBUFFER_PASSES:
            pass_files = [root / file for file in files if f".{name}." in file.rpartition("/")[2]]
            if pass_files:
                passes[name] = pass_files
        if not passes:
            log.warning("Skipping %s.*: no file name has a G-buffer pass (%s).", root / key, ", ".join(GBUFFER_PASSES))
            continue
        num_real_frames = min(num_frames, max(len(pass_files) for pass_files in passes.values()))
        padded = {name: pad_to_length(pass_files, num_frames) for name, pass_files in passes.items()}
        clips.append(GBufferClip(key, padded, num_real_frames))
    if not clips:
        raise UserError(
            f"No G-buffer images in {root}: expected <clip>/<chunk>.<frame>.<pass>.jpg with pass one of "
            f"{', '.join(GBUFFER_PASSES)}; point --dataset_path at the inverse run's gbuffer_frames folder."
        )
    return clips


def _find_or_fail(root: Path, extensions: Sequence[str]) -> list[str]:
    """``find_images`` with ``UserError`` for a missing folder or no match."""
    if not root.is_dir():
        problem = "is not a folder" if root.exists() else "does not exist"
        raise UserError(f"Dataset folder {root} {problem}; check --dataset_path.")
    files = find_images(root, extensions)
    if not files:
        raise UserError(
            f"No images in {root} (searched recursively for {' '.join(extensions)}); check --dataset_path, or "
            "list your files' endings with --image_extensions."
        )
    return files
