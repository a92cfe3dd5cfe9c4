"""Writing outputs: decoded videos → pixel arrays, and atomic writers for JPEG, 16-bit PNG, EXR and MP4.

Every writer first writes ``.<stem>.tmp-<pid><suffix>`` next to the target and renames it over the target only once
it is complete, so an interrupted run never leaves a truncated file under a final name (resuming can trust that an
existing output is whole). Parent folders are created as needed. ``prepare_output_folder`` removes the temporary
files of killed runs (only names of this pattern whose process is gone) and checks the folder before a run.

A write that fails for a reason the user can fix is one ``UserError`` line, "Cannot write <file>: <reason>; <fix>",
and its temporary file is removed: the ``OSError``s of ``USER_WRITE_ERRORS`` (a full disk, a quota, permissions, a
name too long), and the encoders' own failures (``EncoderError``): OpenEXR's exceptions, and ffmpeg exiting before
the video is complete (its broken pipe, or its exit status). JPEG, PNG and 16-bit PNG are encoded in memory and then
written, so their failures are plain ``OSError``s.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import cv2
import imageio.v2 as imageio_v2
import imageio.v3 as iio
import numpy as np
import torch

from cosmos_predict1.errors import UserError

from .layout import NAME_FIX, gbuffer_frame_suffix

JPEG_QUALITY = 85
VIDEO_QUALITY = 5  # imageio's 0–10 scale; libx264 gets -crf int((1 − 5/10)·51) = 25
EXR_CHANNELS = {1: "Y", 3: "RGB", 4: "RGBA"}
TEMPORARY_NAME = re.compile(r"\.(?P<stem>.+)\.tmp-(?P<pid>\d+)(?P<suffix>\.[^.]+)?")  # see temporary_path
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
    with _atomic(path) as temporary:  # encoded in memory: a failed write is a plain OSError
        temporary.write_bytes(iio.imwrite("<bytes>", frame, plugin="pillow", extension=suffix, **options))


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int) -> None:
    """uint8 ``[T, H, W, 3]`` → H.264 MP4 (see ``video_writer``)."""
    frames = _checked(frames, np.uint8, leading_axes=1)
    with video_writer(path, fps) as append:
        for frame in frames:
            append(frame)


@contextmanager
def video_writer(path: str | os.PathLike, fps: int) -> Iterator[Callable[[np.ndarray], None]]:
    """Stream uint8 ``[H, W, 3]`` frames into an MP4 written atomically, with the original's settings.

    imageio's ffmpeg writer: quality 5 (libx264: crf 25), yuv420p (an odd last row/column is dropped), no resizing
    to macro blocks, ffmpeg log level "warning", encoder = imageio-ffmpeg's first available H.264 encoder.
    ``EncoderError`` (a ``UserError`` line from ``_atomic``) when ffmpeg stops early: a broken pipe while frames are
    sent, or a failed exit (a full disk, say), which imageio does not report itself.
    """
    with _atomic(Path(path)) as temporary:
        writer = None
        process: subprocess.Popen | None = None
        appended = 0
        try:

            def append(frame: np.ndarray) -> None:
                nonlocal writer, process, appended
                frame = _checked(frame, np.uint8)
                height, width = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
                if writer is None:
                    if not height or not width:
                        raise UserError(
                            f"{path}: {frame.shape[0]}×{frame.shape[1]} frames are too small for an H.264 video "
                            "(at least 2×2); use larger inputs or --output_size model."
                        )
                    writer = imageio_v2.get_writer(
                        temporary,
                        format="FFMPEG",
                        fps=fps,
                        quality=VIDEO_QUALITY,
                        macro_block_size=1,
                        ffmpeg_log_level="warning",
                        ffmpeg_params=["-s", f"{width}x{height}"],
                        output_params=["-f", "mp4"],
                    )
                try:
                    writer.append_data(np.ascontiguousarray(frame[:height, :width]))
                except OSError as err:  # imageio-ffmpeg: "[Errno 32] Broken pipe" + ffmpeg's command line
                    raise EncoderError(f"ffmpeg stopped early ({_first_line(err)})") from err
                process = process or _ffmpeg_process(writer)
                appended += 1

            yield append
        finally:
            if writer is not None:
                writer.close()
        if writer is not None:
            _check_video(temporary, process, appended)


def _ffmpeg_process(writer: object) -> subprocess.Popen | None:
    """The ffmpeg process behind an imageio ffmpeg writer (imageio 2 and imageio-ffmpeg internals), or None where
    they differ; read while the writer is open, to learn ffmpeg's exit status after closing it."""
    generator = getattr(writer, "_write_gen", None)
    frame = getattr(generator, "gi_frame", None)
    process = frame.f_locals.get("p") if frame is not None else None
    return process if isinstance(process, subprocess.Popen) else None


def _check_video(path: Path, process: subprocess.Popen | None, frames: int) -> None:
    """``EncoderError`` unless ffmpeg wrote the whole video: its exit status where known, else the frames in the file
    (ffmpeg that fails, on a full disk say, leaves a truncated file and imageio says nothing)."""
    if process is not None:
        if process.returncode != 0:
            raise EncoderError(f"ffmpeg failed (exit status {process.returncode})")
        return
    import imageio_ffmpeg

    try:
        written = imageio_ffmpeg.count_frames_and_secs(str(path))[0]
    except (OSError, RuntimeError) as err:
        raise EncoderError(f"ffmpeg wrote an unreadable video ({_first_line(err)})") from err
    if written != frames:
        raise EncoderError(f"ffmpeg wrote {written} of {frames} frames")


def write_png16(path: str | os.PathLike, image: np.ndarray) -> None:
    """uint16 ``[H, W, 3]`` RGB → 16-bit PNG."""
    bgr = np.ascontiguousarray(_checked(image, np.uint16)[..., ::-1])
    with _atomic(Path(path)) as temporary:
        encoded, data = cv2.imencode(".png", bgr)  # the bytes cv2.imwrite writes; a failed write is a plain OSError
        if not encoded:
            raise EncoderError("OpenCV could not encode it as a 16-bit PNG")
        temporary.write_bytes(data.tobytes())


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
    """Yields a temporary path beside ``path`` and renames it to ``path`` after the block; removes it on failure.

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
        os.replace(temporary, path)
    except BaseException as error:
        message = _write_failure(path, error)  # before removing the temporary file: it may be what filled the disk
        temporary.unlink(missing_ok=True)
        if message is not None:
            raise UserError(message) from error
        raise


def _write_failure(path: Path, error: BaseException) -> str | None:
    """The one line for a failed write of ``path`` that the user can fix, or None (a bug: raised as it is)."""
    if isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG:
        return f"Cannot write {path}: {error.strerror} ({len(path.name.encode())}-byte name); {NAME_FIX}."
    if isinstance(error, OSError) and error.errno in USER_WRITE_ERRORS:
        return f"Cannot write {path}: {error.strerror}; {WRITE_FIX}."
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


def temporary_path(path: Path) -> Path:
    """``.<stem>.tmp-<pid><suffix>`` beside ``path``: where this process writes ``path`` before renaming it."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def prepare_output_folder(folder: str | os.PathLike) -> int:
    """Check early that ``folder`` can be created and written, then remove killed runs' temporary files from it.

    ``UserError`` if the nearest existing folder on its path is a file or not writable. Returns the number of
    temporary files removed (see ``remove_stale_temporaries``).
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
    return remove_stale_temporaries(folder) if folder.is_dir() else 0


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files (``temporary_path`` names) that killed runs left anywhere under ``folder``.

    Only files whose process id no longer runs on this machine are removed, so files that a concurrent run is still
    writing stay. Other hidden files are never touched; on systems without POSIX signals nothing is removed.
    Returns the number of files removed.
    """
    if os.name != "posix":
        return 0
    removed = 0
    for root, _, names in os.walk(folder):
        for name in names:
            match = TEMPORARY_NAME.fullmatch(name)
            if match and not _process_running(int(match["pid"])):
                with suppress(OSError):
                    Path(root, name).unlink()
                    removed += 1
    return removed


def _process_running(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or not a valid process id at all
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def _checked(array: np.ndarray, dtype: type, leading_axes: int = 0) -> np.ndarray:
    """``array`` if it has ``dtype`` and shape ``[*leading, H, W, 3]``, else ValueError."""
    if array.dtype != dtype or array.ndim != 3 + leading_axes or array.shape[-1] != 3:
        expected = f"{np.dtype(dtype).name} [{'T, ' * leading_axes}H, W, 3]"
        raise ValueError(f"expected {expected}, got {array.dtype} {list(array.shape)}")
    return array
