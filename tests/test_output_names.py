"""Output names are unique: clips whose names flatten alike (``a/b`` and ``a__b``) never overwrite each other's files.

Both renderers run on tiny checkpoints (CPU); the frame extractor's per-video folders follow the same rule
(tests/test_scripts.py).
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from test_cli_inverse import write_images
from test_reliability import PASSES, forward_args, inverse_args, run_cli, write_gbuffers

from cosmos_predict1.diffusion import layout
from cosmos_predict1.diffusion.inference import inference_forward_renderer as forward
from cosmos_predict1.diffusion.inference import inference_inverse_renderer as inverse
from cosmos_predict1.errors import UserError
from cosmos_predict1.evaluation.frames import Frames
from cosmos_predict1.evaluation.predictions import forward_chunks


def suffixed(name: str, source: str) -> str:
    """``name`` with the disambiguating suffix of ``source``: "~" and 8 hex digits of its SHA-256."""
    return f"{name}~{hashlib.sha256(source.encode()).hexdigest()[:8]}"


def visible_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_names_without_a_collision_stay_the_original_ones() -> None:
    reports: list[str] = []
    names = layout.flat_output_names(["video1", "a/b", "a_b"], reports.append)
    assert names == {"video1": "video1", "a/b": "a__b", "a_b": "a_b"} and reports == []


def test_colliding_names_get_a_stable_suffix_each_and_one_report_line() -> None:
    reports: list[str] = []
    names = layout.flat_output_names(["a/b", "a__b", "c", "x/y/z", "x__y/z", "x/y__z"], reports.append)
    assert names["a/b"] == suffixed("a__b", "a/b") and names["a__b"] == suffixed("a__b", "a__b")
    assert names["c"] == "c" and len(set(names.values())) == len(names)
    assert {names[key] for key in ("x/y/z", "x__y/z", "x/y__z")} == {
        suffixed("x__y__z", key) for key in ("x/y/z", "x__y/z", "x/y__z")
    }
    assert reports == [
        f"The clips a/b and a__b would share the output name a__b; they are written as {names['a/b']} and "
        f"{names['a__b']} instead.",
        f"The clips x/y/z, x__y/z and x/y__z would share the output name x__y__z; they are written as "
        f"{names['x/y/z']}, {names['x__y/z']} and {names['x/y__z']} instead.",
    ]
    assert layout.flat_output_names(["a__b", "a/b", "c"], lambda line: None) == {
        key: names[key] for key in ("a__b", "a/b", "c")
    }  # the same names in any order, on every run


def test_a_name_that_still_collides_is_refused() -> None:
    taken = suffixed("a__b", "a/b")  # a clip already named like another's suffixed name
    with pytest.raises(UserError, match=f"The clips a/b and {taken} would both be written as {taken}"):
        layout.flat_output_names(["a/b", "a__b", taken], lambda line: None)


def test_inverse_clips_that_flatten_alike_keep_their_own_outputs(tiny_checkpoints: Path, tmp_path: Path) -> None:
    dataset, out = tmp_path / "in", tmp_path / "out"
    write_images(dataset, ["a/b.0000.png", "a__b.0000.png"])
    args = inverse_args(dataset, out, "--contact_sheet", "true")
    first = run_cli(inverse, tiny_checkpoints, *args)
    assert first.code == 0, first.output
    b, flat = suffixed("a__b", "a/b"), suffixed("a__b", "a__b")
    assert f"The clips a/b and a__b would share the output name a__b; they are written as {b} and {flat}" in (
        first.output
    )
    files = visible_files(out)
    assert files == sorted(
        [
            "gbuffer_frames/a/b/0000.0000.depth.jpg",
            "gbuffer_frames/a__b/0000.0000.depth.jpg",
            f"{b}.depth.jpg",
            f"{flat}.depth.jpg",
            f"contact_sheets/{b}.png",
            f"contact_sheets/{flat}.png",
        ]
    )
    assert f"{len(files)} files written" in first.output
    own = {
        name: difference(out / f"{name}.depth.jpg", out / "gbuffer_frames" / clip / "0000.0000.depth.jpg")
        for clip, name in (("a/b", b), ("a__b", flat))
    }
    crossed = difference(out / f"{b}.depth.jpg", out / "gbuffer_frames/a__b/0000.0000.depth.jpg")
    assert max(own.values()) < 2 < crossed, (own, crossed)  # each image holds its own clip's G-buffer
    again = run_cli(inverse, tiny_checkpoints, *args)
    assert again.code == 0 and "Nothing to do" in again.output  # the same names on a rerun: resume finds them


def test_forward_clips_that_flatten_alike_keep_their_own_outputs(tiny_checkpoints: Path, tmp_path: Path) -> None:
    gbuffers, out = tmp_path / "gbuffer_frames", tmp_path / "out"
    write_gbuffers(gbuffers / "a" / "b", seed=1)  # clip a/b/clip/0000 ...
    write_gbuffers(gbuffers / "a__b", seed=2)  # ... and a__b/clip/0000: both flatten to a__b__clip__0000
    run = run_cli(forward, tiny_checkpoints, *forward_args(gbuffers, out, "--contact_sheet", "true"))
    assert run.code == 0, run.output
    nested, flat = suffixed("a__b__clip__0000", "a/b/clip/0000"), suffixed("a__b__clip__0000", "a__b/clip/0000")
    assert "The clips a/b/clip/0000 and a__b/clip/0000 would share the output name a__b__clip__0000" in run.output
    files = visible_files(out)
    assert files == sorted(
        [
            f"{nested}.relit_0000.jpg",
            f"{flat}.relit_0000.jpg",
            f"contact_sheets/{nested}.png",
            f"contact_sheets/{flat}.png",
        ]
    )
    assert f"{len(files)} files written" in run.output
    assert difference(out / f"{nested}.relit_0000.jpg", out / f"{flat}.relit_0000.jpg") > 2  # two clips, two images
    for clip, name in [("a/b/clip", nested), ("a__b/clip", flat)]:  # the evaluation finds each clip's own output
        assert forward_chunks(out, clip, 0) == {0: Frames(files={0: out / f"{name}.relit_0000.jpg"})}


def difference(first: Path, second: Path) -> float:
    """Mean absolute difference of two 8-bit images."""
    return float(np.abs(iio.imread(first).astype(np.int16) - iio.imread(second).astype(np.int16)).mean())


def test_stitched_forward_videos_of_clips_that_flatten_alike_keep_their_own_names(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    """Two chunks each of a/b and a__b, stitched: one video per clip, each under its own suffixed name; the rerun
    finds both done."""
    gbuffers, out = tmp_path / "gbuffer_frames", tmp_path / "out"
    rng = np.random.default_rng(0)
    for clip in ["a/b", "a__b"]:
        (gbuffers / clip).mkdir(parents=True)
        for chunk, name in itertools.product(range(2), PASSES):  # <clip>/<chunk>.<frame>.<pass>.jpg
            pixels = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
            iio.imwrite(gbuffers / clip / f"{chunk:04d}.0000.{name}.jpg", pixels)
    args = forward_args(gbuffers, out, "--stitch_chunks", "true", "--save_image", "true")
    run = run_cli(forward, tiny_checkpoints, *args)
    assert run.code == 0, run.output
    nested, flat = suffixed("a__b", "a/b"), suffixed("a__b", "a__b")
    videos = sorted(path.name for path in out.glob("*.mp4"))
    assert videos == sorted([f"{nested}.relit_0000.mp4", f"{flat}.relit_0000.mp4"])
    assert difference(out / f"{nested}.relit_0000.mp4", out / f"{flat}.relit_0000.mp4") > 2
    rerun = run_cli(forward, tiny_checkpoints, *args)
    assert rerun.code == 0 and "Nothing to do" in rerun.output, rerun.output
