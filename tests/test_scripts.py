"""The helper scripts: frame extraction, checkpoint download/verification (offline), example assets."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import cv2
import huggingface_hub
import imageio_ffmpeg
import numpy as np
import pytest
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

from cosmos_predict1 import release as checkpoints
from cosmos_predict1 import tiny_checkpoints as tiny_module
from cosmos_predict1.diffusion.assets import ENV_LIGHT_PATH_LIST, FALLBACK_HDRI_LIST
from cosmos_predict1.release import FORWARD_MODEL, INVERSE_MODEL, TOKENIZER

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = REPO_ROOT / "scripts"


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class body runs
    spec.loader.exec_module(module)
    return module


def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python scripts/<name>.py args`` from the repository root, as a user would."""
    return subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


extract = load_script("dataproc_extract_frames_from_video")


# ----------------------------------------------------------------------------------------------- frame extraction

LEVEL_STEP = 3


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """Lossless (in YUV) H.264 of uint8 RGB frames."""
    height, width = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec="libx264",
        quality=None,
        macro_block_size=1,
        output_params=["-crf", "0"],
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


@pytest.fixture(scope="module")
def grey_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with clip.MP4: 60 frames at 30 fps, frame i a flat grey of level 10 + 3 i."""
    folder = tmp_path_factory.mktemp("videos")
    frames = [np.full((48, 64, 3), 10 + LEVEL_STEP * i, np.uint8) for i in range(60)]
    write_video(folder / "clip.MP4", frames, fps=30)
    return folder


def source_frames(folder: Path) -> list[int]:
    """The source frame index encoded in the grey level of every extracted frame, in order."""
    files = sorted(folder.glob("frame_*.jpg"))
    assert [f.name for f in files] == [f"frame_{k:05d}.jpg" for k in range(len(files))]
    return [round((cv2.imread(str(f)).mean() - 10) / LEVEL_STEP) for f in files]


def test_without_frame_rate_every_frame_is_kept(grey_video: Path, tmp_path: Path, capsys) -> None:
    assert extract.main(["--input_folder", str(grey_video), "--output_folder", str(tmp_path)]) == 0
    assert source_frames(tmp_path / "clip") == list(range(60))
    assert f"Frames extracted from {grey_video / 'clip.MP4'}. Total frames saved: 60" in capsys.readouterr().out


def test_frame_rate_resamples_by_nearest_timing(grey_video: Path, tmp_path: Path) -> None:
    args = ["--input_folder", str(grey_video), "--output_folder", str(tmp_path), "--frame_rate", "24"]
    assert extract.main(args) == 0
    expected = [int(np.floor(k * 30 / 24 + 0.5)) for k in range(48)]  # 2 s at 24 fps
    assert source_frames(tmp_path / "clip") == expected
    assert expected[:6] == [0, 1, 3, 4, 5, 6]


@pytest.mark.parametrize(("frame_rate", "step"), [("24", 1), ("10", 3), ("14", 2)])
def test_original_frame_selection_keeps_every_nth_frame(
    grey_video: Path, tmp_path: Path, frame_rate: str, step: int
) -> None:
    args = [
        "--input_folder",
        str(grey_video),
        "--output_folder",
        str(tmp_path),
        "--frame_rate",
        frame_rate,
        "--frame_selection",
        "original",
    ]
    assert extract.main(args) == 0
    assert source_frames(tmp_path / "clip") == list(range(0, 60, step))  # 30 fps: n = max(1, int(30 / rate))


def test_source_indices_never_repeat_a_frame() -> None:
    for selection in extract.FRAME_SELECTIONS:
        assert list(itertools.islice(extract.source_indices(24, 48, selection), 6)) == [0, 1, 2, 3, 4, 5]
    assert list(itertools.islice(extract.source_indices(30, None), 4)) == [0, 1, 2, 3]


def test_a_frame_rate_above_the_source_keeps_every_frame_once(grey_video: Path, tmp_path: Path, capsys) -> None:
    args = ["--input_folder", str(grey_video), "--output_folder", str(tmp_path), "--frame_rate", "1e9"]
    assert extract.main(args) == 0
    assert source_frames(tmp_path / "clip") == list(range(60))
    out = capsys.readouterr().out
    assert (
        f"Note: {grey_video / 'clip.MP4'} has 30 fps, fewer than --frame_rate 1e+09: every frame is kept once." in out
    )


def test_videos_that_differ_only_in_the_ending_get_a_folder_each(grey_video: Path, tmp_path: Path, capsys) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.mp4").write_bytes((grey_video / "clip.MP4").read_bytes())
    write_video(videos / "clip.MOV", [np.full((48, 64, 3), 10 + LEVEL_STEP * i, np.uint8) for i in (7, 8, 9)], 30)
    (videos / "other.mp4").write_bytes((grey_video / "clip.MP4").read_bytes())
    args = ["--input_folder", str(videos), "--output_folder", str(tmp_path / "out")]
    assert extract.main(args) == 0
    mov, mp4 = (f"clip~{hashlib.sha256(name.encode()).hexdigest()[:8]}" for name in ("clip.MOV", "clip.mp4"))
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted([mov, mp4, "other"])
    assert source_frames(tmp_path / "out" / mov) == [7, 8, 9] and source_frames(tmp_path / "out" / mp4) == list(
        range(60)
    )
    assert capsys.readouterr().err.strip() == (
        f"Warning: The videos clip.MOV and clip.mp4 would share the output name clip; they are written as {mov} and "
        f"{mp4} instead."
    )
    assert extract.main(args) == 0 and sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted(
        [mov, mp4, "other"]
    )  # the same folders again


def test_only_staging_folders_of_finished_processes_are_removed(grey_video: Path, tmp_path: Path) -> None:
    """A killed run's staging folder goes; a user's folder that merely looks like one, and a live run's, stay."""
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".clip.cosmos-tmp-{dead.stdout.strip()}-0123abcd"
    live = out / f".clip.cosmos-tmp-{os.getpid()}-89abcdef"
    users = [out / ".clip.tmp-123", out / f".other.cosmos-tmp-{dead.stdout.strip()}-0123abcd"]
    for folder in [stale, live, *users]:
        folder.mkdir()
        (folder / "frame_00000.jpg").write_bytes(b"kept?")
    assert extract.main(["--input_folder", str(grey_video), "--output_folder", str(out)]) == 0
    assert not stale.exists() and live.is_dir() and all(folder.is_dir() for folder in users)
    assert len(list((out / "clip").glob("frame_*.jpg"))) == 60


def test_a_truncated_video_keeps_the_frames_of_an_earlier_run(grey_video: Path, tmp_path: Path, capsys) -> None:
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    write_video(videos / "clip.mkv", [np.full((48, 64, 3), 10 + LEVEL_STEP * i, np.uint8) for i in range(40)], 30)
    (videos / "other.mp4").write_bytes((grey_video / "clip.MP4").read_bytes())
    args = ["--input_folder", str(videos), "--output_folder", str(out)]
    assert extract.main(args) == 0
    earlier = {path.name: path.read_bytes() for path in (out / "clip").iterdir()}
    assert len(earlier) == 40
    data = (videos / "clip.mkv").read_bytes()
    (videos / "clip.mkv").write_bytes(data[: len(data) * 6 // 10])  # ffmpeg still decodes its first frames
    (out / "other" / "frame_00000.jpg").unlink()
    capsys.readouterr()
    assert extract.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"Error: could not read video {videos / 'clip.mkv'}: File ended prematurely; it is corrupt, truncated or not "
        "a video: replace or re-encode it."
    )
    assert {path.name: path.read_bytes() for path in (out / "clip").iterdir()} == earlier
    assert len(list((out / "other").glob("frame_*.jpg"))) == 60  # the other video is still done
    assert sorted(path.name for path in out.iterdir()) == ["clip", "other"]  # no temporary folder left


def test_a_video_that_fails_half_way_leaves_the_earlier_frames(
    grey_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--input_folder", str(grey_video), "--output_folder", str(tmp_path)]
    assert extract.main([*args, "--max_frames=10"]) == 0
    earlier = {path.name: path.read_bytes() for path in (tmp_path / "clip").iterdir()}
    original = extract.write_jpeg

    def failing_at_the_20th(path: Path, rgb: np.ndarray) -> None:
        if path.name == "frame_00020.jpg":
            raise extract.VideoReadError("Invalid data found when processing input")
        original(path, rgb)

    monkeypatch.setattr(extract, "write_jpeg", failing_at_the_20th)
    assert extract.main(args) == 2
    assert {path.name: path.read_bytes() for path in (tmp_path / "clip").iterdir()} == earlier
    assert [path.name for path in tmp_path.iterdir()] == ["clip"]


def test_max_frames_and_stale_frames(grey_video: Path, tmp_path: Path) -> None:
    out = tmp_path / "clip"
    out.mkdir()
    (out / "frame_00099.jpg").write_bytes(b"stale")
    (out / "notes.txt").write_text("kept")
    args = ["--input_folder", str(grey_video), "--output_folder", str(tmp_path), "--max_frames=5"]
    assert extract.main(args) == 0
    assert source_frames(out) == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{k:05d}.jpg" for k in range(5)] + ["notes.txt"]


def test_resize_stretch_and_crop(tmp_path: Path) -> None:
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, 8:56] = 200  # black 8-pixel bars left and right
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "bars.mp4", [frame] * 3, fps=24)
    common = ["--input_folder", str(videos), "--resize", "24X24"]
    assert extract.main([*common, "--output_folder", str(tmp_path / "stretch")]) == 0
    assert extract.main([*common, "--output_folder", str(tmp_path / "crop"), "--resize_mode", "crop"]) == 0
    stretched = cv2.imread(str(tmp_path / "stretch" / "bars" / "frame_00000.jpg"))
    cropped = cv2.imread(str(tmp_path / "crop" / "bars" / "frame_00000.jpg"))
    assert stretched.shape == cropped.shape == (24, 24, 3)
    assert stretched[:, 0].mean() < 60  # the bars survive a stretch
    assert cropped.min() > 150  # scale to 32x24, keep the middle 24 columns: the 4-pixel bars are cut away


def test_find_videos_is_case_insensitive_and_sorted(tmp_path: Path) -> None:
    for name in ["b.mp4", "a.MOV", "c.txt", "d.WebM", "e.mkv", "f.avi"]:
        (tmp_path / name).touch()
    assert [p.name for p in extract.find_videos(tmp_path)] == ["a.MOV", "b.mp4", "d.WebM", "e.mkv", "f.avi"]


@pytest.mark.parametrize("bad", ["--frame_rate=0", "--frame_rate=-24", "--max_frames=0", "--resize=1280"])
def test_invalid_options_are_rejected(bad: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        extract.build_parser().parse_args(["--input_folder", str(tmp_path), "--output_folder", str(tmp_path), bad])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_unreadable_video_is_reported_and_skipped(grey_video: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "broken.mp4").write_text("not a video")
    (videos / "good.mp4").write_bytes((grey_video / "clip.MP4").read_bytes())
    result = run_script(
        "dataproc_extract_frames_from_video", "--input_folder", str(videos), "--output_folder", str(tmp_path / "out")
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"Error: could not read video {videos / 'broken.mp4'}")
    assert not (tmp_path / "out" / "broken").exists()
    assert len(list((tmp_path / "out" / "good").glob("frame_*.jpg"))) == 60


@pytest.mark.parametrize(
    "bad, allowed",
    [
        pytest.param("--resize=100000x100000", "each side from 1 to 8192", id="resize-100000x100000"),
        pytest.param("--resize=8193x10", "each side from 1 to 8192", id="resize-8193"),
        pytest.param("--resize=99999999999999999999x1", "each side from 1 to 8192", id="resize-huge-digits"),
        pytest.param("--frame_rate=nan", "finite number of at least 0.001", id="frame_rate-nan"),
        pytest.param("--frame_rate=inf", "finite number of at least 0.001", id="frame_rate-inf"),
        pytest.param("--frame_rate=1e-300", "finite number of at least 0.001", id="frame_rate-tiny"),
        pytest.param("--frame_rate=fast", "finite number of at least 0.001", id="frame_rate-text"),
    ],
)
def test_extractor_ranges_are_one_line_at_once(grey_video: Path, tmp_path: Path, bad: str, allowed: str) -> None:
    result = run_script(
        "dataproc_extract_frames_from_video", "--input_folder", str(grey_video), "--output_folder", str(tmp_path), bad
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    option, value = bad.split("=")
    assert result.stderr.startswith(f"error: {option} {value}: ") and allowed in result.stderr
    assert result.stderr.count("\n") == 1  # one line: no usage block
    assert list(tmp_path.iterdir()) == []


def test_extractor_resize_failure_is_one_line_and_leaves_no_frames(
    grey_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise cv2.error("OpenCV(4.10.0) alloc.cpp:73: error: (-4:Insufficient memory) Failed to allocate 30 GB")

    monkeypatch.setattr(extract.cv2, "resize", out_of_memory)
    code = extract.main(
        ["--input_folder", str(grey_video), "--output_folder", str(tmp_path / "out"), "--resize", "8000x8000"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("Error: --resize 8000x8000 (--resize_mode stretch): cannot resize 64x48 frames")
    assert "Insufficient memory" in err and "use a smaller --resize" in err
    assert not (tmp_path / "out" / "clip").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_extractor_skips_a_fifo_named_like_a_video(grey_video: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.mp4").write_bytes((grey_video / "clip.MP4").read_bytes())
    os.mkfifo(videos / "x.mp4")
    result = run_script(
        "dataproc_extract_frames_from_video", "--input_folder", str(videos), "--output_folder", str(tmp_path / "out")
    )
    assert result.returncode == 0, result.stderr
    assert f"Warning: skipping {videos / 'x.mp4'}: not a regular file" in result.stderr
    assert len(list((tmp_path / "out" / "clip").glob("frame_*.jpg"))) == 60


@pytest.mark.parametrize("debug", [False, True])
def test_extractor_internal_error_is_one_line_with_a_debug_hint(
    grey_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, debug: bool
) -> None:
    def bug(*args: object, **kwargs: object) -> None:
        raise ValueError("unexpected state")

    monkeypatch.setattr(extract, "extract_frames", bug)
    args = ["--input_folder", str(grey_video), "--output_folder", str(tmp_path), *(["--debug"] if debug else [])]
    assert extract.main(args) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        "internal error: ValueError: unexpected state (rerun with --debug for the traceback)"
    )
    assert ("Traceback" in err) == debug


# ----------------------------------------------------------------------------------------------- checkpoints

CONTENT = {
    INVERSE_MODEL: {"model.pt": b"inverse weights"},
    FORWARD_MODEL: {"model.pt": b"forward weights"},
    TOKENIZER: {
        "encoder.jit": b"encoder",
        "decoder.jit": b"decoder",
        "mean_std.pt": b"video statistics",
        "image_mean_std.pt": b"image statistics",
    },
}
download = load_script("download_diffusion_renderer_checkpoints")


@pytest.fixture
def fake_release(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, list[str], list[str]]]:
    """Published MD5 sums of CONTENT instead of the real ones; the hub replaced by a recorder that writes CONTENT.

    Returns the list of (repo_id, local_dir, allow_patterns, ignore_patterns) of every download.
    """
    md5 = {
        f"{folder}/{name}": hashlib.md5(CONTENT[folder][name]).hexdigest()
        for folder, name in [
            (INVERSE_MODEL, "model.pt"),
            (FORWARD_MODEL, "model.pt"),
            (TOKENIZER, "mean_std.pt"),
            (TOKENIZER, "image_mean_std.pt"),
        ]
    }
    monkeypatch.setattr(checkpoints, "MD5", md5)
    calls: list[tuple[str, str, list[str], list[str]]] = []

    def fetch_hdris(folder: str, api: str, force: bool) -> None:  # tests/test_hdris.py covers the real fetch
        for relative in ENV_LIGHT_PATH_LIST:
            Path(folder).mkdir(parents=True, exist_ok=True)
            Path(folder, Path(relative).name).write_bytes(b"hdr")

    monkeypatch.setattr(download, "fetch_original_hdris", fetch_hdris)

    def snapshot_download(
        repo_id: str, local_dir: str, allow_patterns: list[str], ignore_patterns: list[str], force_download: bool
    ) -> str:
        calls.append((repo_id, local_dir, allow_patterns, ignore_patterns))
        folder = repo_id.split("/")[1]
        write_files(Path(local_dir), "", {k: v for k, v in CONTENT[folder].items() if k not in ignore_patterns})
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def write_files(checkpoint_dir: Path, folder: str, files: dict[str, bytes]) -> None:
    (checkpoint_dir / folder).mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (checkpoint_dir / folder / name).write_bytes(data)


def test_file_md5_streams_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytes(range(256)) * 1000
    (tmp_path / "f").write_bytes(data)
    monkeypatch.setattr(checkpoints, "_MD5_CHUNK_BYTES", 1000)
    assert checkpoints.file_md5(tmp_path / "f") == hashlib.md5(data).hexdigest()


def test_check_model_finds_missing_and_mismatched(tmp_path: Path, fake_release) -> None:
    files = dict(CONTENT[TOKENIZER])
    del files["decoder.jit"]
    files["mean_std.pt"] = b"corrupt"
    write_files(tmp_path, TOKENIZER, files)
    missing, mismatched = checkpoints.check_model(tmp_path, TOKENIZER)
    assert missing == [tmp_path / TOKENIZER / "decoder.jit"]
    assert mismatched == [tmp_path / TOKENIZER / "mean_std.pt"]
    write_files(tmp_path, TOKENIZER, CONTENT[TOKENIZER])
    assert checkpoints.check_model(tmp_path, TOKENIZER) == ([], [])


def test_complete_models_are_skipped(tmp_path: Path, fake_release, capsys) -> None:
    for folder, files in CONTENT.items():
        write_files(tmp_path, folder, files)
    options = ["--checkpoint_dir", str(tmp_path), "--hdri_dir", str(tmp_path / "hdris")]
    assert download.main(options) == 0
    assert fake_release == []
    out = capsys.readouterr().out
    for folder in CONTENT:
        assert f"Model checkpoints for {folder} exist with matched MD5 checksums." in out
    assert download.main([*options, "--verify_only"]) == 0


def test_download_fetches_only_what_the_renderer_reads(tmp_path: Path, fake_release) -> None:
    assert (
        download.main(["--checkpoint_dir", str(tmp_path), "--hdri_dir", str(tmp_path / "h"), "--hf_org", "nvidia"]) == 0
    )
    repos = {repo: patterns for repo, _, patterns, _ in fake_release}
    assert repos[f"nvidia/{INVERSE_MODEL}"] == checkpoints.ALLOW_PATTERNS[INVERSE_MODEL]
    assert "*.jit" in repos[f"nvidia/{FORWARD_MODEL}"]
    tokenizer_patterns = repos[f"nvidia/{TOKENIZER}"]
    assert set(checkpoints.REQUIRED_FILES[TOKENIZER]) <= set(tokenizer_patterns)
    assert "autoencoder.jit" not in tokenizer_patterns and "*.jit" not in tokenizer_patterns
    assert all(checkpoints.check_model(tmp_path, folder) == ([], []) for folder in CONTENT)


def test_default_repositories_and_org_override() -> None:
    assert checkpoints.repository_id(INVERSE_MODEL) == checkpoints.REPOSITORIES[INVERSE_MODEL]
    assert checkpoints.repository_id(FORWARD_MODEL, "nvidia") == f"nvidia/{FORWARD_MODEL}"
    assert checkpoints.repository_id(TOKENIZER, "someone") == f"nvidia/{TOKENIZER}"


def test_mismatched_file_is_downloaded_again(tmp_path: Path, fake_release, capsys) -> None:
    write_files(tmp_path, INVERSE_MODEL, {"model.pt": b"truncated"})
    assert download.main(["--checkpoint_dir", str(tmp_path), "--model", "inverse"]) == 0
    assert (tmp_path / INVERSE_MODEL / "model.pt").read_bytes() == CONTENT[INVERSE_MODEL]["model.pt"]
    out = capsys.readouterr().out
    assert "MD5 checksum of checkpoint" in out and "Deleting" not in out
    assert f"Keeping {tmp_path / INVERSE_MODEL / 'model.pt'} until a new copy is downloaded and verified." in out
    assert sorted(path.name for path in (tmp_path / INVERSE_MODEL).iterdir()) == ["model.pt"]  # no staging folder


def test_only_missing_and_mismatched_files_are_fetched(tmp_path: Path, fake_release) -> None:
    write_files(tmp_path, TOKENIZER, {**CONTENT[TOKENIZER], "mean_std.pt": b"corrupt"})
    (tmp_path / TOKENIZER / "decoder.jit").unlink()
    assert download.main(["--checkpoint_dir", str(tmp_path), "--model", "tokenizer"]) == 0
    ((_, local_dir, _, ignored),) = fake_release
    assert Path(local_dir) == tmp_path / TOKENIZER / checkpoints.STAGING_FOLDER
    assert sorted(ignored) == ["encoder.jit", "image_mean_std.pt"]
    assert checkpoints.check_model(tmp_path, TOKENIZER) == ([], [])


def test_offline_download_keeps_a_mismatching_file(tmp_path: Path) -> None:
    """The real hub client, offline: the file whose MD5 does not match is still there, and the line says why."""
    write_files(tmp_path, INVERSE_MODEL, {"model.pt": b"weights of my own"})
    result = run_script(
        "download_diffusion_renderer_checkpoints",
        "--checkpoint_dir",
        str(tmp_path),
        "--model",
        "inverse",
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: Cannot download ") and "HF_HUB_OFFLINE is set" in line
    assert (tmp_path / INVERSE_MODEL / "model.pt").read_bytes() == b"weights of my own"
    assert "Deleting" not in result.stdout and "Keeping" in result.stdout


def test_a_download_that_does_not_verify_replaces_nothing(tmp_path: Path, fake_release, monkeypatch, capsys) -> None:
    def wrong(
        repo_id: str, local_dir: str, allow_patterns: list[str], ignore_patterns: list[str], force_download: bool
    ) -> str:
        write_files(Path(local_dir), "", {"model.pt": b"other weights", "config.json": b"{}"})
        return local_dir

    write_files(tmp_path, FORWARD_MODEL, {"model.pt": b"weights of my own"})
    monkeypatch.setattr(huggingface_hub, "snapshot_download", wrong)
    assert download.main(["--checkpoint_dir", str(tmp_path), "--model", "forward"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"Error: MD5 checksum of model.pt downloaded from {checkpoints.REPOSITORIES[FORWARD_MODEL]} does not match "
        f"the published one; {tmp_path / FORWARD_MODEL / 'model.pt'} was left as it was. Run the command again to "
        "fetch it anew (if this persists, the file changed upstream)."
    )
    assert [path.name for path in (tmp_path / FORWARD_MODEL).iterdir()] == ["model.pt"]  # no config.json either
    assert (tmp_path / FORWARD_MODEL / "model.pt").read_bytes() == b"weights of my own"


def test_partial_download_fails_clearly(tmp_path: Path, fake_release, monkeypatch, capsys) -> None:
    def partial(
        repo_id: str, local_dir: str, allow_patterns: list[str], ignore_patterns: list[str], force_download: bool
    ) -> str:
        write_files(Path(local_dir), "", {"encoder.jit": b"encoder"})
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", partial)
    assert download.main(["--checkpoint_dir", str(tmp_path), "--model", "tokenizer"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: Download of nvidia/") and "decoder.jit" in err and "\n" not in err


class HubResponse:
    """The parts of an HTTP response that the hub's error types read."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}
        self.request = None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (GatedRepoError("Access to model is restricted", response=HubResponse(403)), "hf auth login"),
        (RepositoryNotFoundError("404 Client Error", response=HubResponse(404)), "--hf_org"),
        (HfHubHTTPError("401 Unauthorized: invalid token", response=HubResponse(401)), "hf auth login"),
        (HfHubHTTPError("500 Server Error", response=HubResponse(500)), "500 Server Error"),
        (LocalEntryNotFoundError("cannot find the requested files"), "Cannot reach the Hugging Face hub"),
        (ConnectionResetError("connection reset by peer"), "ConnectionResetError"),
    ],
    ids=["gated", "not-found", "invalid-token", "server-error", "offline", "connection-reset"],
)
def test_hub_failures_become_one_line(error: Exception, expected: str, tmp_path, monkeypatch, capsys) -> None:
    def failing(*args, **kwargs) -> str:
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert download.main(["--checkpoint_dir", str(tmp_path), "--model", "inverse"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and expected in err and "\n" not in err


@pytest.mark.parametrize(
    ("env", "expected"),
    [({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"), ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "Cannot reach")],
    ids=["offline", "unreachable"],
)
def test_download_script_without_hub_exits_cleanly(env: dict[str, str], expected: str, tmp_path: Path) -> None:
    result = run_script(
        "download_diffusion_renderer_checkpoints",
        "--checkpoint_dir",
        str(tmp_path),
        "--model",
        "tokenizer",
        env={"HF_HUB_OFFLINE": "0", **env},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("Error: ") and expected in errors[0]


@pytest.mark.parametrize(
    "org",
    [
        pytest.param("my org", id="space"),
        pytest.param("../..", id="dot-dot"),
        pytest.param("", id="empty"),
        pytest.param("-nvidia", id="leading-dash"),
        pytest.param("a--b", id="double-dash"),
        pytest.param("x" * 60, id="too-long"),
        pytest.param("nvidia/extra", id="slash"),
    ],
)
def test_hf_org_that_the_hub_would_refuse_is_one_line_before_any_download(
    org: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *args, **kwargs: pytest.fail("downloaded"))
    assert download.main(["--checkpoint_dir", str(tmp_path), f"--hf_org={org}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith(f"Error: --hf_org {org!r}: not a Hugging Face organisation name") and "--hf_org nvidia" in err


def test_valid_hf_org_names_pass() -> None:
    for org in ("nvidia", "zianw", "NVIDIA-Research", "a.b_c", "x"):
        assert checkpoints.repository_id(INVERSE_MODEL, org) == f"{org}/{INVERSE_MODEL}"


def test_hub_validation_error_is_still_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from huggingface_hub.errors import HFValidationError

    def refuse(*args: object, **kwargs: object) -> None:
        raise HFValidationError("Repo id must use alphanumeric chars: 'x'.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    assert download.main(["--checkpoint_dir", str(tmp_path), "--model", "inverse"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: zianw/") and "not a valid Hugging Face repository id" in err and "\n" not in err


@pytest.mark.parametrize("debug", [False, True])
def test_download_internal_error_is_one_line_with_a_debug_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, debug: bool
) -> None:
    def bug(*args: object, **kwargs: object) -> None:
        raise KeyError("state")

    monkeypatch.setattr(download, "download_model", bug)
    assert download.main(["--checkpoint_dir", str(tmp_path), "--model", "inverse", *(["--debug"] * debug)]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "internal error: KeyError: 'state' (rerun with --debug for the traceback)"
    assert ("Traceback" in err) == debug


# ----------------------------------------------------------------------------------------------- tiny checkpoints

tiny = load_script("make_tiny_checkpoints")


def test_tiny_checkpoints_into_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "a_file").write_text("")
    for target in (tmp_path / "a_file", tmp_path / "a_file" / "below"):
        assert tiny.main(["--checkpoint_dir", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"Error: --checkpoint_dir {target}: {tmp_path / 'a_file'} is a file; choose a folder."


def test_tiny_checkpoints_into_a_read_only_folder_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from cosmos_predict1 import tiny_checkpoints

    monkeypatch.setattr(tiny_checkpoints.os, "access", lambda path, mode: False)  # root may write anywhere
    assert tiny.main(["--checkpoint_dir", str(tmp_path / "ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == f"Error: --checkpoint_dir {tmp_path / 'ckpt'}: {tmp_path} is not writable; fix its permissions or "
        "choose another folder."
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_tiny_checkpoints_on_a_full_disk_is_one_line(tmp_path: Path) -> None:
    """The file size limit (RLIMIT_FSIZE) makes the first large write fail as a full disk would (EFBIG)."""
    resource = pytest.importorskip("resource")
    del resource
    code = (
        "import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(SCRIPTS / "make_tiny_checkpoints.py"),
            "--checkpoint_dir",
            str(tmp_path / "c"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: Cannot write tiny checkpoints to {tmp_path / 'c'}: File too large;")


def test_tiny_checkpoints_refuse_a_folder_with_real_weights(tmp_path: Path, capsys) -> None:
    write_files(tmp_path, INVERSE_MODEL, {"model.pt": b"real weights", "README.md": b"release notes"})
    assert tiny.main(["--checkpoint_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"Error: --checkpoint_dir {tmp_path} holds files that make_tiny_checkpoints.py did not write and would "
        f"overwrite ({tmp_path / INVERSE_MODEL / 'model.pt'}); choose another folder, or pass --overwrite to replace "
        "them."
    )
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        f"{INVERSE_MODEL}/README.md",
        f"{INVERSE_MODEL}/model.pt",
    ]
    assert (tmp_path / INVERSE_MODEL / "model.pt").read_bytes() == b"real weights"
    (tmp_path / tiny_module.MANIFEST).write_text('{"not": "a record"}')  # a manifest alone proves nothing
    assert tiny.main(["--checkpoint_dir", str(tmp_path)]) == 2
    assert (tmp_path / INVERSE_MODEL / "model.pt").read_bytes() == b"real weights"


def test_tiny_checkpoints_manifest_lists_every_file_written(tiny_checkpoints: Path) -> None:
    written = sorted(p.relative_to(tiny_checkpoints).as_posix() for p in tiny_checkpoints.rglob("*") if p.is_file())
    assert written == sorted([tiny_module.MANIFEST, *tiny_module._tiny_paths()])
    tiny_module.check_nothing_foreign(tiny_checkpoints)  # what it wrote is recognised as its own


def test_tiny_checkpoints_replace_their_own_files_and_with_overwrite_any(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The writers replaced by quick ones (the real ones take seconds): the folder logic around them."""

    def quick_files(folder: Path, *args: object) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in tiny_module.TINY_FILES[folder.name]:
            (folder / name).write_bytes(os.urandom(64))

    monkeypatch.setattr(tiny_module, "write_dit", quick_files)
    monkeypatch.setattr(tiny_module, "write_tokenizer", quick_files)
    args = ["--checkpoint_dir", str(tmp_path)]
    assert tiny.main(args) == 0
    first = (tmp_path / INVERSE_MODEL / "model.pt").read_bytes()
    assert tiny.main(args) == 0  # its own files: written again without --overwrite
    assert (tmp_path / INVERSE_MODEL / "model.pt").read_bytes() != first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    (tmp_path / TOKENIZER / "mean_std.pt").write_bytes(b"changed since")
    capsys.readouterr()
    assert tiny.main(args) == 2 and "mean_std.pt); choose another folder" in capsys.readouterr().err
    assert (tmp_path / TOKENIZER / "mean_std.pt").read_bytes() == b"changed since"
    assert tiny.main([*args, "--overwrite"]) == 0
    assert (tmp_path / TOKENIZER / "mean_std.pt").read_bytes() != b"changed since"
    tiny_module.check_nothing_foreign(tmp_path)


@pytest.mark.parametrize("seed", ["-1", str(2**63)])
def test_tiny_checkpoints_seed_out_of_range(seed: str, tmp_path: Path, capsys) -> None:
    assert tiny.main(["--checkpoint_dir", str(tmp_path), f"--seed={seed}"]) == 2
    assert capsys.readouterr().err.strip() == f"Error: --seed {seed}: must be from 0 to 2**63 - 1."


def test_missing_file_names_the_file_and_the_command(tmp_path: Path) -> None:
    message = str(checkpoints.missing_file(tmp_path / TOKENIZER / "decoder.jit"))
    assert str(tmp_path / TOKENIZER / "decoder.jit") in message
    assert checkpoints.download_command(str(tmp_path)) in message and "\n" not in message


# ----------------------------------------------------------------------------------------------- example assets


def test_hdri_generation_is_deterministic(tmp_path: Path) -> None:
    assets = load_script("make_example_assets")
    assets.write_hdris(tmp_path / "a", height=16)
    assets.write_hdris(tmp_path / "b", height=16)
    for relative in FALLBACK_HDRI_LIST:
        name = Path(relative).name
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert cv2.imread(str(tmp_path / "a" / name), cv2.IMREAD_UNCHANGED).shape == (16, 32, 3)


@pytest.mark.parametrize("relative", FALLBACK_HDRI_LIST)
def test_committed_hdris_are_valid(relative: str) -> None:
    hdri = cv2.imread(str(REPO_ROOT / relative), cv2.IMREAD_UNCHANGED)
    assert hdri.dtype == np.float32 and hdri.ndim == 3
    height, width, channels = hdri.shape
    assert width == 2 * height and channels == 3
    assert np.isfinite(hdri).all() and (hdri > 0).all()
    assert hdri.max() < 65504  # the renderer clamps at the float16 maximum
