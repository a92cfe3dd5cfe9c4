"""Output integrity: whether an output file is complete, and that writing outputs stays inside the output folder.

``is_complete`` is the resume check (an output counts as done only if complete, so a truncated file that an older
version left under a final name is redone) and the writers' last check before a file gets its final name. It reads
a few hundred bytes per file and checks the end that each format writes last:

- JPEG: the start marker FFD8 and, as the last two bytes, the end marker FFD9 (compressed data never holds FFD9);
- PNG: the signature and, as the last 12 bytes, the IEND chunk;
- MP4: top-level boxes that fill the file exactly, one of them the movie box ``moov`` (ffmpeg writes it last);
- OpenEXR (single-part scan lines, as the writers write it): the magic number, a header that parses, and a table
  of chunk offsets (OpenEXR fills it last) whose chunks all lie inside the file;
- any other ending (reports): a regular file.

A link is never complete: it is rewritten, and the rename replaces the link itself. ``check_inside`` refuses a link
to a folder on the way from the output folder to an output (writes through it would land outside the folder).
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from cosmos_predict1.errors import UserError

JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
EXR_MAGIC = b"\x76\x2f\x31\x01"
EXR_NOT_SCANLINE_PARTS = 0x200 | 0x800 | 0x1000  # version flags: tiled, deep data, several parts
EXR_LINES_PER_CHUNK = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256}  # by compression
EXR_HEADER_LIMIT = 1 << 16  # bytes; the writers' headers take about 350


def is_complete(path: Path) -> bool:
    """Whether ``path`` is a regular file (not a link) holding a whole file of its format (see the module)."""
    try:
        info = path.lstat()
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    check = {".jpg": _jpeg, ".jpeg": _jpeg, ".png": _png, ".mp4": _mp4, ".exr": _exr}.get(path.suffix.lower())
    if check is None:
        return True
    try:
        with open(path, "rb") as stream:
            return check(stream, info.st_size)
    except (OSError, struct.error, ValueError, IndexError, KeyError):  # cut or garbled where a value should be
        return False


def _jpeg(stream: BinaryIO, size: int) -> bool:
    start = stream.read(2)
    stream.seek(size - 2)
    return start == JPEG_START and stream.read(2) == JPEG_END


def _png(stream: BinaryIO, size: int) -> bool:
    signature = stream.read(len(PNG_SIGNATURE))
    stream.seek(max(size - len(PNG_END), 0))
    return signature == PNG_SIGNATURE and size >= len(PNG_SIGNATURE) + len(PNG_END) and stream.read() == PNG_END


def _mp4(stream: BinaryIO, size: int) -> bool:
    """Top-level boxes (32-bit size + type; size 1: a 64-bit size follows; size 0: to the end) fill the file."""
    position, types = 0, set()
    while position < size:
        stream.seek(position)
        header = stream.read(8)
        if len(header) < 8:
            return False
        length, kind = struct.unpack(">I4s", header)
        if length == 1:
            (length,) = struct.unpack(">Q", stream.read(8))
        elif length == 0:
            length = size - position
        if length < 8:
            return False
        position += length
        types.add(kind)
    return position == size and b"moov" in types


def _exr(stream: BinaryIO, size: int) -> bool:
    """Magic, version, attributes (name NUL type NUL int32 size, value) up to a NUL, then one uint64 offset per
    chunk of ``EXR_LINES_PER_CHUNK`` lines; each chunk: int32 line, int32 byte count, data."""
    data = stream.read(min(size, EXR_HEADER_LIMIT))
    if data[:4] != EXR_MAGIC or struct.unpack_from("<I", data, 4)[0] & EXR_NOT_SCANLINE_PARTS:
        return False
    position, attributes = 8, {}
    while data[position] != 0:
        name_end = data.index(b"\0", position)
        type_end = data.index(b"\0", name_end + 1)
        (length,) = struct.unpack_from("<i", data, type_end + 1)
        value = type_end + 5
        attributes[data[position:name_end]] = data[value : value + length]
        position = value + length
    _, y_min, _, y_max = struct.unpack("<4i", attributes[b"dataWindow"])
    lines = EXR_LINES_PER_CHUNK.get(attributes[b"compression"][0])
    if lines is None or y_max < y_min:
        return False
    chunks = -(-(y_max - y_min + 1) // lines)
    stream.seek(position + 1)
    table = stream.read(8 * chunks)
    offsets = struct.unpack(f"<{chunks}Q", table)  # struct.error when the table is cut
    if not all(position < offset <= size - 8 for offset in offsets):
        return False
    stream.seek(max(offsets))
    _, length = struct.unpack("<ii", stream.read(8))
    return max(offsets) + 8 + length <= size


def check_inside(root: Path, paths: Iterable[Path]) -> None:
    """``UserError`` when a folder between ``root`` and one of ``paths`` (all under ``root``) is a symbolic link:
    writes through it would land outside ``root``. ``root`` itself may be a link."""
    checked: set[Path] = set()
    for path in paths:
        folder = root
        for part in path.relative_to(root).parts[:-1]:
            folder = folder / part
            if folder in checked:
                continue
            if folder.is_symlink():
                raise UserError(
                    f"Cannot write {path}: {folder} is a symbolic link to {os.readlink(folder)}, and outputs are "
                    "written only inside --video_save_folder; remove the link or choose another --video_save_folder."
                )
            checked.add(folder)
