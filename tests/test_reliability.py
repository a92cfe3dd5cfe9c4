"""Bad input never crashes, and interrupted work is never lost (tiny checkpoints, CPU).

Every problem a user can cause or fix ends a run with exit code 2 and one line on stderr that says what is wrong, in
which file, and how to fix it; never a traceback (unless --debug). An internal error ends with one line and a hint to
use --debug. Outputs are written under hidden temporary names and renamed, so a killed run leaves only complete
files, a rerun removes the killed run's temporary files and finishes the rest with byte-identical results.
"""

from __future__ import annotations

import contextlib
import errno
import io as text_io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image
from test_cli_inverse import SIZE, write_images
from test_scripts import download, extract

from conftest import REPO_ROOT
from cosmos_predict1.diffusion import data, layout
from cosmos_predict1.diffusion import writers as io
from cosmos_predict1.diffusion.cli import INTERRUPTED
from cosmos_predict1.diffusion.frames import read_image
from cosmos_predict1.diffusion.inference import inference_forward_renderer as forward
from cosmos_predict1.diffusion.inference import inference_inverse_renderer as inverse
from cosmos_predict1.diffusion.integrity import is_complete
from cosmos_predict1.diffusion.renderer import InverseRenderer
from cosmos_predict1.errors import UserError
from cosmos_predict1.release import FORWARD_MODEL, INVERSE_MODEL, TOKENIZER
from cosmos_predict1.temporary import TEMPORARY_NAME

PASSES = ("basecolor", "normal", "depth", "roughness", "metallic")
INVERSE_SCRIPT = "cosmos_predict1/diffusion/inference/inference_inverse_renderer.py"
FORWARD_SCRIPT = "cosmos_predict1/diffusion/inference/inference_forward_renderer.py"
DOWNLOAD_COMMAND = "download_diffusion_renderer_checkpoints.py --checkpoint_dir"
SMALL = ["--height", "32", "--width", "48"]


# ----------------------------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Run:
    """One in-process CLI run: its exit code and everything it printed to stderr or logged."""

    code: int
    output: str

    @property
    def last_line(self) -> str:
        return self.output.rstrip().splitlines()[-1]


def run_cli(script: ModuleType, checkpoints: Path, *args: str) -> Run:
    """``script.main`` on the CPU (1 step, 64 × 96; later options win), capturing stderr and the package's log."""
    stream = text_io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("cosmos_predict1")
    logger.addHandler(handler)
    try:
        with contextlib.redirect_stderr(stream):
            code = script.main(
                ["--checkpoint_dir", str(checkpoints), "--device", "cpu", "--num_steps", "1", *SIZE, *args]
            )
    finally:
        logger.removeHandler(handler)
    return Run(code, stream.getvalue())


def assert_user_error(run: Run, *fragments: str) -> None:
    """Exit code 2, no traceback, and a last line ``error: ...`` that holds every fragment."""
    assert run.code == 2, run.output
    assert "Traceback" not in run.output
    assert run.last_line.startswith("error: ") and all(f in run.last_line for f in fragments), run.last_line


def finished_files(folder: Path) -> dict[str, bytes]:
    """The visible files under ``folder`` (relative POSIX path → content)."""
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")] if folder.is_dir() else []
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def assert_no_leftovers(folder: Path) -> None:
    """No temporary file anywhere under ``folder``, and every output in it is complete (it decodes)."""
    for path in folder.rglob("*") if folder.is_dir() else []:
        assert not TEMPORARY_NAME.fullmatch(path.name), path
        if path.is_file():
            assert (iio.imread(path) if path.suffix == ".mp4" else read_image(path)).size > 0, path


def inverse_args(dataset: Path, out: Path, *extra: str) -> list[str]:
    """Options of a 1-frame inverse run of ``dataset`` into ``out`` (depth only)."""
    return [
        "--dataset_path",
        str(dataset),
        "--video_save_folder",
        str(out),
        "--num_video_frames",
        "1",
        "--group_mode",
        "webdataset",
        "--inference_passes",
        "depth",
        *extra,
    ]


def forward_args(gbuffers: Path, out: Path, *extra: str) -> list[str]:
    """Options of a 1-frame forward run of ``gbuffers`` into ``out`` (random lighting 0 unless overridden)."""
    return [
        "--dataset_path",
        str(gbuffers),
        "--video_save_folder",
        str(out),
        "--num_video_frames",
        "1",
        "--use_custom_envmap",
        "False",
        "--envlight_ind",
        "0",
        *extra,
    ]


def write_gbuffers(root: Path, passes: tuple[str, ...] = PASSES, seed: int = 0) -> Path:
    """``root/clip/0000.0000.<pass>.jpg`` with random pixels for each of ``passes``; returns ``root``."""
    rng = np.random.default_rng(seed)
    (root / "clip").mkdir(parents=True, exist_ok=True)
    for name in passes:
        iio.imwrite(root / "clip" / f"0000.0000.{name}.jpg", rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))
    return root


def write_exr(path: Path, image: np.ndarray) -> Path:
    io.write_exr(path, image.astype(np.float32))
    return path


def sky(height: int = 16, width: int = 32) -> np.ndarray:
    """A small float32 HDR sky: a blue gradient with a bright sun."""
    image = np.linspace(2.0, 0.2, height, dtype=np.float32)[:, None, None] * np.array([0.6, 0.8, 1.0], np.float32)
    image = np.broadcast_to(image, (height, width, 3)).copy()
    image[2:4, 20:22] = 500.0
    return image


def damaged_checkpoints(source: Path, folder: Path, relative: str, content: bytes | None) -> Path:
    """A copy of ``source`` as ``folder`` in which ``relative`` holds ``content`` (None: the file is missing).

    Unchanged files are hard links (fast); the damaged one is a new file, so ``source`` stays intact.
    """
    shutil.copytree(source, folder, copy_function=os.link)
    (folder / relative).unlink()
    if content is not None:
        (folder / relative).write_bytes(content)
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    write_images(folder, ["image_a.png", "image_b.jpg"])
    return folder


@pytest.fixture(scope="module")
def gbuffers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gbuffers(tmp_path_factory.mktemp("gbuffer_frames"))


# ----------------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(
    "relative, damage, message",
    [
        (TOKENIZER, "folder", f"{TOKENIZER}: missing; download the weights with"),
        (f"{INVERSE_MODEL}/model.pt", "missing", "model.pt: missing; download the weights with"),
        (f"{INVERSE_MODEL}/model.pt", "truncated", "model.pt: cannot be read as a PyTorch checkpoint"),
        (f"{INVERSE_MODEL}/model.pt", "garbage", "the file is corrupt or incomplete: download the weights with"),
        (f"{TOKENIZER}/encoder.jit", "missing", "encoder.jit: missing; download the weights with"),
        (f"{TOKENIZER}/encoder.jit", "truncated", "encoder.jit: cannot be read as a TorchScript file"),
        (f"{TOKENIZER}/decoder.jit", "garbage", "decoder.jit: cannot be read as a TorchScript file"),
        (f"{TOKENIZER}/mean_std.pt", "truncated", "mean_std.pt: unreadable"),
        (f"{TOKENIZER}/image_mean_std.pt", "missing", "image_mean_std.pt: missing; download the weights with"),
    ],
)
def test_missing_or_corrupt_checkpoint_files(
    tiny_checkpoints: Path, images: Path, tmp_path: Path, relative: str, damage: str, message: str
) -> None:
    source = tiny_checkpoints / relative
    if damage == "folder":
        checkpoints = tmp_path / "checkpoints"
        shutil.copytree(tiny_checkpoints, checkpoints, copy_function=os.link, ignore=lambda folder, names: [TOKENIZER])
    else:
        content = {
            "missing": None,
            "truncated": source.read_bytes()[: source.stat().st_size // 2],
            "garbage": bytes(range(256)) * 8,
        }[damage]
        checkpoints = damaged_checkpoints(tiny_checkpoints, tmp_path / "checkpoints", relative, content)
    run = run_cli(inverse, checkpoints, *inverse_args(images, tmp_path / "out"))
    assert_user_error(run, message, str(checkpoints / relative), f"{DOWNLOAD_COMMAND} {checkpoints}")
    assert finished_files(tmp_path / "out") == {}


def test_verify_mode_names_files_with_wrong_md5(tiny_checkpoints: Path, tmp_path: Path, capsys) -> None:
    checkpoints = damaged_checkpoints(tiny_checkpoints, tmp_path / "checkpoints", f"{TOKENIZER}/decoder.jit", None)
    assert download.main(["--checkpoint_dir", str(checkpoints), "--verify_only"]) == 2
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    model = checkpoints / INVERSE_MODEL / "model.pt"
    assert f"MD5 checksum mismatch (corrupt or incomplete download) of {model}" in line
    assert f"missing {checkpoints / TOKENIZER / 'decoder.jit'}" in line
    assert line.endswith(f"{DOWNLOAD_COMMAND} {checkpoints}")


# ----------------------------------------------------------------------------------------------- inputs


def test_corrupt_and_truncated_images_name_the_file(tiny_checkpoints: Path, images: Path, tmp_path: Path) -> None:
    for name, content in [("broken.jpg", (images / "image_b.jpg").read_bytes()[:300]), ("text.png", b"not a png")]:
        dataset = tmp_path / name
        shutil.copytree(images, dataset)
        (dataset / name).write_bytes(content)
        run = run_cli(inverse, tiny_checkpoints, *inverse_args(dataset, tmp_path / f"out_{name}"))
        assert_user_error(run, f"Cannot read image {dataset / name}", "replace the file or remove it")
        assert_no_leftovers(tmp_path / f"out_{name}")


def test_cmyk_jpeg_is_read_as_rgb(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "print.jpg", quality=100)
    assert np.abs(read_image(tmp_path / "print.jpg") - rgb / 255).mean() < 0.05  # not its K channel taken for alpha


def test_nan_and_inf_in_an_exr_input_are_replaced_with_a_warning(tiny_checkpoints: Path, tmp_path: Path) -> None:
    image = np.random.default_rng(0).random((48, 80, 3)).astype(np.float32)
    image[3, 4, 0], image[5, 6, 1], image[7, 8, 2] = np.nan, np.inf, -np.inf
    write_exr(tmp_path / "in" / "photo.exr", image)
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(tmp_path / "in", tmp_path / "out", "--output_format", "exr"))
    assert run.code == 0 and "photo.exr: 3 NaN or infinite value(s) replaced" in run.output
    depth = read_image(tmp_path / "out/gbuffer_frames/photo/0000.0000.depth.exr")
    assert np.isfinite(depth).all()  # one NaN pixel would otherwise spread over the whole output


def test_empty_input_folder(tiny_checkpoints: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(tmp_path / "empty", tmp_path / "out"))
    assert_user_error(run, f"No images in {tmp_path / 'empty'}", "check --dataset_path", "--image_extensions")


@pytest.mark.parametrize(
    "options, message",
    [
        (["--height", "72"], "--height 72: must be a positive multiple of 16"),
        (["--width", "2048"], "at most 1920"),
    ],
)
def test_sizes_the_model_cannot_take_name_the_allowed_values(
    tiny_checkpoints: Path, images: Path, tmp_path: Path, options: list[str], message: str
) -> None:
    assert_user_error(run_cli(inverse, tiny_checkpoints, *inverse_args(images, tmp_path), *options), message)


def test_mixed_image_sizes_in_one_clip_work(tiny_checkpoints: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for index, (height, width) in enumerate([(48, 80), (90, 30), (17, 200)]):
        path = tmp_path / "frames" / "clip" / f"frame_{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(path, rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    run = run_cli(
        inverse,
        tiny_checkpoints,
        "--dataset_path",
        str(tmp_path / "frames"),
        "--num_video_frames",
        "57",
        "--video_save_folder",
        str(tmp_path / "out"),
        "--inference_passes",
        "depth",
        "--fit",
        "crop",
        "--height",
        "32",
        "--width",
        "48",
    )
    assert run.code == 0, run.output
    assert iio.imread(tmp_path / "out" / "clip.depth.mp4").shape == (57, 32, 48, 3)


def test_frames_too_small_for_a_video(tiny_checkpoints: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "frames", ["clip"], frames=2)
    for path in (tmp_path / "frames" / "clip").iterdir():
        iio.imwrite(path, np.zeros((1, 1, 3), np.uint8))
    run = run_cli(
        inverse,
        tiny_checkpoints,
        "--dataset_path",
        str(tmp_path / "frames"),
        "--num_video_frames",
        "57",
        "--video_save_folder",
        str(tmp_path / "out"),
        "--inference_passes",
        "depth",
        "--output_size",
        "input",
        "--height",
        "32",
        "--width",
        "48",
    )
    assert_user_error(run, "clip.depth.mp4: 1×1 frames are too small for an H.264 video", "--output_size model")
    assert_no_leftovers(tmp_path / "out")


def test_unwritable_output_folder_fails_before_any_work(
    tiny_checkpoints: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a_file").write_text("")
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, tmp_path / "a_file" / "out"))
    assert_user_error(run, f"{tmp_path / 'a_file'} is a file; choose another --video_save_folder")
    monkeypatch.setattr(io.os, "access", lambda path, mode: False)  # root may write anywhere: simulate a read-only disk
    monkeypatch.setattr(InverseRenderer, "render", lambda *args, **kwargs: pytest.fail("rendered while read-only"))
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, tmp_path / "readonly" / "out"))
    assert_user_error(run, f"Output folder {tmp_path / 'readonly' / 'out'} is not writable", "fix its permissions")


def test_full_disk_while_writing_is_a_user_error(
    tiny_checkpoints: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.iio, "imwrite", disk_full)
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, tmp_path / "out"))
    assert_user_error(run, "Cannot write", "No space left on device", "check free space")
    assert_no_leftovers(tmp_path / "out")


def test_no_cuda_device_says_so(tiny_checkpoints: Path, images: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, tmp_path / "out"), "--device", "cuda")
    assert_user_error(run, "--device cuda: no CUDA GPU is available; use --device cpu")


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    ],
    ids=["torch", "cudnn"],
)
def test_gpu_out_of_memory_suggests_offloading_and_max_batch(
    tiny_checkpoints: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(InverseRenderer, "render", out_of_memory)
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, tmp_path / "out"))
    assert_user_error(
        run, "GPU ran out of memory", "--max_batch", "--offload_diffusion_transformer", "--offload_tokenizer"
    )


@pytest.mark.parametrize("debug", [False, True])
def test_internal_error_is_one_line_with_a_debug_hint(
    tiny_checkpoints: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, debug: bool
) -> None:
    def bug(*args: object, **kwargs: object) -> None:
        raise ValueError("unexpected state\nsecond line")

    monkeypatch.setattr(InverseRenderer, "render", bug)
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, tmp_path / "out"), *(["--debug"] if debug else []))
    assert run.code == 1
    assert run.last_line == (
        "internal error: ValueError: unexpected state second line (rerun with --debug for the traceback)"
    )
    assert ("Traceback" in run.output) == debug


def test_ctrl_c_keeps_finished_outputs(tiny_checkpoints: Path, images: Path, tmp_path: Path, monkeypatch) -> None:
    render = InverseRenderer.render
    calls = []

    def interrupted_second_time(*args: object, **kwargs: object):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return render(*args, **kwargs)

    monkeypatch.setattr(InverseRenderer, "render", interrupted_second_time)
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, tmp_path / "out"))
    assert run.code == 130 and run.last_line.startswith("interrupted: finished outputs are kept; rerun")
    expected = ["gbuffer_frames/image_a/0000.0000.depth.jpg", "image_a.depth.jpg"]
    assert sorted(finished_files(tmp_path / "out")) == expected
    assert_no_leftovers(tmp_path / "out")


# ----------------------------------------------------------------------------------------------- forward inputs


def test_corrupt_environment_map(tiny_checkpoints: Path, gbuffers: Path, tmp_path: Path) -> None:
    for name, content in [
        ("sky.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 16 +X 32\n\x02\x02"),
        ("sky.exr", b"v/1\x01" + bytes(100)),
    ]:
        (tmp_path / name).write_bytes(content)
        run = run_cli(
            forward,
            tiny_checkpoints,
            *forward_args(gbuffers, tmp_path / "out"),
            "--use_custom_envmap",
            "True",
            "--envlight_path",
            str(tmp_path / name),
        )
        assert_user_error(run, f"{tmp_path / name}: cannot read the environment map", "give an equirectangular")


def test_nan_inf_and_negative_hdri_values_are_cleaned_with_a_warning(
    tiny_checkpoints: Path, gbuffers: Path, tmp_path: Path
) -> None:
    image = sky()
    image[0, 0], image[1, 1], image[2, 2] = np.nan, np.inf, -5.0
    path = write_exr(tmp_path / "bad_sky.exr", image)
    run = run_cli(
        forward,
        tiny_checkpoints,
        *forward_args(gbuffers, tmp_path / "out"),
        "--use_custom_envmap",
        "True",
        "--envlight_path",
        str(path),
    )
    assert run.code == 0, run.output
    assert f"{path}: 1 NaN, 1 infinite, 1 negative texel(s) replaced" in run.output
    assert finished_files(tmp_path / "out").keys() == {"clip__0000.relit_0000.jpg"}


def test_missing_gbuffer_passes_warn_and_no_pass_at_all_fails(tiny_checkpoints: Path, tmp_path: Path) -> None:
    partial = write_gbuffers(tmp_path / "partial", passes=("basecolor", "normal", "depth"))
    run = run_cli(forward, tiny_checkpoints, *forward_args(partial, tmp_path / "out"))
    assert run.code == 0 and "clip/0000: no roughness, metallic frames" in run.output
    (tmp_path / "none" / "clip").mkdir(parents=True)
    iio.imwrite(tmp_path / "none" / "clip" / "0000.0000.jpg", np.zeros((8, 8, 3), np.uint8))
    run = run_cli(forward, tiny_checkpoints, *forward_args(tmp_path / "none", tmp_path / "out_none"))
    assert_user_error(run, f"No G-buffer images in {tmp_path / 'none'}", "point --dataset_path at the inverse run")


def test_corrupt_gbuffer_image(tiny_checkpoints: Path, gbuffers: Path, tmp_path: Path) -> None:
    shutil.copytree(gbuffers, tmp_path / "gbuffers")
    broken = tmp_path / "gbuffers" / "clip" / "0000.0000.normal.jpg"
    broken.write_bytes(broken.read_bytes()[:200])
    run = run_cli(forward, tiny_checkpoints, *forward_args(tmp_path / "gbuffers", tmp_path / "out"))
    assert_user_error(run, f"Cannot read image {broken}")


# ----------------------------------------------------------------------------------------------- frame extraction


def test_frame_extraction_reports_corrupt_videos_and_unwritable_folders(tmp_path: Path, capsys) -> None:
    io.write_video(tmp_path / "good.mp4", np.zeros((6, 16, 16, 3), np.uint8), fps=24)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "cut.mp4").write_bytes((tmp_path / "good.mp4").read_bytes()[:-200])
    assert extract.main(["--input_folder", str(tmp_path / "videos"), "--output_folder", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"Error: could not read video {tmp_path / 'videos' / 'cut.mp4'}")
    assert len(err.splitlines()) == 1
    assert "corrupt, truncated or not a video: replace or re-encode it" in err and not (tmp_path / "out").exists()

    shutil.copy(tmp_path / "good.mp4", tmp_path / "videos" / "cut.mp4")
    (tmp_path / "a_file").write_text("")
    assert extract.main(["--input_folder", str(tmp_path / "videos"), "--output_folder", str(tmp_path / "a_file")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"Error: cannot write the frames of {tmp_path / 'videos' / 'cut.mp4'}")
    assert "Traceback" not in err


# ----------------------------------------------------------------------------------------------- atomic outputs


def test_every_output_is_written_under_a_temporary_name_and_renamed(
    tiny_checkpoints: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renames: list[tuple[Path, Path]] = []
    replace = os.replace

    def recording_replace(source: str | os.PathLike, target: str | os.PathLike) -> None:
        renames.append((Path(source), Path(target)))
        replace(source, target)

    monkeypatch.setattr(io.os, "replace", recording_replace)
    out = tmp_path / "out"
    options = [
        "--output_format",
        "exr",
        "--contact_sheet",
        "true",
        "--inference_passes",
        "depth",
        "normal",
        "basecolor",
    ]
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, out), *options)
    assert run.code == 0, run.output
    io.write_video(out / "clip.mp4", np.zeros((3, 8, 8, 3), np.uint8), fps=24)
    written = {target for _, target in renames if out in target.parents}
    assert written == {out / name for name in finished_files(out)}
    assert {path.suffix for path in written} == {".exr", ".png", ".jpg", ".mp4"}
    for source, target in renames:
        if target in written:
            match = TEMPORARY_NAME.fullmatch(source.name)
            assert source.parent == target.parent and match["stem"] + match["suffix"] == target.name
            assert match["pid"] == str(os.getpid())
    assert_no_leftovers(out)


def finished_process_id() -> int:
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporaries_of_dead_processes_are_removed_and_nothing_else(tmp_path: Path) -> None:
    dead = finished_process_id()
    stale = [
        tmp_path / f".image.depth.cosmos-tmp-{dead}-0123abcd.jpg",
        tmp_path / "gbuffer_frames" / "c" / f".0000.0000.normal.cosmos-tmp-{dead}-89abcdef.exr",
    ]
    kept = [
        tmp_path / f".image.normal.cosmos-tmp-{os.getpid()}-0123abcd.jpg",  # a live run's file in progress
        tmp_path / f".image.depth.tmp-{dead}.jpg",  # a user's file named like an older version's temporary file
        tmp_path / f".image.depth.cosmos-tmp-{dead}.jpg",  # not exactly the marked form: no token
        tmp_path / f".image.depth.cosmos-tmp-{dead}-0123ABCD.jpg",
        tmp_path / f"image.depth.cosmos-tmp-{dead}-0123abcd.jpg",  # not hidden
        tmp_path / ".image.tmp-abc.jpg",
        tmp_path / ".hidden.jpg",
        tmp_path / "image.depth.jpg",
    ]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / f".folder.cosmos-tmp-{dead}-0123abcd").mkdir()  # a folder is never ours
    assert io.prepare_output_folder(tmp_path) == 2
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(kept)
    assert (tmp_path / f".folder.cosmos-tmp-{dead}-0123abcd").is_dir()
    assert io.prepare_output_folder(tmp_path / "not" / "yet") == 0


def test_discovery_ignores_temporary_files(tmp_path: Path) -> None:
    write_images(tmp_path / "in", ["image.png"])
    (tmp_path / "in" / ".image.depth.cosmos-tmp-123-0123abcd.png").write_bytes(b"partial")
    items = data.inverse_work_items(tmp_path / "in", 1, group_mode="webdataset")
    assert [item.clip_name for item in items] == ["image"]
    gbuffers = write_gbuffers(tmp_path / "gbuffer_frames", passes=("depth",))
    (gbuffers / "clip" / ".0000.0000.normal.cosmos-tmp-123-0123abcd.jpg").write_bytes(b"partial")
    (clip,) = data.gbuffer_clips(gbuffers, 1)
    assert list(clip.passes) == ["depth"]


def started_until_first_output(command: list[str], out: Path, **popen: object) -> subprocess.Popen:
    """``command`` started from the repository root, once its first output file is under ``out`` (or it ended)."""
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, **popen)
    deadline = time.monotonic() + 120
    while not finished_files(out) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    return process


@pytest.mark.slow
def test_killed_run_resumes_to_byte_identical_outputs(tiny_checkpoints: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", [f"image_{index:02d}.png" for index in range(10)])
    common = [
        "--checkpoint_dir",
        str(tiny_checkpoints),
        "--device",
        "cpu",
        *SIZE,
        "--num_steps",
        "10",
        "--num_video_frames",
        "1",
        "--group_mode",
        "webdataset",
        "--dataset_path",
        str(tmp_path / "in"),
    ]
    assert inverse.main([*common, "--video_save_folder", str(tmp_path / "reference")]) == 0
    reference = finished_files(tmp_path / "reference")
    assert len(reference) == 10 * 2 * len(PASSES)

    out = tmp_path / "out"
    command = [sys.executable, INVERSE_SCRIPT, *common, "--video_save_folder", str(out)]
    killed = started_until_first_output(command, out, stderr=subprocess.DEVNULL)
    killed.kill()
    killed.wait()
    done = finished_files(out)
    assert 0 < len(done) < len(reference), "the run was not interrupted in the middle"
    assert all(content == reference[name] for name, content in done.items())  # nothing partial under a final name

    stale = out / "gbuffer_frames" / "image_09" / f".0000.0000.depth.cosmos-tmp-{killed.pid}-0123abcd.jpg"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half a JPEG")  # what a kill during a write leaves
    rerun = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, rerun.stderr
    assert "temporary file(s) left in" in rerun.stderr
    assert finished_files(out) == reference
    assert not [path for path in out.rglob("*") if TEMPORARY_NAME.fullmatch(path.name)]


# ----------------------------------------------------------------------------------------------- verified writes


def assert_all_complete(folder: Path) -> None:
    """Every file under ``folder`` is complete (``integrity.is_complete``), and none is a temporary file."""
    for path in folder.rglob("*"):
        assert not TEMPORARY_NAME.fullmatch(path.name), path
        assert path.is_dir() or is_complete(path), path


def test_full_disk_at_the_end_of_a_write_is_one_line_and_the_rerun_redoes_it(
    tiny_checkpoints: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data is taken, but flushing it to disk fails (ENOSPC at fsync, as on a full disk): exit code 2, one
    line, no file under a final name; the rerun writes everything."""

    def full_disk(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(io.os, "fsync", full_disk)
        run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, out))
    assert_user_error(run, "Cannot write", "the disk is full (No space left on device)", "check free space")
    assert finished_files(out) == {}
    assert_no_leftovers(out)
    rerun = run_cli(inverse, tiny_checkpoints, *inverse_args(images, out))
    assert rerun.code == 0 and "Done: 2 images, 4 files" in rerun.output, rerun.output
    assert_all_complete(out)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, mounted for the test (root only; skipped where it cannot be mounted)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_really_full_disk_leaves_only_complete_files_and_the_rerun_finishes(
    tiny_checkpoints: Path, images: Path, tiny_disk: Path
) -> None:
    filler = tiny_disk / "filler"
    stats = os.statvfs(tiny_disk)
    filler.write_bytes(bytes(stats.f_bavail * stats.f_frsize - 2 * 4096))  # room for two small files
    out = tiny_disk / "out"
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, out))
    assert_user_error(run, "Cannot write", "the disk is full", "check free space")
    assert_all_complete(out)
    assert len(finished_files(out)) < 4
    filler.unlink()
    rerun = run_cli(inverse, tiny_checkpoints, *inverse_args(images, out))
    assert rerun.code == 0 and "Nothing to do" not in rerun.output, rerun.output
    assert len(finished_files(out)) == 4
    assert_all_complete(out)


def test_truncated_outputs_of_an_older_run_are_redone(tiny_checkpoints: Path, tmp_path: Path) -> None:
    """A JPEG and an MP4 cut short under their final names (what an older version left on a full disk) do not count
    as done: the rerun redoes their item, and the files are those of an uninterrupted run."""
    write_images(tmp_path / "in", ["clip"], frames=3)
    options = ["--num_video_frames", "57", "--group_mode", "folder", *SMALL]
    reference_run = run_cli(inverse, tiny_checkpoints, *inverse_args(tmp_path / "in", tmp_path / "ref"), *options)
    assert reference_run.code == 0, reference_run.output
    reference = finished_files(tmp_path / "ref")
    out = shutil.copytree(tmp_path / "ref", tmp_path / "out")
    cut = [out / "clip.depth.mp4", next((out / "gbuffer_frames" / "clip").glob("*.jpg"))]
    for path in cut:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    rerun = run_cli(inverse, tiny_checkpoints, *inverse_args(tmp_path / "in", out), *options)
    assert rerun.code == 0 and "Done: 1 chunk," in rerun.output, rerun.output
    assert finished_files(out) == reference


def test_empty_output_folder_is_refused(tiny_checkpoints: Path, images: Path, tmp_path: Path) -> None:
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, tmp_path / "out"), "--video_save_folder", "")
    assert_user_error(run, "--video_save_folder is empty: give the folder for the outputs")


def test_output_folder_inside_the_dataset_is_refused(tiny_checkpoints: Path, gbuffers: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", ["image.png"])
    for dataset, out in [(tmp_path / "in", tmp_path / "in" / "out"), (tmp_path / "in", tmp_path / "in")]:
        run = run_cli(inverse, tiny_checkpoints, *inverse_args(dataset, out))
        assert_user_error(run, f"--video_save_folder {out} is inside --dataset_path {dataset}", "outside the dataset")
    run = run_cli(forward, tiny_checkpoints, *forward_args(gbuffers, gbuffers / "clip" / "relit"))
    assert_user_error(run, "is inside --dataset_path", "choose an output folder outside the dataset")
    assert sorted(path.name for path in (tmp_path / "in").iterdir()) == ["image.png"]


def test_writes_never_follow_links_out_of_the_output_folder(
    tiny_checkpoints: Path, images: Path, tmp_path: Path
) -> None:
    elsewhere, out = tmp_path / "elsewhere", tmp_path / "out"
    elsewhere.mkdir()
    out.mkdir()
    (out / "gbuffer_frames").symlink_to(elsewhere)  # a link to a folder on the way to outputs: refused
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, out))
    assert_user_error(run, f"{out / 'gbuffer_frames'} is a symbolic link to {elsewhere}", "remove the link")
    assert list(elsewhere.iterdir()) == []

    (out / "gbuffer_frames").unlink()
    precious = tmp_path / "precious.jpg"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(precious)
    before = precious.read_bytes()
    (out / "image_a.depth.jpg").symlink_to(precious)  # a link at an output's path: replaced, its target untouched
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, out))
    assert run.code == 0, run.output
    assert precious.read_bytes() == before
    assert not (out / "image_a.depth.jpg").is_symlink() and is_complete(out / "image_a.depth.jpg")


def test_sigterm_ends_a_run_like_ctrl_c(tiny_checkpoints: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", [f"image_{index:02d}.png" for index in range(10)])
    out = tmp_path / "out"
    command = [
        sys.executable,
        INVERSE_SCRIPT,
        *inverse_args(tmp_path / "in", out),
        *("--checkpoint_dir", str(tiny_checkpoints), "--device", "cpu", *SIZE, "--num_steps", "10"),
    ]
    process = started_until_first_output(command, out, stderr=subprocess.PIPE, text=True)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.rstrip().splitlines()[-1] == INTERRUPTED
    assert "Traceback" not in stderr
    assert 0 < len(finished_files(out)) < 20
    assert_all_complete(out)


def test_sighup_ends_a_run_like_ctrl_c(
    tiny_checkpoints: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    render, calls = InverseRenderer.render, []
    handler = signal.getsignal(signal.SIGHUP)

    def hang_up_at_second_item(*args: object, **kwargs: object):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGHUP)
        return render(*args, **kwargs)

    monkeypatch.setattr(InverseRenderer, "render", hang_up_at_second_item)
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, tmp_path / "out"))
    assert run.code == 128 + signal.SIGHUP and run.last_line == INTERRUPTED, run.output
    expected = ["gbuffer_frames/image_a/0000.0000.depth.jpg", "image_a.depth.jpg"]
    assert sorted(finished_files(tmp_path / "out")) == expected
    assert_no_leftovers(tmp_path / "out")
    assert signal.getsignal(signal.SIGHUP) is handler  # the run's handlers are gone


# ----------------------------------------------------------------------------------------------- real stderr


@pytest.mark.parametrize("script", [INVERSE_SCRIPT, FORWARD_SCRIPT])
def test_subprocess_prints_one_error_line_without_traceback(
    script: str, tiny_checkpoints: Path, images: Path, gbuffers: Path, tmp_path: Path
) -> None:
    if script == INVERSE_SCRIPT:
        model = f"{INVERSE_MODEL}/model.pt"
        checkpoints = damaged_checkpoints(tiny_checkpoints, tmp_path / "checkpoints", model, b"PK\x03\x04")
        args = inverse_args(images, tmp_path / "out")
        expected = f"error: {checkpoints / INVERSE_MODEL / 'model.pt'}: cannot be read as a PyTorch checkpoint"
    else:
        checkpoints = tiny_checkpoints
        cv2.imwrite(str(tmp_path / "sky.hdr"), sky())
        (tmp_path / "sky.hdr").write_bytes((tmp_path / "sky.hdr").read_bytes()[:-300])
        args = [
            *forward_args(gbuffers, tmp_path / "out"),
            "--use_custom_envmap",
            "True",
            "--envlight_path",
            str(tmp_path / "sky.hdr"),
        ]
        expected = f"error: {tmp_path / 'sky.hdr'}: cannot read the environment map"
    result = subprocess.run(
        [sys.executable, script, "--checkpoint_dir", str(checkpoints), "--device", "cpu", *SIZE, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith(expected), result.stderr
    assert finished_files(tmp_path / "out") == {}


# ----------------------------------------------------------------------------------------------- hostile input
# Every case below once ended as an internal error (exit 1), a traceback, a hang or a broken file; each now gives
# exit code 2 and one line naming the option (or file) and what is allowed, before any model is loaded.

NOT_RENDERED = "rendered although the input is refused"


def refuse_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any sampling fail the test: the cases below must be refused before the models run."""
    from cosmos_predict1.diffusion.renderer import ForwardRenderer

    for renderer in (InverseRenderer, ForwardRenderer):
        monkeypatch.setattr(renderer, "render", lambda *args, **kwargs: pytest.fail(NOT_RENDERED))


@pytest.mark.parametrize(
    "options, fragments",
    [
        pytest.param(["--guidance", "nan"], ["--guidance nan: must be a number from 0 to 100"], id="guidance-nan"),
        pytest.param(["--guidance", "inf"], ["--guidance inf: must be a number from 0 to 100"], id="guidance-inf"),
        pytest.param(["--guidance", "-1"], ["--guidance -1.0: must be"], id="guidance-negative"),
        pytest.param(["--num_steps", "0"], ["--num_steps 0: must be an integer from 1 to 1000"], id="num_steps-0"),
        pytest.param(["--num_steps", "10000000000"], ["--num_steps 10000000000: must be"], id="num_steps-huge"),
        pytest.param(["--max_batch", "0"], ["--max_batch 0: must be an integer of at least 1"], id="max_batch-0"),
        pytest.param(
            ["--seed", "-1"], ["--seed -1: must be an integer from 0 to 9223372036854775807"], id="seed-negative"
        ),
        pytest.param(["--seed", str(2**63)], [f"--seed {2**63}: must be"], id="seed-2**63"),
        pytest.param(["--fps", "-24"], ["--fps -24: must be an integer from 1 to 1000"], id="fps-negative"),
        pytest.param(["--fps", "0"], ["--fps 0: must be"], id="fps-0"),
        pytest.param(["--fps", "1000000"], ["--fps 1000000: must be"], id="fps-huge"),
        pytest.param(
            ["--resize_resolution", "100000", "100000"],
            ["--resize_resolution 100000: must be an integer from 1 to 8192"],
            id="resize_resolution-huge",
        ),
        pytest.param(["--resize_resolution", "0"], ["--resize_resolution 0: must be"], id="resize_resolution-0"),
        pytest.param(
            ["--overlap_n_frames", "-1"],
            ["--overlap_n_frames -1: must be an integer from 0 to 0"],
            id="overlap-negative",
        ),
        pytest.param(
            ["--overlap_n_frames", "1"], ["(fewer than --num_video_frames 1)"], id="overlap-not-below-frame-count"
        ),
        pytest.param(
            ["--context_parallel_size", "0"],
            ["--context_parallel_size 0: must be an integer of at least 1"],
            id="context_parallel_size-0",
        ),
    ],
)
def test_inverse_numeric_options_are_checked_first(
    tiny_checkpoints: Path,
    images: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
    fragments: list[str],
) -> None:
    refuse_rendering(monkeypatch)
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, tmp_path / "out"), *options)
    assert_user_error(run, *fragments)
    assert finished_files(tmp_path / "out") == {}


@pytest.mark.parametrize(
    "options, fragments",
    [
        pytest.param(
            ["--env_rotation", "nan"], ["--env_rotation nan: must be a number from -360 to 360"], id="env_rotation-nan"
        ),
        pytest.param(["--env_rotation", "1e21"], ["--env_rotation 1e+21: must be"], id="env_rotation-1e21"),
        pytest.param(["--env_rotation", "1e308"], ["--env_rotation 1e+308: must be"], id="env_rotation-1e308"),
        pytest.param(["--env_rotation=-inf"], ["--env_rotation -inf: must be"], id="env_rotation-inf"),
        pytest.param(
            ["--env_strength", "0"],
            ["--env_strength 0.0: must be a number above 0 and at most 1000000"],
            id="env_strength-0",
        ),
        pytest.param(["--env_strength", "nan"], ["--env_strength nan: must be"], id="env_strength-nan"),
        pytest.param(["--env_strength", "1e300"], ["--env_strength 1e+300: must be"], id="env_strength-huge"),
        pytest.param(["--fps", "-1"], ["--fps -1: must be"], id="forward-fps-negative"),
        pytest.param(
            ["--use_fixed_frame_ind", "True", "--fixed_frame_ind", "5"],
            ["--fixed_frame_ind 5: must be an integer from 0 to 0"],
            id="fixed_frame_ind-out-of-range",
        ),
        pytest.param(
            ["--envlight_ind", str(2**60)],
            ["random lighting", "use a smaller index or --seed"],
            id="random-light-seed-overflow",
        ),
    ],
)
def test_forward_numeric_options_are_checked_first(
    tiny_checkpoints: Path,
    gbuffers: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
    fragments: list[str],
) -> None:
    refuse_rendering(monkeypatch)
    run = run_cli(forward, tiny_checkpoints, *forward_args(gbuffers, tmp_path / "out"), *options)
    assert_user_error(run, *fragments)
    assert finished_files(tmp_path / "out") == {}


TINY_NET = {"model_channels": 64, "num_blocks": 2, "num_heads": 2, "adaln_lora_dim": 16, "crossattn_emb_channels": 32}


@pytest.mark.parametrize(
    "net, fragments",
    [
        pytest.param(
            {"model_channels": [64]}, ["'model_channels': [64]: must be an integer from 12 to 65536"], id="list"
        ),
        pytest.param({"num_heads": 0}, ["'num_heads': 0: must be an integer from 1 to 1024"], id="zero"),
        pytest.param({"patch_spatial": 0}, ["'patch_spatial': 0: must be an integer from 1 to 16"], id="zero-patch"),
        pytest.param({"model_channels": -64}, ["'model_channels': -64: must be"], id="negative"),
        pytest.param({"num_blocks": "2"}, ["'num_blocks': '2': must be an integer"], id="string"),
        pytest.param({"num_blocks": 2.0}, ["'num_blocks': 2.0: must be an integer"], id="float-for-integer"),
        pytest.param({"model_channels": 10**12}, ["'model_channels': 1000000000000: must be"], id="absurdly-large"),
        pytest.param({"max_frames": 10**30}, ["'max_frames':", "must be an integer from 1 to 65536"], id="huge-table"),
        pytest.param({"mlp_ratio": float("nan")}, ["'mlp_ratio': nan: must be a number above 0"], id="nan"),
        pytest.param(
            {"concat_padding_mask": "yes"}, ["'concat_padding_mask': 'yes': must be true or false"], id="not-bool"
        ),
        pytest.param(
            {"num_heads": 3}, ["'model_channels': 64 with 'num_heads': 3", "even head size of at least 12"], id="heads"
        ),
        pytest.param({"num_heads": 8}, ["even head size of at least 12"], id="heads-too-small"),
        pytest.param(
            {"max_img_h": 4},
            ["'max_img_h': 4 is too small for --height 64", "it must be at least 8"],
            id="too-small-position-tables",
        ),
        pytest.param(
            {"patch_temporal": 2}, ["'patch_temporal': 2 does not divide the 1 latent frames"], id="patch_temporal"
        ),
        pytest.param(
            {"in_channels": 8}, ["'in_channels': 8 is not what this renderer feeds", "(only 16)"], id="in_channels"
        ),
        pytest.param(
            {"additional_concat_ch": 136}, ["'additional_concat_ch': 136", "inverse vs forward"], id="other-renderer"
        ),
        pytest.param({"context_embedding_rows": 3}, ["'context_embedding_rows': 3: must be at least 7"], id="rows"),
        pytest.param(
            {"rope_t_extrapolation_ratio": 0},
            ["'rope_t_extrapolation_ratio': 0: must be a number from 0.001 to 1000"],
            id="ratio-0",
        ),
        pytest.param({"block_config": ["FA"]}, ["'block_config': ['FA'] is not supported"], id="fixed-setting"),
        pytest.param([1, 2], ["'net': must be a JSON object"], id="net-not-object"),
        pytest.param(
            "[" * 100000 + "]" * 100000, ["not a readable JSON file (nested too deeply)"], id="nested-too-deep"
        ),
    ],
)
def test_config_json_is_checked_before_anything_is_built(
    tiny_checkpoints: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, net, fragments: list[str]
) -> None:
    from cosmos_predict1.diffusion.networks import dit

    relative = f"{INVERSE_MODEL}/config.json"
    if isinstance(net, str):
        content = net.encode()
    else:
        content = json.dumps({"net": {**TINY_NET, **net} if isinstance(net, dict) else net}).encode()
    checkpoints = damaged_checkpoints(tiny_checkpoints, tmp_path / "checkpoints", relative, content)
    monkeypatch.setattr(dit.DiffusionRendererDiT, "__init__", lambda *args: pytest.fail("built a network"))
    run = run_cli(inverse, checkpoints, *inverse_args(images, tmp_path / "out"))
    assert_user_error(run, str(checkpoints / relative), *fragments)
    assert finished_files(tmp_path / "out") == {}


def pose_file(first_value: str) -> str:
    """A one-frame pose file whose matrix starts with ``first_value`` as written (JSON text), else the identity."""
    return (
        '{"frames": [{"transform_matrix": [[' + first_value + ", 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]}"
    )


@pytest.mark.parametrize(
    "content, fragments",
    [
        pytest.param(
            pose_file("1" + "0" * 400), ["an integer of 401 digits is not a finite number"], id="huge-integer"
        ),
        pytest.param(pose_file("1" + "0" * 30), ["its 3×3 part is not a rotation"], id="large-integer"),
        pytest.param(pose_file("1e400"), ["inf is not a finite number"], id="overflowing-float"),
        pytest.param(pose_file("NaN"), ["nan is not a finite number"], id="nan"),
        pytest.param(pose_file("-Infinity"), ["-inf is not a finite number"], id="infinity"),
        pytest.param(pose_file('"1"'), ["'1' is not a number"], id="string"),
        pytest.param(pose_file("2"), ["its 3×3 part is not a rotation"], id="scaled"),
        pytest.param(
            json.dumps({"frames": [{"transform_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}]}),
            ["frames[0].transform_matrix: not a 4×4 list"],
            id="3x3",
        ),
        pytest.param(
            json.dumps({"frames": [{"transform_matrix": [[1, 0, 0, 0], [0, 1, 0], [0, 0, 1, 0]]}]}),
            ["not a 4×4 list"],
            id="ragged",
        ),
        pytest.param(json.dumps({"frames": [{"transform_matrix": 7}]}), ["not a 4×4 list"], id="not-a-matrix"),
        pytest.param(
            '{"frames": ' + "[" * 100000 + "]" * 100000 + "}",
            ["not a readable pose file (nested too deeply)"],
            id="deeply-nested",
        ),
        pytest.param('{"frames": []}', ["need 1 frames of 4×4 transform_matrix, found 0"], id="too-few-frames"),
        pytest.param("[]", ['no "frames" list'], id="not-an-object"),
        pytest.param("\udcff", ["not a readable pose file"], id="not-utf8"),
    ],
)
def test_pose_files_are_checked_before_anything_loads(
    tiny_checkpoints: Path,
    gbuffers: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    content: str,
    fragments: list[str],
) -> None:
    path = tmp_path / "poses.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    refuse_rendering(monkeypatch)
    run = run_cli(forward, tiny_checkpoints, *forward_args(gbuffers, tmp_path / "out"), "--camera_poses", str(path))
    assert_user_error(run, str(path), *fragments)


# ----------------------------------------------------------------------------------------------- non-regular files


@contextlib.contextmanager
def fifo(path: Path):
    """A named pipe at ``path``; should anything open it for reading, a writer opens it after 20 s and closes it,
    so a regression fails the test (the reader sees an empty file) instead of hanging the suite."""
    import threading

    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    opened = []

    def unblock() -> None:
        with contextlib.suppress(OSError):
            with open(os.open(path, os.O_WRONLY | os.O_NONBLOCK), "wb"):
                opened.append(path)

    timer = threading.Timer(20, unblock)
    timer.start()
    try:
        yield path
    finally:
        timer.cancel()
    assert not opened, f"{path} was opened for reading"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_fifo_in_the_dataset_is_skipped_and_the_run_finishes(tiny_checkpoints: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", ["image_a.png"])
    with fifo(tmp_path / "in" / "x.png"):
        run = run_cli(inverse, tiny_checkpoints, *inverse_args(tmp_path / "in", tmp_path / "out"))
    assert run.code == 0, run.output
    assert f"Skipping {tmp_path / 'in' / 'x.png'}: not a regular file" in run.output
    assert sorted(finished_files(tmp_path / "out")) == [
        "gbuffer_frames/image_a/0000.0000.depth.jpg",
        "image_a.depth.jpg",
    ]

    gbuffers = write_gbuffers(tmp_path / "gbuffers")
    with fifo(gbuffers / "clip" / "0000.0001.normal.jpg"):
        run = run_cli(forward, tiny_checkpoints, *forward_args(gbuffers, tmp_path / "out_forward"))
    assert run.code == 0, run.output
    assert "0000.0001.normal.jpg: not a regular file" in run.output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("which", ["config.json", "model.pt", "decoder.jit", "camera_poses", "envlight_path"])
def test_a_fifo_in_place_of_a_file_is_refused(
    tiny_checkpoints: Path, gbuffers: Path, tmp_path: Path, which: str
) -> None:
    options: list[str] = []
    checkpoints = tiny_checkpoints
    if which in ("config.json", "model.pt", "decoder.jit"):
        folder = TOKENIZER if which == "decoder.jit" else FORWARD_MODEL
        checkpoints = damaged_checkpoints(tiny_checkpoints, tmp_path / "checkpoints", f"{folder}/{which}", None)
        path = checkpoints / folder / which
    else:
        path = tmp_path / ("poses.json" if which == "camera_poses" else "sky.hdr")
        options = {
            "camera_poses": ["--camera_poses", str(path)],
            "envlight_path": ["--use_custom_envmap", "True", "--envlight_path", str(path)],
        }[which]
    with fifo(path):
        run = run_cli(forward, checkpoints, *forward_args(gbuffers, tmp_path / "out"), *options)
    assert_user_error(run, str(path), "not a regular file")


# ----------------------------------------------------------------------------------------------- write failures


def full_disk_openexr(monkeypatch: pytest.MonkeyPatch) -> str:
    """OpenEXR writing half a file, then raising what it raises on a full disk (a RuntimeError, no errno)."""
    import OpenEXR

    class FullDiskFile:
        def __init__(self, *args: object) -> None:
            pass

        def write(self, name: str) -> None:
            Path(name).write_bytes(b"half an EXR")
            raise RuntimeError(f'Failed to write pixel data to image file "{name}". No space left on device.')

    monkeypatch.setattr(OpenEXR, "File", FullDiskFile)
    return "OpenEXR could not write it (Failed to write pixel data"


def full_disk_pillow(monkeypatch: pytest.MonkeyPatch) -> str:
    """The JPEG encoder failing with ENOSPC."""

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.iio, "imwrite", disk_full)
    return "No space left on device"


def fake_ffmpeg(monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """The writers' ffmpeg replaced by the shell ``script`` (frames on its stdin, the output path as $1, messages
    to its stderr), started the way the writers start ffmpeg."""

    def start(path: Path, width: int, height: int, fps: int, messages: object) -> subprocess.Popen:
        command = ["sh", "-c", script, "ffmpeg", str(path)]
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=messages)

    monkeypatch.setattr(io, "_start_ffmpeg", start)


def full_disk_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> str:
    """ffmpeg on a full disk: it takes every frame, writes part of the file, fails at the trailer (exit status 228,
    its "Error writing trailer" line on stderr); imageio would report nothing."""
    fake_ffmpeg(
        monkeypatch,
        'cat > /dev/null; printf "\\000\\000\\000\\040ftypisom" > "$1"; '
        'echo "[out#0/mp4 @ 0x5581e0] Error writing trailer: No space left on device" >&2; exit 228',
    )
    return "ffmpeg failed: Error writing trailer: No space left on device"


@pytest.mark.parametrize(
    "break_encoder, options",
    [
        pytest.param(full_disk_openexr, ["--output_format", "exr"], id="exr-openexr-runtime-error"),
        pytest.param(full_disk_pillow, [], id="jpg-enospc"),
        pytest.param(
            full_disk_ffmpeg, ["--num_video_frames", "57", "--group_mode", "folder", *SMALL], id="mp4-ffmpeg-status"
        ),
    ],
)
def test_full_disk_in_each_encoder_is_one_line_and_no_temporary_file(
    tiny_checkpoints: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, break_encoder, options: list[str]
) -> None:
    write_images(tmp_path / "in", ["clip"], frames=3)
    expected = break_encoder(monkeypatch)
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(tmp_path / "in", tmp_path / "out"), *options)
    assert_user_error(run, "Cannot write", expected, "check free space and permissions")
    assert_no_leftovers(tmp_path / "out")


@pytest.mark.slow
def test_real_write_failures_of_every_encoder(tmp_path: Path) -> None:
    """With the file size limit of the process (RLIMIT_FSIZE) at 4 kB, every encoder's write really fails: Pillow
    and the in-memory PNG with EFBIG, OpenEXR with its own RuntimeError, ffmpeg by exiting early; each is one line
    and leaves no file."""
    resource = pytest.importorskip("resource")
    del resource
    script = f"""
import resource, signal, sys
import numpy as np
sys.path.insert(0, {str(REPO_ROOT)!r})
from cosmos_predict1.diffusion import writers
from cosmos_predict1.errors import UserError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
noise = np.random.default_rng(0).integers(0, 256, (24, 128, 128, 3), dtype=np.uint8)
writes = {{
    "a.jpg": lambda path: writers.write_image(path, noise[0]),
    "a.png": lambda path: writers.write_png16(path, noise[0].astype(np.uint16) * 257),
    "a.exr": lambda path: writers.write_exr(path, noise[0].astype(np.float32) / 255),
    "a.mp4": lambda path: writers.write_video(path, noise, 24),
}}
for name, write in writes.items():
    try:
        write({str(tmp_path)!r} + "/" + name)
        print(name, "written")
    except UserError as err:
        print(name, err)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert set(lines) == {"a.jpg", "a.png", "a.exr", "a.mp4"}
    for name, line in lines.items():
        assert line.startswith(f"Cannot write {tmp_path / name}: "), line
        assert line.endswith("check free space and permissions, or choose another --video_save_folder."), line
    assert "File too large" in lines["a.jpg"] and "File too large" in lines["a.png"]
    assert "OpenEXR could not write it" in lines["a.exr"] and "ffmpeg" in lines["a.mp4"]
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_exiting_at_once_is_one_line_with_its_reason(tmp_path: Path) -> None:
    # The command line refuses --fps -5 first; this is the writer's own guard when ffmpeg exits at once.
    with pytest.raises(UserError, match=r"Cannot write .*clip.mp4: ffmpeg stopped early: .*framerate.*-5; check"):
        io.write_video(tmp_path / "clip.mp4", np.zeros((40, 64, 64, 3), np.uint8), fps=-5)
    assert list(tmp_path.iterdir()) == []


def test_an_encoder_that_reports_success_but_leaves_a_cut_file_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ffmpeg(monkeypatch, 'cat > /dev/null; printf "\\000\\000\\000\\040ftypisom" > "$1"')  # exit status 0
    with pytest.raises(UserError, match=r"cut\.mp4: the encoder left an incomplete file .*; check free space"):
        io.write_video(tmp_path / "cut.mp4", np.zeros((3, 16, 16, 3), np.uint8), fps=24)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------- long names


def test_over_long_names_are_shortened_the_same_way_by_writer_and_resume(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    long_name = "n" * 236 + ".png"  # a 240-character input file name: its clip name fits, its outputs would not
    write_images(tmp_path / "in", [long_name])
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(tmp_path / "in", tmp_path / "out"))
    assert run.code == 0, run.output
    files = sorted(finished_files(tmp_path / "out"))
    clip = "n" * 236
    short = layout.shortened(clip, layout.NAME_MAX - layout.RESERVED)
    assert short.startswith("n" * 100) and len(short.encode()) <= layout.NAME_MAX - layout.RESERVED
    assert files == [f"gbuffer_frames/{clip}/0000.0000.depth.jpg", f"{short}.depth.jpg"]
    rerun = run_cli(inverse, tiny_checkpoints, *inverse_args(tmp_path / "in", tmp_path / "out"))
    assert rerun.code == 0 and "Nothing to do" in rerun.last_line  # the resume check finds the shortened names

    relit = run_cli(forward, tiny_checkpoints, *forward_args(tmp_path / "out" / "gbuffer_frames", tmp_path / "relit"))
    assert relit.code == 0, relit.output
    (name,) = finished_files(tmp_path / "relit")
    assert name == layout.shortened(f"{clip}__0000", layout.NAME_MAX - layout.RESERVED) + ".relit_0000.jpg"


def test_shortened_names_are_deterministic_distinct_and_fit() -> None:
    for part in ["a" * 300, "ä" * 200, "x" * 207, "x" * 208, "clip/with.dots" * 30]:
        short = layout.shortened(part, 207)
        assert short == layout.shortened(part, 207) and len(short.encode()) <= 207
        assert (short == part) == (len(part.encode()) <= 207)
        short.encode("utf-8")  # whole characters only
    assert layout.shortened("a" * 300, 207) != layout.shortened("a" * 299 + "b", 207)


def test_paths_longer_than_the_filesystem_allows_are_refused_before_any_work(
    tiny_checkpoints: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_rendering(monkeypatch)
    monkeypatch.setattr(layout, "PATH_MAX", len(str(tmp_path)) + 40)
    layout._limits.cache_clear()
    try:
        run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, tmp_path / "out"))
    finally:
        monkeypatch.undo()
        layout._limits.cache_clear()
    assert_user_error(run, "the path has", "more than this filesystem allows", "shorten the input file or folder names")
