"""What a run says before and while it works: the lines before loading (device, models, compiling, the work found),
image vs video nouns, the warning for stills read as one video, the order of the checks (nothing expensive before
them), the first estimate, and the missing-weights message (tiny checkpoints, CPU)."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from test_cli_inverse import SIZE, write_images
from test_scripts import load_script

from cosmos_predict1 import release
from cosmos_predict1.diffusion import compilation, pipelines, progress, sequences
from cosmos_predict1.diffusion.assembly import describe_loading
from cosmos_predict1.diffusion.inference import inference_forward_renderer as forward
from cosmos_predict1.diffusion.inference import inference_inverse_renderer as inverse
from cosmos_predict1.diffusion.inference.forward_job import ForwardJob
from cosmos_predict1.diffusion.inference.inverse_job import InverseJob
from cosmos_predict1.diffusion.options import GBUFFER_PASSES, ModelOptions
from cosmos_predict1.errors import UserError
from cosmos_predict1.release import FORWARD_MODEL, INVERSE_MODEL, TOKENIZER

STILLS_ADVICE = "--num_video_frames 1 --group_mode webdataset"


def cli(script, checkpoints: Path, *args: str) -> int:
    common = ["--checkpoint_dir", str(checkpoints), "--device", "cpu", "--num_steps", "1", *SIZE]
    return script.main([*common, *args])


def write_frames(folder: Path, names: list[str], sizes: list[tuple[int, int]]) -> None:
    """One random image per name, of the (height, width) at the same index."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (height, width) in zip(names, sizes):
        iio.imwrite(folder / name, rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def write_gbuffers(folder: Path, clips: list[str], frames: int) -> None:
    """``<clip>/0000.<frame>.<pass>.jpg`` for every pass: the inverse renderer's layout."""
    for clip in clips:
        write_frames(
            folder / clip,
            [f"0000.{f:04d}.{name}.jpg" for f in range(frames) for name in GBUFFER_PASSES],
            [(16, 16)] * frames * len(GBUFFER_PASSES),
        )


class StopAtLoading(UserError):
    """Raised where a test's run would load the models (or convert an HDRI): everything before it has happened."""

    def __init__(self) -> None:
        super().__init__("stopped where loading starts")


def stopped(code: int, capsys: pytest.CaptureFixture) -> bool:
    """Whether a run ended at ``StopAtLoading`` (and nowhere before)."""
    return code == 2 and capsys.readouterr().err.strip().endswith("error: stopped where loading starts")


def stop(job) -> None:
    raise StopAtLoading


@pytest.fixture
def stop_at_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(InverseJob, "load", stop)
    monkeypatch.setattr(ForwardJob, "load", stop)


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == level]


# ------------------------------------------------------------------------------------------- lines before loading


def test_lines_before_loading_and_image_nouns(
    tiny_checkpoints: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog, capsys
) -> None:
    caplog.set_level(logging.INFO, logger="cosmos_predict1")
    write_images(tmp_path / "in", ["a.jpg", "b.png"])
    at_loading: list[str] = []
    load = InverseJob.load
    monkeypatch.setattr(InverseJob, "load", lambda job: at_loading.extend(messages(caplog)) or load(job))
    args = ["--dataset_path", str(tmp_path / "in"), "--video_save_folder", str(tmp_path / "out")]
    args += ["--num_video_frames", "1", "--group_mode", "webdataset", "--inference_passes", "depth", "normal"]
    assert cli(inverse, tiny_checkpoints, *args) == 0
    network, tokenizer = tiny_checkpoints / INVERSE_MODEL, tiny_checkpoints / TOKENIZER
    assert at_loading[:3] == [
        "Device: cpu, float32 weights",
        f"Loading the DiT from {network} and the tokenizer from {tokenizer}",
        "Compiling: no, not on the CPU (--compile true forces it)",
    ]
    found = f"Found 2 images in {tmp_path / 'in'}; to write: 4 outputs (2 images × 2 G-buffer passes), 8 files"
    assert at_loading[3] == found
    saved = [line for line in messages(caplog) if line.startswith("Saved")]
    assert sorted(saved) == sorted(
        f"Saved image {tmp_path / 'out'}/{c}.{p}.jpg" for c in "ab" for p in ("depth", "normal")
    )
    assert f"Done: 2 images, 8 files written to {tmp_path / 'out'}" in capsys.readouterr().err

    (tmp_path / "in/a.jpg").rename(tmp_path / "in/c.jpg")  # a new image; b is done
    caplog.clear()
    monkeypatch.setattr(InverseJob, "load", stop)
    assert stopped(cli(inverse, tiny_checkpoints, *args), capsys)
    (found,) = [line for line in messages(caplog) if line.startswith("Found")]
    assert found.endswith(
        "(1 image × 2 G-buffer passes), 4 files; 1 image skipped, already done (--overwrite redoes them)"
    )


@pytest.mark.slow
def test_video_clips_are_counted_and_saved_as_videos(tiny_checkpoints: Path, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="cosmos_predict1")
    write_frames(tmp_path / "in/walk", [f"frame_{f:04d}.png" for f in range(57)], [(48, 80)] * 57)
    args = ["--dataset_path", str(tmp_path / "in"), "--video_save_folder", str(tmp_path / "out")]
    assert cli(inverse, tiny_checkpoints, *args, "--inference_passes", "depth", "--save_image", "false") == 0
    lines = messages(caplog)
    (found,) = [line for line in lines if line.startswith("Found")]
    assert found.startswith(f"Found 1 video clip in {tmp_path / 'in'}, in 1 chunk of 57 frames; to write: 1 output")
    assert f"Saved video {tmp_path / 'out/walk.depth.mp4'}" in lines
    assert messages(caplog, logging.WARNING) == []  # a proper frame sequence


def test_forward_lines_name_the_lighting(
    tiny_checkpoints: Path, tmp_path: Path, stop_at_loading: None, caplog, capsys
) -> None:
    caplog.set_level(logging.INFO, logger="cosmos_predict1")
    write_gbuffers(tmp_path / "gbuffer_frames", ["a", "b", "c"], frames=1)
    args = ["--dataset_path", str(tmp_path / "gbuffer_frames"), "--num_video_frames", "1", "--envlight_ind", "0", "2"]
    assert stopped(cli(forward, tiny_checkpoints, *args, "--video_save_folder", str(tmp_path / "out")), capsys)
    lines = messages(caplog)
    assert f"Loading the DiT from {tiny_checkpoints / FORWARD_MODEL} and the tokenizer" in lines[1]
    assert lines[3].startswith("Lighting: 2 HDRIs (") and "encoded by the tokenizer" in lines[3]
    assert lines[4].startswith("Found 3 G-buffer images in ") and "(3 G-buffer images × 2 lightings)" in lines[4]


def test_gpu_lines_name_the_gpu_and_the_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"GPU {index}")
    options = ModelOptions(network_folder=INVERSE_MODEL, offload_network=True)
    device, models, compiling = describe_loading(options, torch.device("cuda"))
    assert device == "Device: cuda:1 (GPU 1), bfloat16 weights"
    assert models == (
        f"Loading the DiT from {options.network_dir} (kept in CPU memory between uses) and the tokenizer from "
        f"{options.tokenizer_dir}"
    )
    assert "decided once the models are loaded" in compiling


@pytest.mark.parametrize(
    "choice, device, text",
    [
        (None, "cpu", "no, not on the CPU"),
        (None, "cuda", "decided once the models are loaded"),
        (True, "cpu", "the DiT and the tokenizer (--compile true)"),
        (False, "cuda", "no (--compile false)"),
    ],
)
def test_compile_line_follows_the_compile_rule(choice: bool | None, device: str, text: str) -> None:
    assert text in compilation.describe_choice(choice, device)
    assert compilation.forced(choice, device) == (None if "decided" in text else "DiT" in text)


def test_nouns_are_counted() -> None:
    assert [progress.counted(n, "image") for n in (1, 3)] == ["1 image", "3 images"]
    assert progress.counted(5, "G-buffer pass") == "5 G-buffer passes"


# ------------------------------------------------------------------------------------------- stills read as a video


def test_stills_grouped_into_a_video_are_warned_about(
    tiny_checkpoints: Path, tmp_path: Path, stop_at_loading: None, caplog, capsys
) -> None:
    write_frames(tmp_path / "photos", ["beach.jpg", "cat.png", "IMG_4501.jpg"], [(48, 80), (64, 64), (30, 40)])
    args = ["--dataset_path", str(tmp_path / "photos"), "--video_save_folder", str(tmp_path / "out")]
    assert stopped(cli(inverse, tiny_checkpoints, *args), capsys)
    (warning,) = messages(caplog, logging.WARNING)
    assert warning.startswith("Clip 'photos' may not be one video: its files have 3 different sizes; their names")
    assert "only 3 files for 57 frames (the last one fills the other 54)" in warning and STILLS_ADVICE in warning


def test_forward_warns_about_image_gbuffers_read_as_videos(
    tiny_checkpoints: Path, tmp_path: Path, stop_at_loading: None, caplog, capsys
) -> None:
    write_gbuffers(tmp_path / "gbuffer_frames", ["a", "b"], frames=1)
    args = ["--dataset_path", str(tmp_path / "gbuffer_frames"), "--video_save_folder", str(tmp_path / "out")]
    assert stopped(cli(forward, tiny_checkpoints, *args, "--envlight_ind", "0"), capsys)
    (warning,) = messages(caplog, logging.WARNING)[-1:]
    assert warning.startswith("2 of 2 clips may not be one video each, e.g. clip 'a/0000': only 1 file for 57 frames")
    assert warning.endswith("For the G-buffers of images, use --num_video_frames 1.")


def test_a_frame_sequence_raises_no_doubt(tmp_path: Path) -> None:
    names = [f"frame_{f:04d}.jpg" for f in range(57)]
    write_frames(tmp_path, names, [(24, 32)] * 57)
    assert sequences.clip_doubts([tmp_path / name for name in names], 57) == []


@pytest.mark.parametrize(
    "names, expected",
    [
        (["frame_0000.jpg", "frame_0001.jpg", "frame_0005.jpg"], True),
        (["0000.png", "0001.png"], True),
        (["clip.0009.jpg", "clip.0010.jpg"], True),
        (["scene2_cam1_0001.png", "scene2_cam1_0002.png"], True),
        (["beach.jpg", "cat.jpg"], False),
        (["frame_10.jpg", "frame_2.jpg"], False),  # sorted as text: not increasing
        (["IMG_4501.jpg", "DSC_0001.jpg"], False),
        (["image_1.jpg", "image_2.png"], False),
    ],
)
def test_frame_sequence_names(names: list[str], expected: bool) -> None:
    assert sequences.is_frame_sequence(names) is expected


@pytest.mark.parametrize("real, doubted", [(1, True), (28, True), (29, False), (57, False)])
def test_padding_rule(real: int, doubted: bool) -> None:
    assert bool(sequences.padding_doubts(real, 57)) is doubted


# ------------------------------------------------------------------------------------------- checks come first


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The HDRIs converted in this test (the conversion itself is replaced by a stop)."""
    converted: list[object] = []

    def spy(light, device):
        converted.append(light.hdri)
        raise StopAtLoading

    monkeypatch.setattr(pipelines, "prepare_environment", spy)
    return converted


@pytest.mark.parametrize("problem", ["no checkpoints", "bad config.json", "output folder is a file"])
def test_every_check_comes_before_any_hdri_conversion(
    tiny_checkpoints: Path, tmp_path: Path, conversions: list[object], capsys, problem: str
) -> None:
    write_gbuffers(tmp_path / "gbuffer_frames", ["a"], frames=1)
    checkpoints, out = tiny_checkpoints, tmp_path / "out"
    if problem == "no checkpoints":
        checkpoints = tmp_path / "nowhere"
    elif problem == "bad config.json":
        checkpoints = tmp_path / "checkpoints"
        shutil.copytree(tiny_checkpoints, checkpoints)
        (checkpoints / FORWARD_MODEL / "config.json").write_text('{"net": {"max_img_h": 2}}')
    else:
        out.write_text("not a folder")
    args = ["--dataset_path", str(tmp_path / "gbuffer_frames"), "--num_video_frames", "1", "--video_save_folder"]
    assert cli(forward, checkpoints, *args, str(out)) == 2
    assert conversions == [] and "Traceback" not in capsys.readouterr().err


def test_hdri_conversion_spy_sees_a_good_run(
    tiny_checkpoints: Path, tmp_path: Path, conversions: list[object], capsys
) -> None:
    write_gbuffers(tmp_path / "gbuffer_frames", ["a"], frames=1)
    args = ["--dataset_path", str(tmp_path / "gbuffer_frames"), "--num_video_frames", "1", "--envlight_ind", "1"]
    assert stopped(cli(forward, tiny_checkpoints, *args, "--video_save_folder", str(tmp_path / "out")), capsys)
    assert len(conversions) == 1


# ------------------------------------------------------------------------------------------- the first estimate


def test_first_estimate_comes_from_the_sampling_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(float(t) for t in range(0, 1000, 2))  # every reading 2 s after the one before
    monkeypatch.setattr(progress, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    stream = io.StringIO()
    with progress.Progress(2, 10, 15, batches=4, stream=stream, live=False) as bar:
        for step in range(3):
            bar.step(step)
    (line,) = stream.getvalue().splitlines()
    assert line == (
        "[0/2] sampling takes 2.0 s per step: about 1:56 left for the run's 60 steps (sampling only; refined as "
        "items finish)"
    )


def test_no_first_estimate_for_a_short_run() -> None:
    stream = io.StringIO()
    with progress.Progress(1, 1, 15, batches=1, stream=stream, live=False) as bar:
        for step in range(15):
            bar.step(step)
    assert stream.getvalue() == ""


# ------------------------------------------------------------------------------------------- missing weights


@pytest.mark.parametrize(
    "relative, model",
    [
        (f"{INVERSE_MODEL}/model.pt", "inverse"),
        (FORWARD_MODEL, "forward"),
        (f"{TOKENIZER}/decoder.jit", "tokenizer"),
    ],
)
def test_missing_weights_name_the_smallest_download(tmp_path: Path, relative: str, model: str) -> None:
    message = str(release.missing_file(tmp_path / relative))
    command = f"python scripts/download_diffusion_renderer_checkpoints.py --checkpoint_dir {tmp_path} --model {model} "
    assert message.startswith(f"{tmp_path / relative}: missing; download the weights with: {command}(")
    assert "hf auth login" in message and "\n" not in message


def test_missing_checkpoint_folder_names_each_model_to_download(tmp_path: Path, capsys) -> None:
    write_images(tmp_path / "in", ["x.png"])
    args = ["--dataset_path", str(tmp_path / "in"), "--num_video_frames", "1"]
    assert cli(inverse, tmp_path / "nowhere", *args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    nowhere = tmp_path / "nowhere"
    assert line.startswith(f"error: {nowhere / INVERSE_MODEL} and {nowhere / TOKENIZER}: missing;")
    assert "--model inverse && python " in line and line.count("--model") == 2 and "--model tokenizer (" in line
    assert "hf auth login" in line


def test_download_choices_are_the_scripts() -> None:
    download = load_script("download_diffusion_renderer_checkpoints")
    parser_choices = next(a.choices for a in download.build_parser()._actions if a.dest == "model")
    assert set(release.DOWNLOAD_CHOICES) <= set(parser_choices)
    assert all(download.MODELS[choice] == [folder] for choice, folder in release.DOWNLOAD_CHOICES.items())
