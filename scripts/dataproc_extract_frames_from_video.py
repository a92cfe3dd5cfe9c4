"""Extract the frames of every video in --input_folder to <output_folder>/<video stem>/frame_<nnnnn>.jpg.

The frames are JPEGs of quality 95, numbered from 0 in the order they are saved, ready for the inverse renderer
with --group_mode folder. Example (the README's video preparation step):

    python scripts/dataproc_extract_frames_from_video.py --input_folder asset/examples/video_examples/ \\
        --output_folder asset/examples/video_frames_examples/ --frame_rate 24 --resize 1280x704 --max_frames=57

Differences from the original script:
  * videos are decoded with the ffmpeg binary shipped by imageio-ffmpeg (no system ffmpeg or OpenCV video I/O);
  * --frame_rate resamples: output frame k is the source frame whose timestamp is nearest to k / frame_rate (ties go
    to the later frame; a constant source frame rate is assumed), so 30 fps -> 24 fps keeps 4 frames of every 5.
    The original kept every n-th frame with n = max(1, int(int(source fps) / frame_rate)), so 30 -> 24 fps kept
    every frame; --frame_selection original does exactly that. Without --frame_rate every frame is kept. A rate
    outside 0.001-1000 fps is an error, and so is a --resize side outside 1-8192 pixels;
  * --resize_mode crop scales to cover WIDTHxHEIGHT keeping the aspect ratio, then cuts the centre; the default,
    stretch, resizes to exactly WIDTHxHEIGHT like the original;
  * .mp4 .mov .avi .mkv .webm files (any letter case) are found, in sorted order; other entries with these endings
    (a named pipe, a socket, a device) are skipped with a warning, never read;
  * frame_*.jpg left in an output folder by an earlier run are removed first; every frame is written under a
    temporary name and renamed, so no half-written JPEG is ever visible;
  * a video that cannot be read is reported in one line and skipped, no folder is left for it, and the script ends
    with exit code 2 after the other videos are done; an output folder that cannot be written ends the script at
    once with one line and exit code 2, Ctrl-C with exit code 130, an internal error with one line and exit code 1
    (--debug shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import stat
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

if importlib.util.find_spec("cosmos_predict1") is None:  # run as `python scripts/...` without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosmos_predict1.boundary import guard
from cosmos_predict1.diffusion.pixel_limit import check_frame_size
from cosmos_predict1.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm")
FRAME_SELECTIONS = ("timestamp", "original")
JPEG_QUALITY = 95
FRAME_RATE_RANGE = (0.001, 1000.0)  # frames per second: beyond 1000 a video would only repeat frames
MAX_SIDE = 8192  # pixels per side of --resize


class VideoReadError(Exception):
    """A video that ffmpeg cannot decode."""


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x704"`` (any letter case of the x) -> (1280, 704); each side 1 to ``MAX_SIDE``."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(part.isdigit() and len(part) < 10 and 0 < int(part) <= MAX_SIDE for part in parts):
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: use WIDTHxHEIGHT with each side from 1 to {MAX_SIDE}, e.g. 1280x704"
        )
    return int(parts[0]), int(parts[1])


def frame_rate(text: str) -> float:
    """A frame rate: a number from 0.001 to 1000 (frames per second)."""
    low, high = FRAME_RATE_RANGE
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # also refuses NaN and infinities
        raise argparse.ArgumentTypeError(f"must be a number from {low:g} to {high:g} (frames per second), got {text}")
    return value


def positive_int(text: str) -> int:
    """A frame count: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input_folder", required=True, help="Folder with the videos (not searched recursively).")
    parser.add_argument("--output_folder", required=True, help="Root of the per-video frame folders.")
    parser.add_argument("--frame_rate", type=frame_rate, default=None, help="Output frames per second (0.001 to 1000).")
    parser.add_argument("--resize", type=parse_size, default=None, help="Output size WIDTHxHEIGHT, e.g. 1280x704.")
    parser.add_argument(
        "--resize_mode",
        choices=("stretch", "crop"),
        default="stretch",
        help="stretch: exactly WIDTHxHEIGHT (aspect ratio lost); crop: cover WIDTHxHEIGHT, then centre crop.",
    )
    parser.add_argument(
        "--frame_selection",
        choices=FRAME_SELECTIONS,
        default="timestamp",
        help="With --frame_rate: timestamp (nearest source frame in time, a true resampling) or original (every "
        "n-th frame, n = int(int(source fps) / frame_rate), as the original script).",
    )
    parser.add_argument("--max_frames", type=positive_int, default=None, help="Save at most this many per video.")
    parser.add_argument("--debug", action="store_true", help="Show full tracebacks instead of one-line errors.")
    return parser


def find_videos(folder: Path) -> list[Path]:
    """The video files directly inside ``folder`` (regular files or links to them), sorted by name.

    Other entries with a video ending (a named pipe, a socket, a device, a folder, a broken link) are skipped with a
    warning on stderr: reading a named pipe would block forever.
    """
    videos = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            continue
        try:
            regular = stat.S_ISREG(path.stat().st_mode)
        except OSError:
            regular = False
        if regular:
            videos.append(path)
        else:
            print(
                f"Warning: skipping {path}: not a regular file (a folder, pipe, socket, device or broken link).",
                file=sys.stderr,
            )
    return videos


def source_indices(source_fps: float, frame_rate: float | None, selection: str = "timestamp") -> Iterator[int]:
    """For output frames k = 0, 1, ...: the index of the source frame they show.

    ``timestamp``: the source frame nearest in time to k / frame_rate. ``original``: k·n with
    n = max(1, int(int(source_fps) / frame_rate)), the original script's decimation. Without ``frame_rate`` every
    source frame in order. The sequence is endless; the caller stops at the end of the video.
    """
    interval = 1 if frame_rate is None else max(1, int(int(source_fps) / frame_rate))
    k = 0
    while True:
        if frame_rate is None or selection == "original":
            yield k * interval
        else:  # 1e-9 keeps exact ties (2.5 source frames) from landing on either side by rounding error
            yield math.floor(k * source_fps / frame_rate + 0.5 + 1e-9)
        k += 1


def decoded_frames(video: Path) -> tuple[float, Generator[np.ndarray, None, None]]:
    """The frame rate of ``video`` and a generator of its frames as uint8 RGB arrays [h, w, 3]; close it when done.

    Raises ``VideoReadError`` when ffmpeg cannot open it or reports no frame rate, ``UserError`` when its frames are
    larger than the pixel limit (``pixel_limit.check_frame_size``).
    """
    reader = imageio_ffmpeg.read_frames(str(video))
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as err:
        reader.close()
        raise VideoReadError(_first_line(err) or "ffmpeg could not open it") from err
    width, height = meta["size"]
    if not meta.get("fps"):
        reader.close()
        raise VideoReadError("ffmpeg reports no frame rate")
    try:
        check_frame_size(video, width, height)  # before ffmpeg sends a frame
    except UserError:
        reader.close()
        raise

    def frames() -> Generator[np.ndarray, None, None]:
        try:
            for data in reader:
                yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
        except (OSError, RuntimeError) as err:
            raise VideoReadError(_first_line(err)) from err
        finally:
            reader.close()

    return float(meta["fps"]), frames()


def resample(
    frames: Iterator[np.ndarray], source_fps: float, frame_rate: float | None, selection: str = "timestamp"
) -> Iterator[np.ndarray]:
    """The frames at ``frame_rate`` (see ``source_indices``; a source frame may repeat when upsampling)."""
    wanted = source_indices(source_fps, frame_rate, selection)
    target = next(wanted)
    for index, frame in enumerate(frames):
        while target == index:
            yield frame
            target = next(wanted)


def resize_frame(frame: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """``frame`` at ``size`` = (width, height): stretched, or scaled to cover and centre-cropped (``mode='crop'``).

    ``UserError`` when OpenCV cannot make the frame (too large for memory, or for OpenCV).
    """
    try:
        return _resize_frame(frame, size, mode)
    except (cv2.error, MemoryError) as err:
        reason = _first_line(err) or type(err).__name__
        raise UserError(
            f"--resize {size[0]}x{size[1]} (--resize_mode {mode}): cannot resize {frame.shape[1]}x{frame.shape[0]} "
            f"frames ({reason}); use a smaller --resize or --resize_mode stretch."
        ) from err


def _resize_frame(frame: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    width, height = size
    if mode == "crop":
        scale = max(width / frame.shape[1], height / frame.shape[0])
        cover = (max(width, round(frame.shape[1] * scale)), max(height, round(frame.shape[0] * scale)))
        frame = cv2.resize(frame, cover, interpolation=cv2.INTER_AREA)
        top, left = (frame.shape[0] - height) // 2, (frame.shape[1] - width) // 2
        return frame[top : top + height, left : left + width]
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    """Write ``rgb`` as a quality-95 JPEG under a temporary name, then rename it into place."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"JPEG encoding failed for {path}")
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_bytes(data.tobytes())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def extract_frames(
    video: Path,
    output_dir: Path,
    frame_rate: float | None = None,
    size: tuple[int, int] | None = None,
    resize_mode: str = "stretch",
    max_frames: int | None = None,
    selection: str = "timestamp",
) -> int:
    """Write the frames of ``video`` to ``output_dir``/frame_<nnnnn>.jpg and return how many were written.

    Frames of an earlier run are removed first. On a ``VideoReadError`` (or a ``UserError``: a frame that cannot be
    resized) the frames of this run are removed again, and so is ``output_dir`` when it is left empty.
    """
    source_fps, frames = decoded_frames(video)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*output_dir.glob("frame_*.jpg"), *output_dir.glob(".frame_*.jpg.tmp")]:  # earlier or killed runs
        stale.unlink()
    saved = 0
    try:
        for frame in resample(frames, source_fps, frame_rate, selection):
            if max_frames is not None and saved >= max_frames:
                break
            if size is not None:
                frame = resize_frame(frame, size, resize_mode)
            write_jpeg(output_dir / f"frame_{saved:05d}.jpg", frame)
            saved += 1
        if saved == 0:
            raise VideoReadError("no frame could be decoded")
    except (VideoReadError, UserError):
        for written in output_dir.glob("frame_*.jpg"):
            written.unlink()
        if not any(output_dir.iterdir()):
            output_dir.rmdir()
        raise
    finally:
        frames.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    """Extract every video; 0 when all succeeded, 2 when the input folder is missing, any video failed or the output
    cannot be written, 1 for an internal error."""
    args = build_parser().parse_args(argv)
    return guard(
        lambda: run(args),
        debug=args.debug,
        prefix="Error",
        interrupted="Interrupted: rerun the same command to extract the unfinished video anew.",
    )


def run(args: argparse.Namespace) -> int:
    """The work of ``main``: unreadable videos are reported (one line each) and skipped; other failures are raised."""
    input_folder = Path(args.input_folder)
    if not input_folder.is_dir():
        raise UserError(f"input folder {input_folder} does not exist.")
    videos = find_videos(input_folder)
    if not videos:
        print(f"No video files ({' '.join(VIDEO_EXTENSIONS)}) found in {input_folder}")
        return 0
    failed = 0
    for video in videos:
        output_dir = Path(args.output_folder) / video.stem
        try:
            saved = extract_frames(
                video, output_dir, args.frame_rate, args.resize, args.resize_mode, args.max_frames, args.frame_selection
            )
        except VideoReadError as err:
            print(
                f"Error: could not read video {video}: {err}; it is corrupt, truncated or not a video: replace or "
                "re-encode it.",
                file=sys.stderr,
            )
            failed += 1
            continue
        except OSError as err:
            raise UserError(
                f"cannot write the frames of {video} to {output_dir}: {err.strerror or err}; check free space "
                "and permissions, or choose another --output_folder."
            ) from err
        print(f"Frames extracted from {video}. Total frames saved: {saved}")
    return 2 if failed else 0


def _first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), "")


if __name__ == "__main__":
    sys.exit(main())
