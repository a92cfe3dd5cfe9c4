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
    every frame; --frame_selection original does exactly that. Without --frame_rate every frame is kept. No source
    frame is ever repeated: a rate above the video's keeps every frame once (a note says so), so a video never gives
    more frames than it has. A rate below 0.001 fps is an error, and so is a --resize side outside 1-8192 pixels;
  * --resize_mode crop scales to cover WIDTHxHEIGHT keeping the aspect ratio, then cuts the centre; the default,
    stretch, resizes to exactly WIDTHxHEIGHT like the original;
  * .mp4 .mov .avi .mkv .webm files (any letter case) are found, in sorted order; other entries with these endings
    (a named pipe, a socket, a device) are skipped with a warning, never read;
  * a video's frames are written to a hidden staging folder next to its output folder and replace the
    frame_*.jpg of an earlier run (other files there stay) only once the whole video has been read without error;
  * a video that cannot be read completely (corrupt, truncated: ffmpeg reports an error while reading it through)
    is reported in one line and skipped, its output folder (frames of an earlier run included) is left as it was,
    and the script ends with exit code 2 after the other videos are done; an output folder that cannot be written
    ends the script at once with one line and exit code 2, Ctrl-C with exit code 130, an internal error with one
    line and exit code 1 (--debug shows the traceback);
  * videos whose names differ only in the ending (clip.mp4 and clip.MOV) would share an output folder: each of them
    gets <stem>~<8 hex digits of the SHA-256 of its file name> instead (the same on every run) and a warning line
    says so; other videos keep <stem>.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

if importlib.util.find_spec("cosmos_predict1") is None:  # run as `python scripts/...` without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosmos_predict1.arguments import Parser
from cosmos_predict1.boundary import guard
from cosmos_predict1.diffusion.layout import unique_names
from cosmos_predict1.diffusion.pixel_limit import check_frame_size
from cosmos_predict1.errors import UserError
from cosmos_predict1.temporary import stale_beside, temporary_path

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm")
FRAME_SELECTIONS = ("timestamp", "original")
JPEG_QUALITY = 95
MIN_FRAME_RATE = 0.001  # frames per second; there is no upper limit, as no source frame is ever repeated
MAX_SIDE = 8192  # pixels per side of --resize


class VideoReadError(Exception):
    """A video that ffmpeg cannot decode."""


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x704"`` (any letter case of the x) -> (1280, 704); each side 1 to ``MAX_SIDE``."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(part.isdigit() and len(part) < 10 and 0 < int(part) <= MAX_SIDE for part in parts):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT with each side from 1 to {MAX_SIDE}, e.g. 1280x704")
    return int(parts[0]), int(parts[1])


def frame_rate(text: str) -> float:
    """A frame rate: a finite number of at least 0.001 (frames per second)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not MIN_FRAME_RATE <= value < math.inf:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a finite number of at least {MIN_FRAME_RATE:g} (frames per second)")
    return value


def positive_int(text: str) -> int:
    """A frame count: an integer >= 1."""
    if not (text.strip().isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError("must be an integer >= 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = Parser(__doc__)
    parser.add_argument(
        "--input_folder", required=True, metavar="DIR", help="Folder with the videos (not searched recursively)."
    )
    parser.add_argument("--output_folder", required=True, metavar="DIR", help="Root of the per-video frame folders.")
    parser.add_argument(
        "--frame_rate",
        type=frame_rate,
        default=None,
        metavar="FPS",
        help="Output frames per second (at least 0.001; above the video's rate every frame is kept once).",
    )
    parser.add_argument(
        "--resize", type=parse_size, default=None, metavar="WxH", help="Output size WIDTHxHEIGHT, e.g. 1280x704."
    )
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
    parser.add_argument(
        "--max_frames", type=positive_int, default=None, metavar="N", help="Save at most this many per video."
    )
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
    """For output frames k = 0, 1, ...: the index of the source frame they show, strictly increasing (no source
    frame twice, so a video never gives more frames than it has).

    ``timestamp``: the source frame nearest in time to k / frame_rate, every frame when ``frame_rate`` is at least
    ``source_fps``. ``original``: k·n with n = max(1, int(int(source_fps) / frame_rate)), the original script's
    decimation. Without ``frame_rate`` every source frame in order. The sequence is endless; the caller stops at the
    end of the video.
    """
    interval = 1 if frame_rate is None else max(1, int(int(source_fps) / frame_rate))
    k = 0
    while True:
        if frame_rate is None or selection == "original":
            yield k * interval
        else:  # 1e-9 keeps exact ties (2.5 source frames) from landing on either side by rounding error
            yield math.floor(k * max(1.0, source_fps / frame_rate) + 0.5 + 1e-9)
        k += 1


def check_readable(video: Path) -> None:
    """``VideoReadError`` with ffmpeg's last error line unless ffmpeg reads every packet of the first video stream
    of ``video`` without an error (a truncated or damaged file; the packets are read, not decoded: quick)."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-i", str(video)]
    command += ["-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    errors = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    if errors or result.returncode != 0:
        last = errors[-1] if errors else f"ffmpeg exited with code {result.returncode}"
        raise VideoReadError(last.split("] ", 1)[1] if last.startswith("[") and "] " in last else last)


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
    """The frames at ``frame_rate`` (see ``source_indices``; no source frame is repeated)."""
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
    """Write ``rgb`` as a quality-95 JPEG (into the temporary folder: it becomes visible with the whole folder)."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"JPEG encoding failed for {path}")
    path.write_bytes(data.tobytes())


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

    The frames go to a hidden staging folder beside ``output_dir`` first (``cosmos_predict1.temporary``; those of
    earlier, killed runs are removed) and replace the frames of an earlier run only once the whole video has been
    read. On any failure (``VideoReadError``, a ``UserError`` for a frame that cannot be resized, an ``OSError``,
    Ctrl-C) the temporary folder is removed and ``output_dir`` is left as it was.
    """
    check_readable(video)
    source_fps, frames = decoded_frames(video)
    if frame_rate is not None and frame_rate > source_fps:
        print(
            f"Note: {video} has {source_fps:g} fps, fewer than --frame_rate {frame_rate:g}: every frame is kept once."
        )
    for stale in stale_beside(output_dir):
        shutil.rmtree(stale, ignore_errors=True)
    staging = temporary_path(output_dir)
    saved = 0
    try:
        staging.mkdir(parents=True)
        for frame in resample(frames, source_fps, frame_rate, selection):
            if max_frames is not None and saved >= max_frames:
                break
            if size is not None:
                frame = resize_frame(frame, size, resize_mode)
            write_jpeg(staging / f"frame_{saved:05d}.jpg", frame)
            saved += 1
        if saved == 0:
            raise VideoReadError("no frame could be decoded")
        swap_in(staging, output_dir)
    finally:
        frames.close()
        shutil.rmtree(staging, ignore_errors=True)
    return saved


def swap_in(staging: Path, output_dir: Path) -> None:
    """Make the frame_*.jpg in ``staging`` those of ``output_dir``: a new ``output_dir`` is ``staging`` renamed; in
    an existing one each new frame replaces its namesake, then the earlier run's frames beyond them are removed
    (other files stay)."""
    if not output_dir.exists():
        staging.rename(output_dir)
        return
    new = sorted(staging.glob("frame_*.jpg"))
    for path in new:
        os.replace(path, output_dir / path.name)
    names = {path.name for path in new}
    for old in output_dir.glob("frame_*.jpg"):
        if old.name not in names:
            old.unlink()


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
    names = unique_names(
        {video.name: video.stem for video in videos},
        "videos",
        lambda line: print(f"Warning: {line}", file=sys.stderr),
    )
    failed = 0
    for video in videos:
        output_dir = Path(args.output_folder) / names[video.name]
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
