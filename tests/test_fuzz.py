"""Fuzzing both renderer CLIs and the frame extractor with damaged files and odd sizes (tiny checkpoints, CPU).

Whatever the bytes, a run ends with exit code 0 or 2; with 2, its last line names the damaged file. It never ends in
an internal error or a traceback, and it leaves no temporary or partial file in its output folder. Examples are
derandomised, so every run of the suite tries the same bounded set.
"""

from __future__ import annotations

import contextlib
import io as text_io
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_reliability import (
    DOWNLOAD_COMMAND,
    PASSES,
    Run,
    assert_no_leftovers,
    damaged_checkpoints,
    extract,
    finished_files,
    forward_args,
    inverse_args,
    run_cli,
    sky,
    write_exr,
    write_gbuffers,
)

from cosmos_predict1.diffusion import envmap
from cosmos_predict1.diffusion import writers as io
from cosmos_predict1.diffusion.frames import resized_size
from cosmos_predict1.diffusion.inference import inference_forward_renderer as forward
from cosmos_predict1.diffusion.inference import inference_inverse_renderer as inverse
from cosmos_predict1.diffusion.networks import INVERSE_7B, DiffusionRendererDiT
from cosmos_predict1.diffusion.networks.config import FED_BY_RENDERER, SCHEMA, config_from_dict
from cosmos_predict1.diffusion.networks.position_embedding import rope_angles, sincos_embedding
from cosmos_predict1.diffusion.options import MAX_RESIZED_PIXELS
from cosmos_predict1.diffusion.renderer import work_item_noise
from cosmos_predict1.diffusion.sampler import karras_sigmas
from cosmos_predict1.errors import UserError
from cosmos_predict1.release import INVERSE_MODEL, TOKENIZER

FUZZ = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
)
SMALL = ["--height", "32", "--width", "48"]


@dataclass(frozen=True)
class Damage:
    """A way to break a file: cut it short, overwrite a block with random bytes or zeros, or empty it."""

    kind: str
    where: float  # position of the cut or block, as a fraction of the length
    length: int  # block length in bytes
    seed: int

    def apply(self, data: bytes) -> bytes:
        start = int(self.where * len(data))
        if self.kind == "empty":
            return b""
        if self.kind == "truncate":
            return data[:start]
        end = min(len(data), start + self.length)
        block = bytes(end - start) if self.kind == "zero" else np.random.default_rng(self.seed).bytes(end - start)
        return data[:start] + block + data[end:]


damages = st.builds(
    Damage,
    kind=st.sampled_from(["truncate", "overwrite", "zero", "empty"]),
    where=st.floats(0, 1, exclude_max=True),
    length=st.integers(1, 2048),
    seed=st.integers(0, 2**16),
)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A fresh folder per example (hypothesis runs many examples in one test call)."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def assert_clean_ending(run: Run, out: Path, damaged: Path, message: str) -> None:
    """Exit code 0, or 2 with a last line naming ``damaged`` and holding ``message``; no leftovers in ``out``."""
    assert run.code in (0, 2), run.output
    assert "Traceback" not in run.output
    if run.code == 2:
        assert run.last_line.startswith("error: ") and str(damaged) in run.last_line and message in run.last_line
    assert_no_leftovers(out)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one valid file of each fuzzed kind."""
    folder = tmp_path_factory.mktemp("samples")
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    iio.imwrite(folder / "photo.jpg", photo)
    iio.imwrite(folder / "photo.png", photo)
    cv2.imwrite(str(folder / "photo16.png"), photo.astype(np.uint16) * 257)
    write_exr(folder / "photo.exr", photo / 255)
    cv2.imwrite(str(folder / "sky.hdr"), sky()[..., ::-1])
    write_exr(folder / "sky.exr", sky())
    io.write_video(folder / "clip.mp4", rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), fps=24)
    return folder


@pytest.fixture(scope="module")
def gbuffers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gbuffers(tmp_path_factory.mktemp("gbuffer_frames"))


@FUZZ
@given(name=st.sampled_from(["photo.jpg", "photo.png", "photo16.png", "photo.exr"]), damage=damages)
def test_damaged_input_image(tiny_checkpoints: Path, samples: Path, name: str, damage: Damage) -> None:
    with scratch() as folder:
        (folder / "in").mkdir()
        shutil.copy(samples / "photo.png", folder / "in" / "good.png")
        damaged = folder / "in" / f"bad{Path(name).suffix}"
        damaged.write_bytes(damage.apply((samples / name).read_bytes()))
        run = run_cli(inverse, tiny_checkpoints, *SMALL, *inverse_args(folder / "in", folder / "out"))
        assert_clean_ending(run, folder / "out", damaged, "Cannot read image")


@settings(FUZZ, max_examples=12)  # most damaged maps fail at once: cheap
@given(name=st.sampled_from(["sky.hdr", "sky.exr"]), damage=damages)
def test_damaged_environment_map(
    tiny_checkpoints: Path, samples: Path, gbuffers: Path, name: str, damage: Damage
) -> None:
    with scratch() as folder:
        damaged = folder / name
        damaged.write_bytes(damage.apply((samples / name).read_bytes()))
        run = run_cli(
            forward,
            tiny_checkpoints,
            *SMALL,
            *forward_args(gbuffers, folder / "out"),
            "--use_custom_envmap",
            "True",
            "--envlight_path",
            str(damaged),
        )
        assert_clean_ending(run, folder / "out", damaged, "environment map")


@FUZZ
@given(pass_name=st.sampled_from(PASSES), damage=damages)
def test_damaged_gbuffer_image(tiny_checkpoints: Path, gbuffers: Path, pass_name: str, damage: Damage) -> None:
    with scratch() as folder:
        shutil.copytree(gbuffers, folder / "gbuffers")
        damaged = folder / "gbuffers" / "clip" / f"0000.0000.{pass_name}.jpg"
        damaged.write_bytes(damage.apply(damaged.read_bytes()))
        run = run_cli(forward, tiny_checkpoints, *SMALL, *forward_args(folder / "gbuffers", folder / "out"))
        assert_clean_ending(run, folder / "out", damaged, "Cannot read image")


@settings(FUZZ, max_examples=12)  # most damaged files fail before sampling: cheap
@given(
    relative=st.sampled_from(
        [
            f"{INVERSE_MODEL}/model.pt",
            *(f"{TOKENIZER}/{name}" for name in ("encoder.jit", "decoder.jit", "mean_std.pt", "image_mean_std.pt")),
        ]
    ),
    damage=damages,
)
def test_damaged_checkpoint_file(tiny_checkpoints: Path, samples: Path, relative: str, damage: Damage) -> None:
    with scratch() as folder:
        content = damage.apply((tiny_checkpoints / relative).read_bytes())
        checkpoints = damaged_checkpoints(tiny_checkpoints, folder / "checkpoints", relative, content)
        (folder / "in").mkdir()
        shutil.copy(samples / "photo.png", folder / "in" / "photo.png")
        run = run_cli(inverse, checkpoints, *SMALL, *inverse_args(folder / "in", folder / "out"))
        assert_clean_ending(run, folder / "out", checkpoints / relative, f"{DOWNLOAD_COMMAND} {checkpoints}")
        assert run.code == 0 or finished_files(folder / "out") == {}


@settings(FUZZ, max_examples=12)
@given(damage=damages)
def test_damaged_video_for_frame_extraction(samples: Path, damage: Damage) -> None:
    with scratch() as folder:
        (folder / "videos").mkdir()
        damaged = folder / "videos" / "clip.mp4"
        damaged.write_bytes(damage.apply((samples / "clip.mp4").read_bytes()))
        stderr = text_io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(text_io.StringIO()):
            code = extract.main(["--input_folder", str(folder / "videos"), "--output_folder", str(folder / "out")])
        assert code in (0, 2) and "Traceback" not in stderr.getvalue()
        if code == 2:
            assert stderr.getvalue().startswith(f"Error: could not read video {damaged}")
            assert not (folder / "out" / "clip").exists()
        else:
            frames = sorted((folder / "out" / "clip").iterdir())
            assert frames and all(cv2.imread(str(frame)) is not None for frame in frames)  # whole JPEGs, no temp files


@settings(FUZZ, max_examples=3)  # 57-frame clips: the slowest runs here
@given(
    sizes=st.lists(st.tuples(st.integers(1, 120), st.integers(1, 120)), min_size=1, max_size=3),
    fit=st.sampled_from(["stretch", "crop", "pad"]),
    output_size=st.sampled_from(["model", "input"]),
)
def test_random_and_mixed_frame_sizes(
    tiny_checkpoints: Path, sizes: list[tuple[int, int]], fit: str, output_size: str
) -> None:
    with scratch() as folder:
        rng = np.random.default_rng(len(sizes))
        for index, size in enumerate(sizes):  # one clip of mixed sizes, padded to 57 frames with its last file
            path = folder / "in" / "clip" / f"frame_{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            iio.imwrite(path, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        run = run_cli(
            inverse,
            tiny_checkpoints,
            *SMALL,
            "--dataset_path",
            str(folder / "in"),
            "--num_video_frames",
            "57",
            "--video_save_folder",
            str(folder / "out"),
            "--inference_passes",
            "depth",
            "--fit",
            fit,
            "--output_size",
            output_size,
        )
        if run.code == 2:  # outputs of one pixel row or column at the input's size cannot be an H.264 video
            assert output_size == "input" and "too small for an H.264 video" in run.last_line
        else:
            assert run.code == 0, run.output
            assert len(iio.imread(folder / "out" / "clip.depth.mp4")) == 57
        assert len(list((folder / "out" / "gbuffer_frames" / "clip").glob("0000.*.depth.jpg"))) == 57
        assert_no_leftovers(folder / "out")


@FUZZ
@given(
    texels=st.lists(
        st.tuples(st.integers(0, 15), st.integers(0, 31), st.sampled_from([np.nan, np.inf, -np.inf, -1.0, -1e30])),
        max_size=20,
    )
)
def test_hdri_with_nan_inf_or_negative_values(
    tiny_checkpoints: Path, gbuffers: Path, texels: list[tuple[int, int, float]]
) -> None:
    with scratch() as folder:
        image = sky()
        for row, column, value in texels:
            image[row, column, 1] = value
        path = write_exr(folder / "sky.exr", image)
        run = run_cli(
            forward,
            tiny_checkpoints,
            *SMALL,
            *forward_args(gbuffers, folder / "out"),
            "--use_custom_envmap",
            "True",
            "--envlight_path",
            str(path),
        )
        assert run.code == 0, run.output
        assert ("texel(s) replaced" in run.output) == bool(texels)
        assert finished_files(folder / "out").keys() == {"clip__0000.relit_0000.jpg"}


@FUZZ
@given(missing=st.sets(st.sampled_from(PASSES)))
def test_missing_gbuffer_passes(tiny_checkpoints: Path, missing: set[str]) -> None:
    with scratch() as folder:
        present = tuple(name for name in PASSES if name not in missing)
        gbuffers = write_gbuffers(folder / "gbuffers", passes=present)
        if not present:
            iio.imwrite(gbuffers / "clip" / "0000.0000.jpg", np.zeros((8, 8, 3), np.uint8))
        run = run_cli(forward, tiny_checkpoints, *SMALL, *forward_args(gbuffers, folder / "out"))
        if not present:
            assert run.code == 2 and run.last_line.startswith(f"error: No G-buffer images in {gbuffers}")
        else:
            assert run.code == 0, run.output
            assert ("no " + ", ".join(n for n in PASSES if n in missing) + " frames" in run.output) == bool(missing)
        assert_no_leftovers(folder / "out")


# ----------------------------------------------------------------------------------------------- hostile values
# The three families below call the border directly (no model is loaded), so they try many examples in seconds: a
# value is either refused with one UserError line naming its key, option or file, or everything downstream of the
# check that once crashed on it works.

TINY_NET = {"model_channels": 64, "num_blocks": 2, "num_heads": 2, "adaln_lora_dim": 16, "crossattn_emb_channels": 32}
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.integers(-3, 130)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(0.01, 8)
    | st.text(max_size=4)
)
CONFIG_VALUES = (
    JSON_SCALARS
    | st.lists(st.integers(0, 64), max_size=2)
    | st.dictionaries(st.text(max_size=2), st.integers(), max_size=1)
    | st.sampled_from([0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 96, 128, 136, 240, 0.5, 1.0, 2.5, True, False])
)


def plausible(key: str) -> st.SearchStrategy:
    """Values of ``key`` near or inside its range (the renderer-fixed keys: the inverse renderer's value)."""
    rule = SCHEMA[key]
    if key in FED_BY_RENDERER:
        return st.just(getattr(INVERSE_7B, key))
    if rule.kind == "bool":
        return st.booleans()
    if rule.kind == "int":
        return st.integers(int(rule.low) - 1, int(min(rule.high, 256)))
    return st.floats(rule.low, min(rule.high, 8.0))


@settings(FUZZ, max_examples=60)
@given(
    data=st.data(),
    keys=st.lists(st.sampled_from(sorted(SCHEMA)), min_size=1, max_size=3, unique=True),
    clip=st.sampled_from([(1, 32, 48), (57, 32, 48), (1, 64, 96)]),
)
def test_config_json_values(data: st.DataObject, keys: list[str], clip: tuple[int, int, int]) -> None:
    changes = {key: data.draw(plausible(key) | CONFIG_VALUES, label=key) for key in keys}
    net = {**TINY_NET, **changes}
    base = INVERSE_7B
    try:
        config = config_from_dict(net, base, "config.json")
        config.check_frame_size(*clip, source="config.json")
    except UserError as err:
        message = str(err)
        assert "\n" not in message and message.startswith("config.json: '"), message
        assert any(f"'{key}'" in message for key in net), message
        event("refused")
        return
    event("accepted")
    grid = tuple(
        size // patch
        for size, patch in zip(
            (1 if clip[0] == 1 else 8, clip[1] // 8, clip[2] // 8),
            (config.patch_temporal, config.patch_spatial, config.patch_spatial),
        )
    )
    with torch.device("meta"):  # any accepted size builds (no storage: fast even for wide networks)
        network = DiffusionRendererDiT(config)
    fps = torch.tensor([24.0])
    angles = rope_angles(
        *grid, config.head_dim, fps, base_fps=config.rope_base_fps, extrapolation_ratios=config.rope_ratios
    )
    table = sincos_embedding(*grid, config.model_channels, extrapolation_ratios=config.extra_ratios)
    assert angles.shape[-1] == config.head_dim and table.shape[-1] == config.model_channels
    assert torch.isfinite(angles).all() and torch.isfinite(table).all()
    if sum(p.numel() for p in network.parameters()) <= 3_000_000:  # small enough to run for real
        network = DiffusionRendererDiT(config).eval()
        latent = (grid[0] * config.patch_temporal, grid[1] * config.patch_spatial, grid[2] * config.patch_spatial)
        with torch.no_grad():
            out = network(
                torch.zeros(1, 16, *latent),
                torch.tensor(0.1),
                torch.zeros(1, config.additional_concat_ch, *latent),
                context_index=torch.tensor([4]),
            )
        assert out.shape == (1, 16, *latent)
        event("accepted and run")


FLOAT_TEXT = st.floats(allow_nan=True, allow_infinity=True).map(repr) | st.sampled_from(
    ["nan", "inf", "-inf", "1e21", "1e308", "-1e308", "0", "-0.0", "360", "360.0000001", "1e-320"]
)
INT_TEXT = (st.integers(-(2**70), 2**70) | st.integers(-3, 1100) | st.sampled_from([2**63 - 1, 2**63])).map(str)
NUMERIC_OPTIONS = {
    "--env_rotation": FLOAT_TEXT,
    "--env_strength": FLOAT_TEXT,
    "--guidance": FLOAT_TEXT,
    "--fps": INT_TEXT,
    "--seed": INT_TEXT,
    "--num_steps": INT_TEXT,
    "--max_batch": INT_TEXT,
    "--overlap_n_frames": INT_TEXT,
    "--fixed_frame_ind": INT_TEXT,
    "--context_parallel_size": INT_TEXT,
    "--resize_resolution": INT_TEXT,
}


@settings(FUZZ, max_examples=80)
@given(option=st.sampled_from(sorted(NUMERIC_OPTIONS)), data=st.data(), frames=st.sampled_from(["1", "57"]))
def test_numeric_options(option: str, data: st.DataObject, frames: str) -> None:
    value = data.draw(NUMERIC_OPTIONS[option], label="value")
    extra = ["--use_fixed_frame_ind", "True"] if option == "--fixed_frame_ind" else []
    argv = ["--dataset_path", "g", "--use_custom_envmap", "False", "--envlight_ind", "0", "--num_video_frames", frames]
    args = forward.build_parser().parse_args([*argv, *extra, f"{option}={value}"])
    try:
        options = forward.run_options(args)
    except UserError as err:
        message = str(err)
        assert "\n" not in message and message.startswith(f"{option} "), message
        assert "must be" in message, message
        event(f"{option} refused")
        return
    event(f"{option} accepted")
    parsed = getattr(args, option[2:])
    if option == "--env_rotation":  # what crashed before (NaN or overflow converting to int)
        envmap.prepare_latlong(torch.ones(4, 8, 3), rotation_deg=parsed)
    elif option == "--env_strength":
        assert torch.isfinite(envmap.prepare_latlong(torch.ones(4, 8, 3), strength=parsed)).all()
    elif option == "--seed":
        assert work_item_noise((2,), parsed, "clip").shape == (2,)
    elif option == "--num_steps":
        assert len(karras_sigmas(parsed)) == parsed + 1
    elif option == "--resize_resolution":
        for size in [(1, 8192), (40, 56), (8192, 1)]:
            try:
                height, width = resized_size(options.frames, *size)
            except UserError as err:
                assert str(err).startswith("--resize_resolution ") and "\n" not in str(err)
                continue
            assert height * width <= MAX_RESIZED_PIXELS
    elif option == "--fps":
        with scratch() as folder:
            io.write_video(folder / "clip.mp4", np.zeros((2, 16, 16, 3), np.uint8), fps=parsed)
            assert len(iio.imread(folder / "clip.mp4")) == 2


JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=25,
)
NUMBERS = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**1100), 2**1100) | st.integers(-2, 2)
MATRICES = st.lists(st.lists(NUMBERS | JSON_SCALARS, min_size=3, max_size=5), min_size=2, max_size=5)


def turned(angle: float, noise: float) -> list[list[float]]:
    """A camera-to-world matrix turning by ``angle`` about +Y, every entry off by up to ``noise``."""
    matrix = np.eye(4)
    matrix[:3, :3] = envmap.rotation_y(angle).double().numpy()
    return (matrix + noise * np.sin(np.arange(16).reshape(4, 4))).tolist()


ROTATIONS = st.builds(turned, st.floats(-10, 10), st.sampled_from([0.0, 1e-5, 0.1]))
FRAMES = st.lists(
    JSON_VALUES | st.builds(lambda m: {"transform_matrix": m}, MATRICES | ROTATIONS | JSON_VALUES), max_size=4
)
POSE_DOCUMENTS = (
    JSON_VALUES
    | st.builds(lambda frames: {"frames": frames}, FRAMES)
    | st.builds(
        lambda matrices: {"frames": [{"transform_matrix": m} for m in matrices]}, st.lists(ROTATIONS, max_size=3)
    )
)


@settings(FUZZ, max_examples=80)
@given(document=POSE_DOCUMENTS, frames=st.integers(1, 3), nesting=st.sampled_from([0, 0, 0, 50, 100000]))
def test_pose_files(document: object, frames: int, nesting: int) -> None:
    with scratch() as folder:
        path = folder / "poses.json"
        text = json.dumps(document, allow_nan=True)
        if nesting:
            text = '{"frames": ' + "[" * nesting + text + "]" * nesting + "}"
        path.write_text(text)
        try:
            rotations = envmap.load_camera_rotations(path, frames)
        except UserError as err:
            assert str(path) in str(err) and "\n" not in str(err)
            event("refused")
            return
    event("accepted")
    assert rotations.shape == (frames, 3, 3) and torch.isfinite(rotations).all()
    identity = torch.eye(3).expand(frames, 3, 3)
    assert torch.allclose(rotations.transpose(1, 2) @ rotations, identity, atol=5e-3)
