"""Writing outputs: decoded videos → pixel arrays, and atomic writers for JPEG, 16-bit PNG, EXR and MP4.

Every writer writes a temporary file beside the target (``cosmos_predict1.temporary``: a marked name only this
program writes), checks that the encoder finished, flushes the file to disk (fsync), checks that it is complete
(``integrity.is_complete``) and only then renames it over the target. A file under a final name is therefore
complete by construction, and resuming can trust it. Parent folders are created as needed.
``prepare_output_folder`` checks the folder before a run and removes the temporary files of killed runs.

Any failed write removes its temporary file. A failure the user can fix is one ``UserError`` line, "Cannot write
<file>: <reason>; <fix>": the ``OSError``s of ``USER_WRITE_ERRORS`` (a full disk or quota, said in words,
permissions, a name too long; at a write, at close or at fsync), and the encoders' own failures
(``EncoderError``): OpenEXR's exceptions, ffmpeg exiting early or with a failed status (its own error line, read
from its captured messages), or a file that is incomplete although the encoder reported nothing. JPEG, PNG and
16-bit PNG are encoded in memory and then written, so their failures are plain ``OSError``s.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

import cv2
import imageio.v3 as iio
import numpy as np
import torch

from cosmos_predict1.errors import UserError
from cosmos_predict1.temporary import remove_stale, temporary_path

from .integrity import is_complete
from .layout import NAME_FIX, gbuffer_frame_suffix

log = logging.getLogger("cosmos_predict1")

JPEG_QUALITY = 85
# The original's imageio quality 5 (of 0–10): libx264 gets -crf int((1 − 5/10)·51), other encoders -qscale:v.
VIDEO_QUALITY = {"libx264": ["-crf", "25"]}
VIDEO_QUALITY_OTHER = ["-qscale:v", "16"]
EXR_CHANNELS = {1: "Y", 3: "RGB", 4: "RGBA"}
# Write failures the user can fix (full disk, quota, file size limit, permissions, read-only or clashing paths, names
# too long): one-line errors.
USER_WRITE_ERRORS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.ENAMETOOLONG,
}
WRITE_FIX = "check free space and permissions, or choose another --video_save_folder"
IN_WORDS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}
FFMPEG_CONTEXT = re.compile(r"^\[[^\]]*\]\s*")  # "[out#0/mp4 @ 0x55f6…] " before ffmpeg's messages


class EncoderError(Exception):
    """An encoder (OpenEXR, ffmpeg) could not write its file; ``str(err)`` is the reason."""


def frames_to_uint8(video: torch.Tensor) -> np.ndarray:
    """Decoded video ``[1, 3, T, H, W]`` or ``[3, T, H, W]`` in ~[−1, 1] → uint8 ``[T, H, W, 3]``.

    clamp(1 + x, 0, 2)/2 · 255, truncated (not rounded), every operation in ``video``'s own dtype as the original
    does: on the bf16 path (GPUs) the rounding of each bf16 step gives exactly the original's bytes.
    """
    if video.ndim == 5:
        if video.shape[0] != 1:
            raise ValueError(f"expected one video, got a batch of {video.shape[0]}")
        video = video[0]
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a video [3, T, H, W], got {list(video.shape)}")
    unit = (1 + video).clamp(0, 2) / 2
    return (unit.permute(1, 2, 3, 0) * 255).to(torch.uint8).contiguous().cpu().numpy()


def frames_to_unit(video: torch.Tensor) -> np.ndarray:
    """Decoded video ``[1, 3, T, H, W]`` or ``[3, T, H, W]`` → float32 ``[T, H, W, 3]`` in [0, 1] (no quantisation)."""
    video = video[0] if video.ndim == 5 else video
    return ((video.float() + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0).contiguous().cpu().numpy()


def frames_to_signed(video: torch.Tensor) -> np.ndarray:
    """Decoded video → float32 ``[T, H, W, 3]`` clamped to [−1, 1] (e.g. normals as signed vectors)."""
    video = video[0] if video.ndim == 5 else video
    return video.float().clamp(-1, 1).permute(1, 2, 3, 0).contiguous().cpu().numpy()


def unit_to_uint16(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats → uint16, rounded."""
    return np.round(np.clip(image, 0, 1) * 65535).astype(np.uint16)


def display_to_linear(image: np.ndarray) -> np.ndarray:
    """Inverse of the sRGB encoding: display values in [0, 1] → linear light (an approximation of HDR)."""
    return np.where(image <= 0.04045, image / 12.92, ((image + 0.055) / 1.055) ** 2.4).astype(np.float32)


def write_image(path: str | os.PathLike, frame: np.ndarray) -> None:
    """uint8 ``[H, W, 3]`` → ``.jpg``/``.jpeg`` (quality 85, Pillow's baseline 4:2:0) or ``.png``, by extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jpg", ".jpeg", ".png"):
        raise ValueError(f"write_image writes .jpg or .png, not {path.name}")
    options = {"quality": JPEG_QUALITY} if suffix != ".png" else {}
    frame = _checked(frame, np.uint8)
    with _atomic(path) as temporary:
        _write_bytes(temporary, iio.imwrite("<bytes>", frame, plugin="pillow", extension=suffix, **options))


def write_text(path: str | os.PathLike, text: str) -> None:
    """``text`` as a UTF-8 file (reports)."""
    with _atomic(Path(path)) as temporary:
        _write_bytes(temporary, text.encode("utf-8"))


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int) -> None:
    """uint8 ``[T, H, W, 3]`` → H.264 MP4 (see ``video_writer``)."""
    frames = _checked(frames, np.uint8, leading_axes=1)
    with video_writer(path, fps) as append:
        for frame in frames:
            append(frame)


@contextmanager
def video_writer(path: str | os.PathLike, fps: int) -> Iterator[Callable[[np.ndarray], None]]:
    """Stream uint8 ``[H, W, 3]`` frames into an MP4 written atomically, with the original's settings.

    The ffmpeg command of the original's imageio writer (same bytes): imageio-ffmpeg's ffmpeg and first available
    H.264 encoder, quality 5 (libx264: crf 25), yuv420p (an odd last row/column is dropped), no resizing to macro
    blocks, log level "warning". ffmpeg's messages are captured: ``EncoderError`` with ffmpeg's own error line when
    it stops early (a broken pipe while frames are sent) or exits with a failed status (say "Error writing
    trailer: No space left on device"); the warnings of a successful run are logged.
    """
    with _atomic(Path(path)) as temporary, tempfile.TemporaryFile() as messages:
        encoder: subprocess.Popen | None = None
        height = width = 0
        try:

            def append(frame: np.ndarray) -> None:
                nonlocal encoder, height, width
                frame = _checked(frame, np.uint8)
                if encoder is None:
                    height, width = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
                    if not height or not width:
                        raise UserError(
                            f"{path}: {frame.shape[0]}×{frame.shape[1]} frames are too small for an H.264 video "
                            "(at least 2×2); use larger inputs or --output_size model."
                        )
                    encoder = _start_ffmpeg(temporary, width, height, fps, messages)
                try:
                    encoder.stdin.write(np.ascontiguousarray(frame[:height, :width]))
                except BrokenPipeError as err:
                    encoder.wait()
                    raise EncoderError(f"ffmpeg stopped early: {_ffmpeg_error(messages, encoder)}") from err

            yield append
            if encoder is None:
                raise ValueError(f"{path}: a video needs at least one frame")
            with suppress(BrokenPipeError):  # ffmpeg has exited already: its status says why
                encoder.stdin.close()
            if encoder.wait() != 0:
                raise EncoderError(f"ffmpeg failed: {_ffmpeg_error(messages, encoder)}")
            for line in _ffmpeg_messages(messages):
                log.warning("ffmpeg, writing %s: %s", Path(path).name, line)
        finally:
            if encoder is not None and encoder.poll() is None:  # interrupted, or an exception in the caller's block
                encoder.kill()
                encoder.wait()
            if encoder is not None:
                with suppress(OSError):
                    encoder.stdin.close()


def _start_ffmpeg(path: Path, width: int, height: int, fps: int, messages: IO[bytes]) -> subprocess.Popen:
    """ffmpeg encoding raw RGB frames ``width`` × ``height`` from its stdin into the MP4 ``path``; its messages go
    to ``messages``. It runs in its own session, so a Ctrl-C or hang-up meant for the run does not cut the file."""
    import imageio_ffmpeg

    codec = _h264_encoder()
    size = f"{width}x{height}"
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        *("-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", size, "-pix_fmt", "rgb24", "-r", str(fps)),
        *("-i", "-", "-an", "-vcodec", codec, "-pix_fmt", "yuv420p", *VIDEO_QUALITY.get(codec, VIDEO_QUALITY_OTHER)),
        *("-v", "warning", "-f", "mp4", "-s", size, str(path)),
    ]
    return subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=messages, start_new_session=True
    )


def _h264_encoder() -> str:
    """The encoder imageio's writer picks: imageio-ffmpeg's first H.264 encoder that works (cached by it)."""
    try:
        from imageio_ffmpeg._io import get_first_available_h264_encoder
    except ImportError:  # moved in a later imageio-ffmpeg: its bundled ffmpeg has libx264
        return "libx264"
    return get_first_available_h264_encoder()


def _ffmpeg_messages(messages: IO[bytes]) -> list[str]:
    """ffmpeg's non-empty message lines so far, without their "[component @ address]" prefixes."""
    messages.seek(0)
    lines = messages.read().decode("utf-8", "replace").splitlines()
    return [FFMPEG_CONTEXT.sub("", line).strip() for line in lines if line.strip()]


def _ffmpeg_error(messages: IO[bytes], encoder: subprocess.Popen) -> str:
    """The first of ffmpeg's messages that reports an error, else its last message, else its exit status."""
    lines = _ffmpeg_messages(messages)
    errors = [line for line in lines if "error" in line.lower() or "invalid" in line.lower()]
    line = errors[0] if errors else lines[-1] if lines else f"exit status {encoder.returncode}"
    return line.rstrip(".")


def write_png16(path: str | os.PathLike, image: np.ndarray) -> None:
    """uint16 ``[H, W, 3]`` RGB → 16-bit PNG."""
    bgr = np.ascontiguousarray(_checked(image, np.uint16)[..., ::-1])
    with _atomic(Path(path)) as temporary:
        encoded, data = cv2.imencode(".png", bgr)  # the bytes cv2.imwrite writes
        if not encoded:
            raise EncoderError("OpenCV could not encode it as a 16-bit PNG")
        _write_bytes(temporary, data.tobytes())


def write_exr(path: str | os.PathLike, image: np.ndarray) -> None:
    """float32 ``[H, W, C]`` (C = 1: Y, 3: RGB, 4: RGBA) → 32-bit float OpenEXR, ZIP compression."""
    if image.dtype != np.float32 or image.ndim != 3 or image.shape[-1] not in EXR_CHANNELS:
        raise ValueError(f"expected float32 [H, W, 1|3|4], got {image.dtype} {list(image.shape)}")
    import OpenEXR  # only runs that write EXR need it

    pixels = np.ascontiguousarray(image[..., 0] if image.shape[-1] == 1 else image)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with _atomic(Path(path)) as temporary:
        try:
            OpenEXR.File(header, {EXR_CHANNELS[image.shape[-1]]: pixels}).write(str(temporary))
        except (RuntimeError, OSError) as err:  # OpenEXR reports a full disk as a RuntimeError with the reason
            reason = _first_line(err).replace(str(temporary), path.name if isinstance(path, Path) else str(path))
            raise EncoderError(f"OpenEXR could not write it ({reason})") from err


def write_gbuffer_frames(paths: list[Path], decoded: torch.Tensor, pass_name: str, output_format: str) -> None:
    """One file per frame of a decoded G-buffer video ``[1, 3, T, H, W]``, in ``output_format``.

    8-bit and 16-bit files hold (x + 1)/2 in [0, 1]; EXR depth holds the same value as float; EXR normals hold the
    signed vector x in [−1, 1].
    """
    suffix = gbuffer_frame_suffix(output_format, pass_name)
    if suffix == ".jpg":
        frames = frames_to_uint8(decoded)
        write = write_image
    elif suffix == ".png":
        frames = unit_to_uint16(frames_to_unit(decoded))
        write = write_png16
    else:
        frames = frames_to_signed(decoded) if pass_name == "normal" else frames_to_unit(decoded)
        write = write_exr
    for path, frame in zip(paths, frames):
        write(path, frame)


def write_clip(path: str | os.PathLike, frames: np.ndarray, fps: int) -> None:
    """uint8 ``[T, H, W, 3]`` → the clip's file: a JPEG for one frame, else an MP4 (names from ``layout``)."""
    if len(frames) == 1:
        write_image(path, frames[0])
    else:
        write_video(path, frames, fps)


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; after the block, flushes it to disk, checks that it is complete and
    renames it to ``path``; removes it on any failure.

    Failures the user can fix (``USER_WRITE_ERRORS``, ``EncoderError``) become one ``UserError`` line naming ``path``.
    """
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fix = NAME_FIX if error.errno == errno.ENAMETOOLONG else "choose another --video_save_folder"
        raise UserError(f"Cannot create output folder {folder}: {error.strerror or error}; {fix}.") from error
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"Output folder {folder} is not writable; fix its permissions or choose another folder.")
    temporary = temporary_path(path)
    try:
        yield temporary
        _flush_to_disk(temporary)
        if not is_complete(temporary):
            raise EncoderError("the encoder left an incomplete file without reporting an error")
        os.replace(temporary, path)
    except BaseException as error:
        message = _write_failure(path, error)  # before removing the temporary file: it may be what filled the disk
        temporary.unlink(missing_ok=True)
        if message is not None:
            raise UserError(message) from error
        raise


def _write_bytes(path: Path, data: bytes) -> None:
    """Create ``path`` (never an existing file or link) holding ``data``; errors of the write and of closing raise."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    with open(descriptor, "wb") as stream:
        stream.write(data)


def _flush_to_disk(path: Path) -> None:
    """fsync ``path``: its data is on the disk (or the error, a full disk say, raises) before it is renamed."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):  # a filesystem without fsync: nothing to flush
            raise
    finally:
        os.close(descriptor)


def _write_failure(path: Path, error: BaseException) -> str | None:
    """The one line for a failed write of ``path`` that the user can fix, or None (a bug: raised as it is)."""
    if isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG:
        return f"Cannot write {path}: {error.strerror} ({len(path.name.encode())}-byte name); {NAME_FIX}."
    if isinstance(error, OSError) and error.errno in USER_WRITE_ERRORS:
        reason = f"{IN_WORDS[error.errno]} ({error.strerror})" if error.errno in IN_WORDS else error.strerror
        return f"Cannot write {path}: {reason}; {WRITE_FIX}."
    if isinstance(error, EncoderError):
        full = " (the disk is full)" if _disk_full(path.parent) else ""
        return f"Cannot write {path}: {error}{full}; {WRITE_FIX}."
    return None


def _disk_full(folder: Path) -> bool:
    """Whether the filesystem of ``folder`` has (almost) no space left for this user."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs on this system
        return False
    return stats.f_bavail * stats.f_frsize < 2**20


def _first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message (its type when it has none)."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def prepare_output_folder(folder: str | os.PathLike) -> int:
    """Check early that ``folder`` can be created and written, then remove killed runs' temporary files from it.

    ``UserError`` if the nearest existing folder on its path is a file or not writable. Returns the number of
    temporary files removed (``cosmos_predict1.temporary.remove_stale``).
    """
    folder = Path(folder)
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        raise UserError(f"Output folder {folder}: {existing} is a file; choose another --video_save_folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"Output folder {folder} is not writable ({existing}); fix its permissions or choose another "
            "--video_save_folder."
        )
    return remove_stale(folder) if folder.is_dir() else 0


def _checked(array: np.ndarray, dtype: type, leading_axes: int = 0) -> np.ndarray:
    """``array`` if it has ``dtype`` and shape ``[*leading, H, W, 3]``, else ValueError."""
    if array.dtype != dtype or array.ndim != 3 + leading_axes or array.shape[-1] != 3:
        expected = f"{np.dtype(dtype).name} [{'T, ' * leading_axes}H, W, 3]"
        raise ValueError(f"expected {expected}, got {array.dtype} {list(array.shape)}")
    return array
