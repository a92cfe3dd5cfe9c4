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

``<clip'>`` is the clip's output name: the clip name with every "/" replaced by "__"; elsewhere a "/" in a clip name
nests folders. Where several clips would get one output name (``a/b`` and ``a__b``), each of them gets
``<clip'>~<8 hex digits>`` instead, the digits from the SHA-256 of its clip name (``unique_names``): the same
names on every run (resume finds them), one warning line per such group, nothing overwritten; clips without a
collision keep the plain name. The frame extractor names its per-video folders by the same rule.

Names too long for the filesystem are shortened, the same way every time (the writers and the resume check both
get their names here): a folder name longer than the limit (255 bytes of UTF-8 on most filesystems; less where the
output folder's filesystem says so) and a file name whose clip part is longer than the limit minus ``RESERVED``
bytes (room for the writers' temporary name and for the file's own ending) keep the start of that part, cut to fit,
followed by ``~`` and 16 hex digits of the SHA-256 of the whole part; the ending (``.<pass>.mp4`` etc.) stays. All
outputs of one clip thus share one short name. A whole path longer than the filesystem allows cannot be shortened
this way: it is refused with one ``UserError`` line before any work (the resume check builds every name first).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from cosmos_predict1.errors import UserError
from cosmos_predict1.temporary import EXTRA_BYTES

FLOAT_PASSES = ("normal", "depth")  # passes written as float EXR by --output_format exr
NAME_MAX = 255  # bytes per name component on most filesystems (the limit used when the filesystem does not say)
PATH_MAX = 4096  # bytes per path on Linux (likewise)
TEMPORARY_RESERVE = EXTRA_BYTES  # what the writers' temporary name adds (cosmos_predict1.temporary): 32 bytes
ENDING_RESERVE = 32  # the longest fixed file ending, e.g. ".specular_albedo.mp4" (20 bytes)
RESERVED = TEMPORARY_RESERVE + ENDING_RESERVE
HASH_DIGITS = 16
DISAMBIGUATION_DIGITS = 8
NAME_FIX = "shorten the input file or folder names, or choose a shorter --video_save_folder"
MEDIA_ENDINGS = {"image": ".jpg", "video": ".mp4"}  # per-clip outputs (see media_kind)


def flat_clip_name(clip_name: str) -> str:
    """A clip name as one file-name component: every "/" becomes "__"."""
    return clip_name.replace("/", "__")


def flat_output_names(clip_names: Iterable[str], report: Callable[[str], object]) -> dict[str, str]:
    """Every clip name → its output name ``<clip'>``: ``flat_clip_name``, made unique by ``unique_names``."""
    return unique_names({name: flat_clip_name(name) for name in clip_names}, "clips", report)


def unique_names(wanted: Mapping[str, str], what: str, report: Callable[[str], object]) -> dict[str, str]:
    """Each source → the output name it ``wanted``, or, where several sources want one name, each of them →
    ``<name>~<first DISAMBIGUATION_DIGITS hex digits of the SHA-256 of the source>`` (the same on every run).

    ``report`` gets one line per such group (``what`` says what the sources are, e.g. "clips"). ``UserError`` if
    names still collide (a source already named like another's suffixed name).
    """
    groups: dict[str, list[str]] = {}
    for source, name in wanted.items():
        groups.setdefault(name, []).append(source)
    names = dict(wanted)
    for name, sources in groups.items():
        if len(sources) > 1:
            for source in sources:
                names[source] = disambiguated_name(name, source)
            report(
                f"The {what} {_listing(sources)} would share the output name {name}; they are written as "
                f"{_listing([names[source] for source in sources])} instead."
            )
    owners: dict[str, str] = {}
    for source, name in names.items():
        if owners.setdefault(name, source) != source:
            raise UserError(
                f"The {what} {owners[name]} and {source} would both be written as {name}; rename one of them."
            )
    return names


def disambiguated_name(name: str, source: str) -> str:
    """``<name>~<first DISAMBIGUATION_DIGITS hex digits of the SHA-256 of source>``: ``source``'s output name where
    other sources want ``name`` too (see ``unique_names``)."""
    digest = hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{name}~{digest[:DISAMBIGUATION_DIGITS]}"


def _listing(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


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
    name = f"{chunk_index:04d}.{frame_index:04d}.{pass_name}{suffix}"
    return _output_path(root, ["gbuffer_frames", *clip_name.split("/")], "", name)


def media_kind(num_frames: int) -> str:
    """What a clip of ``num_frames`` frames is, for messages and its file ending: "image" (one frame) or "video"."""
    return "image" if num_frames == 1 else "video"


def inverse_video_path(root: str | os.PathLike, output_name: str, pass_name: str, num_frames: int) -> Path:
    """``<root>/<clip'>.<pass>.mp4``, a ``.jpg`` for one frame; ``output_name`` = ``<clip'>``."""
    ending = MEDIA_ENDINGS[media_kind(num_frames)]
    return _output_path(root, [], output_name, f".{pass_name}{ending}")


def forward_video_path(root: str | os.PathLike, output_name: str, light_index: int, num_frames: int) -> Path:
    """``<root>/<clip'>.relit_<k:04d>.mp4``, a ``.jpg`` for one frame; ``output_name`` = ``<clip'>``."""
    ending = MEDIA_ENDINGS[media_kind(num_frames)]
    return _output_path(root, [], output_name, f".relit_{light_index:04d}{ending}")


def forward_frame_path(root: str | os.PathLike, clip_name: str, light_index: int, frame_index: int) -> Path:
    """``<root>/relit_frames_<k:04d>/<clip>.<frame:04d>.jpg``."""
    *folders, last = clip_name.split("/")
    return _output_path(root, [f"relit_frames_{light_index:04d}", *folders], last, f".{frame_index:04d}.jpg")


def forward_linear_frame_path(root: str | os.PathLike, clip_name: str, light_index: int, frame_index: int) -> Path:
    """``<root>/relit_linear_<k:04d>/<clip>.<frame:04d>.exr``: linear-light relit frames."""
    *folders, last = clip_name.split("/")
    return _output_path(root, [f"relit_linear_{light_index:04d}", *folders], last, f".{frame_index:04d}.exr")


def contact_sheet_path(root: str | os.PathLike, output_name: str) -> Path:
    """``<root>/contact_sheets/<clip'>.png``; ``output_name`` = ``<clip'>``."""
    return _output_path(root, ["contact_sheets"], output_name, ".png")


def shortened(part: str, limit: int) -> str:
    """``part`` if its UTF-8 form has at most ``limit`` bytes, else its start (whole characters) + "~" + the first
    ``HASH_DIGITS`` hex digits of its SHA-256, ``limit`` bytes at most."""
    data = part.encode("utf-8", "surrogateescape")
    if len(data) <= limit:
        return part
    digest = hashlib.sha256(data).hexdigest()[:HASH_DIGITS]
    start = data[: max(limit - HASH_DIGITS - 1, 0)].decode("utf-8", "ignore")  # a cut character is dropped
    return f"{start}~{digest}"


def _output_path(root: str | os.PathLike, folders: list[str], stem: str, ending: str) -> Path:
    """``root/<folders...>/<stem><ending>`` with names shortened to fit (see the module's docstring); ``UserError``
    when the whole path is still longer than the filesystem allows."""
    root = os.fspath(root)
    name_max, path_max, absolute_root = _limits(root, "" if os.path.isabs(root) else os.getcwd())
    parts = [shortened(folder, name_max) for folder in folders]
    parts.append(shortened(stem, name_max - RESERVED) + ending)
    path = Path(root, *parts)
    length = len(absolute_root) + sum(len(part.encode("utf-8", "surrogateescape")) + 1 for part in parts)
    if length + TEMPORARY_RESERVE >= path_max:
        raise UserError(
            f"Cannot write {path}: the path has {length} bytes, more than this filesystem allows ({path_max}, "
            f"with room for the temporary name); {NAME_FIX}."
        )
    return path


@functools.lru_cache(maxsize=64)
def _limits(root: str, cwd: str) -> tuple[int, int, bytes]:
    """(bytes per name, bytes per path, the absolute root as bytes) for outputs under ``root`` (relative to ``cwd``
    unless absolute): the smaller of the usual Linux limits and those of the filesystem of the nearest existing
    folder on the way to ``root``."""
    absolute = Path(os.path.normpath(os.path.join(cwd, root)))
    name_max, path_max = NAME_MAX, PATH_MAX
    existing = next((path for path in (absolute, *absolute.parents) if _is_folder(path)), None)
    if existing is not None and hasattr(os, "pathconf"):
        for key, usual in (("PC_NAME_MAX", NAME_MAX), ("PC_PATH_MAX", PATH_MAX)):
            try:
                value = os.pathconf(existing, key)
            except (OSError, ValueError):
                continue
            if value > 0 and key == "PC_NAME_MAX":
                name_max = min(usual, value)
            elif value > 0:
                path_max = min(usual, value)
    return name_max, path_max, os.fsencode(absolute)


def _is_folder(path: Path) -> bool:
    """``path.is_dir()``, False for a path the system cannot even look up (one too long, say)."""
    try:
        return path.is_dir()
    except OSError:
        return False
