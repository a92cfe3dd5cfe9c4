"""Argument errors and ``--help`` of every script: one line per error (exit code 2, no usage block) and a help that
shows the defaults and sorts the renderers' options into the original's, new ones and those without effect."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

import pytest
from test_scripts import load_script

from conftest import REPO_ROOT
from cosmos_predict1.diffusion.inference import inference_forward_renderer as forward
from cosmos_predict1.diffusion.inference import inference_inverse_renderer as inverse

HELPERS = {
    "extract": load_script("dataproc_extract_frames_from_video"),
    "download": load_script("download_diffusion_renderer_checkpoints"),
    "tiny": load_script("make_tiny_checkpoints"),
    "evaluate": load_script("evaluate_renderer"),
    "benchmark": load_script("benchmark"),
}
SCRIPTS: dict[str, Callable[[list[str]], int]] = {
    "inverse": inverse.main,
    "forward": forward.main,
    **{name: module.main for name, module in HELPERS.items()},
}
FRAMES = "the released models take 1 (images) or 57 (videos)"
VIDEOS = ["--input_folder", "in", "--output_folder", "out"]
NO_EFFECT = [  # the original's options that change nothing in its renderers either
    "--video_save_name",
    "--prompt",
    "--negative_prompt",
    "--batch_input_path",
    "--num_gpus",
    "--disable_prompt_upsampler",
    "--offload_text_encoder_model",
    "--offload_prompt_upsampler",
    "--offload_guardrail_models",
    "--disable_guardrail",
]
GROUPS = ["options of the original:", "options new in this implementation:", "accepted for compatibility; no effect:"]
ERRORS = [  # script, arguments, the error line between "error: " and "; see --help"
    ("inverse", ["--num_video_frames", "5"], f"--num_video_frames 5: {FRAMES}"),
    ("forward", ["--num_video_frames=9"], f"--num_video_frames 9: {FRAMES}"),  # one of the original's choices
    ("inverse", ["--save_video", "maybe"], "--save_video maybe: expected true or false"),
    ("forward", ["--nmu_steps", "3"], "unrecognized option --nmu_steps (did you mean --num_steps?)"),
    ("inverse", ["--xyz=1"], "unrecognized option --xyz"),
    ("inverse", ["--num_steps"], "--num_steps: expected one value"),
    ("forward", ["--envlight_ind"], "--envlight_ind: expected one or more values"),
    ("inverse", ["--height", "tall"], "--height tall: expected an integer"),
    ("forward", ["--env_strength", "bright"], "--env_strength bright: expected a number"),
    ("inverse", ["--fit", "zoom"], "--fit zoom: expected one of stretch, crop, pad"),
    ("inverse", ["images/"], "unexpected value images/: every value must follow its option"),
    (
        "extract",
        [*VIDEOS, "--frame_rate", "fast"],
        "--frame_rate fast: must be a finite number of at least 0.001 (frames per second)",
    ),
    ("extract", [*VIDEOS, "--max_frames", "0"], "--max_frames 0: must be an integer >= 1"),
    ("extract", [], "the following arguments are required: --input_folder, --output_folder"),
    (
        "download",
        ["--model", "everything"],
        "--model everything: expected one of inverse, forward, tokenizer, hdris, all",
    ),
    ("download", ["--chekpoint_dir", "x"], "unrecognized option --chekpoint_dir (did you mean --checkpoint_dir?)"),
    ("tiny", ["--checkpoint_dir", "x", "--seed", "one"], "--seed one: expected an integer"),
    ("evaluate", ["--predictions", "a", "--overlap_n_frames", "2.5"], "--overlap_n_frames 2.5: expected an integer"),
    ("benchmark", ["--cases", "cli", "all"], f"--cases all: expected one of {', '.join(HELPERS['benchmark'].CASES)}"),
]


def error_line(script: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What ``script`` prints on stderr for ``argv``, after checking that it exits with code 2 and prints nothing
    else."""
    with pytest.raises(SystemExit) as stop:
        SCRIPTS[script](argv)
    captured = capsys.readouterr()
    assert stop.value.code == 2 and captured.out == ""
    return captured.err


@pytest.mark.parametrize("script, argv, line", [pytest.param(*e, id=f"{e[0]} {' '.join(e[1])}") for e in ERRORS])
def test_an_argument_error_is_one_line(script: str, argv: list[str], line: str, capsys) -> None:
    assert error_line(script, argv, capsys) == f"error: {line}; see --help\n"


@pytest.mark.parametrize("frames", ["1", "57"])
def test_the_frame_counts_of_the_released_models_are_accepted(frames: str) -> None:
    assert inverse.build_parser().parse_args(["--num_video_frames", frames]).num_video_frames == int(frames)


@pytest.mark.parametrize("frames", ["0", "17", "58", "114", "-57", "57.0", "x"])
def test_other_frame_counts_are_refused(frames: str, capsys) -> None:
    assert error_line("forward", ["--num_video_frames", frames], capsys) == (
        f"error: --num_video_frames {frames}: {FRAMES}; see --help\n"
    )


@pytest.mark.parametrize(
    "text, value",
    [(t, True) for t in ("true", "True", "yes", "Y", "t", "1")] + [(t, False) for t in ("FALSE", "no", "n", "f", "0")],
)
def test_booleans_take_the_original_spellings(text: str, value: bool) -> None:
    assert forward.build_parser().parse_args([f"--rotate_light={text}"]).rotate_light is value


def option_entries(help_text: str) -> list[dict[str, str]]:
    """Each of the three groups of a renderer's help as {option: its line(s) joined}, in order."""
    parts = re.split("|".join(map(re.escape, GROUPS)), help_text)
    assert len(parts) == 4, help_text
    groups = []
    for part in parts[1:]:
        entries = re.split(r"\n(?=  --)", part)  # an option's entry starts at a line "  --name"
        groups.append({e.split()[0]: " ".join(e.split()) for e in entries if e.startswith("  --")})
    return groups


@pytest.mark.parametrize("script", [inverse, forward], ids=["inverse", "forward"])
def test_help_shows_defaults_and_three_groups(script) -> None:
    text = script.build_parser().format_help()
    original, new, no_effect = option_entries(text)
    for option, default in [("--num_video_frames", "57"), ("--height", "704"), ("--width", "1280"), ("--seed", "1000")]:
        assert original[option].endswith(f"(default: {default})"), original[option]
    assert new["--device"].endswith("(default: cuda)") and "(default" not in new["--fp8"]
    assert "(default: None)" not in text and "(default: False)" not in text
    assert set(no_effect) == set(NO_EFFECT + (["--inference_passes"] if script is forward else []))
    assert {"--checkpoint_dir", "--dataset_path", "--num_steps", "--offload_tokenizer"} <= set(original)
    assert {"--device", "--max_batch", "--fit", "--overwrite", "--debug", "--compile"} <= set(new)
    assert set(original) | set(new) | set(no_effect) == set(re.findall(r"^  (--\w+)", text, re.M)) - {"--help"}


def test_helper_help_shows_defaults_and_required_options() -> None:
    download = " ".join(HELPERS["download"].build_parser().format_help().split())
    assert "(default: checkpoints)" in download and "(default: all)" in download
    usage = HELPERS["extract"].build_parser().format_usage()
    assert usage.endswith(" --input_folder DIR --output_folder DIR [options]\n"), usage


def test_a_script_run_as_users_do_prints_one_line() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "cosmos_predict1/diffusion/inference/inference_inverse_renderer.py",
            "--num_video_frames",
            "5",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: --num_video_frames 5: {FRAMES}; see --help\n"
