"""Time to result: what a run imports before it needs it, when it compiles, the overlapped reading and writing, and
progress lines in logs (tiny checkpoints, CPU)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli_inverse import run, write_images

from conftest import REPO_ROOT
from cosmos_predict1.diffusion import compilation, run_loop
from cosmos_predict1.diffusion.compilation import COSTS, PlannedWork, decide
from cosmos_predict1.diffusion.progress import Progress

SCRIPTS = {
    "inverse": "cosmos_predict1/diffusion/inference/inference_inverse_renderer.py",
    "forward": "cosmos_predict1/diffusion/inference/inference_forward_renderer.py",
}
HEAVY = ("diffusers", "torch", "cv2", "OpenEXR", "imageio_ffmpeg", "torch._dynamo")


def imported_by(script: str, *args: str) -> tuple[set[str], str, float]:
    """The heavy modules a script run imports, its stderr and its wall time (a fresh interpreter)."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['{script}', *{list(args)!r}]\n"
        "try:\n"
        f"    runpy.run_path('{script}', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(set({HEAVY!r}) & set(sys.modules)))\n"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    return set(eval(done.stdout.strip().splitlines()[-1])), done.stderr, time.perf_counter() - start


@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.parametrize(
    "args",
    [["--help"], ["--num_video_frames", "2"], ["--checkpoint_dir", "nowhere", "--dataset_path", "."]],
    ids=["help", "bad-argument", "missing-checkpoint"],
)
def test_early_answers_import_no_model_libraries(name: str, args: list[str]) -> None:
    modules, stderr, seconds = imported_by(SCRIPTS[name], *args)
    assert modules == set(), f"{args} imported {modules}"
    assert "Traceback" not in stderr
    assert seconds < 2.0, f"{args} took {seconds:.1f} s"


# --- the compile decision ----------------------------------------------------------------------------------------

IMAGE_LATENT = (5, 16, 1, 88, 160)  # five passes of one 704×1280 image
CLIP_LATENT = (1, 16, 8, 88, 160)  # one 57-frame 704×1280 clip


def image_run(images: int) -> PlannedWork:
    return PlannedWork(
        dit_calls=((IMAGE_LATENT, 15),) * images,
        encodes=((1, 3, 1, 704, 1280),) * images,
        decodes=(IMAGE_LATENT,) * images,
    )


def test_one_image_does_not_pay_for_compiling() -> None:
    decision = decide(image_run(1), network_warm=False, tokenizer_warm=False)
    assert (decision.network, decision.tokenizer) == (False, False)
    assert decision.network_gain == pytest.approx(
        5 * 88 * 160 * 15 * COSTS.dit_saved_per_position_step - COSTS.dit_cold
    )


def test_a_warm_cache_makes_the_dit_pay_sooner() -> None:
    assert not decide(image_run(3), network_warm=False, tokenizer_warm=False).network
    assert decide(image_run(3), network_warm=True, tokenizer_warm=False).network


def test_a_57_frame_clip_compiles_the_dit_but_not_the_tokenizer() -> None:
    clip = PlannedWork(((CLIP_LATENT, 15),) * 5, ((1, 3, 57, 704, 1280),), (CLIP_LATENT,) * 5)
    decision = decide(clip, network_warm=False, tokenizer_warm=False)
    assert decision.network and not decision.tokenizer
    many = PlannedWork.combine([clip] * 40)
    assert decide(many, network_warm=True, tokenizer_warm=True).tokenizer


def test_every_distinct_shape_costs_a_compile() -> None:
    same = PlannedWork(((IMAGE_LATENT, 15),) * 4)
    mixed = PlannedWork(((IMAGE_LATENT, 15),) * 3 + (((2, 16, 1, 88, 160), 15),))
    gains = [decide(work, network_warm=True, tokenizer_warm=True).network_gain for work in (same, mixed)]
    assert gains[0] - gains[1] == pytest.approx(COSTS.dit_warm + 3 * 88 * 160 * 15 * COSTS.dit_saved_per_position_step)


def test_markers_record_warm_shapes_in_a_private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSMOS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    identity = {"torch": "x", "device": "gpu"}
    assert not compilation.is_warm("dit", [IMAGE_LATENT], identity)
    compilation.mark_warm("dit", IMAGE_LATENT, identity)
    assert compilation.is_warm("dit", [IMAGE_LATENT], identity)
    assert not compilation.is_warm("dit", [IMAGE_LATENT, CLIP_LATENT], identity)
    assert not compilation.is_warm("dit", [IMAGE_LATENT], {**identity, "torch": "y"})
    folder = tmp_path / "cache" / "compile"
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(folder / "inductor")


def test_a_shared_cache_folder_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    from cosmos_predict1.cache import private_folder

    monkeypatch.setenv("COSMOS_CACHE_DIR", str(tmp_path))
    (tmp_path / "compile").mkdir(mode=0o777)
    (tmp_path / "compile").chmod(0o777)
    folder = private_folder("compile")
    assert folder != tmp_path / "compile" and folder.is_dir()
    assert "others may write to it" in caplog.text


# --- overlapped reading and writing --------------------------------------------------------------------------------


@pytest.mark.slow
def test_background_reading_and_writing_give_the_same_files(
    tiny_checkpoints: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_images(tmp_path / "in", ["a.png", "b.png", "c.jpg"])
    common = [
        "--dataset_path",
        str(tmp_path / "in"),
        "--num_video_frames",
        "1",
        "--group_mode",
        "webdataset",
        "--max_batch",
        "2",
        "--contact_sheet",
        "true",
    ]
    for overlap in (True, False):
        monkeypatch.setattr(run_loop, "BACKGROUND_IO", overlap)
        assert run(tiny_checkpoints, *common, "--video_save_folder", str(tmp_path / str(overlap))) == 0
    files = {overlap: sorted((tmp_path / str(overlap)).rglob("*.*")) for overlap in (True, False)}
    assert len(files[True]) == 3 * 5 * 2 + 3
    for a, b in zip(files[True], files[False]):
        assert a.relative_to(tmp_path / "True") == b.relative_to(tmp_path / "False")
        assert a.read_bytes() == b.read_bytes(), a.name


# --- progress in logs ----------------------------------------------------------------------------------------------


def test_progress_prints_one_line_per_item_when_not_a_terminal() -> None:
    stream = io.StringIO()
    with Progress(3, 15, 15, stream=stream) as progress:
        for name in ("a", "b", "c"):
            for step in range(15):
                progress.step(step)
            progress.item_done(name)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in stream.getvalue()
    assert lines[0].startswith("[1/3] a done in ") and "elapsed" in lines[0] and "left" in lines[0]
    assert lines[2].startswith("[3/3] c done in ") and lines[2].endswith("about 0:00 left")
