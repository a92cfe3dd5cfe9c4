"""Input datasets: discovery, grouping, chunking, work items, frame preprocessing, G-buffer clips."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from cosmos_predict1.diffusion import frames
from cosmos_predict1.diffusion.data import (
    IMAGE_EXTENSIONS,
    chunk_starts,
    clip_key,
    find_images,
    gbuffer_clips,
    group_clips,
    inverse_work_items,
    pad_to_length,
)
from cosmos_predict1.diffusion.frames import center_crop, file_encoding, prepare_clip, read_image, resize, resized_size
from cosmos_predict1.diffusion.options import FrameOptions
from cosmos_predict1.diffusion.writers import write_exr, write_png16
from cosmos_predict1.errors import UserError

RNG = np.random.default_rng(0)


def load_frames(paths: list[Path], options: FrameOptions, linear_exr: bool = False) -> torch.Tensor:
    """The files as the inverse script reads them: ``[3, T, H, W]``."""
    encodings = [file_encoding(path, linear_exr=linear_exr) for path in paths]
    return prepare_clip([read_image(path) for path in paths], options, encodings)


def touch(root: Path, *relative_paths: str) -> None:
    for relative in relative_paths:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"")


def save_rgb(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def random_uint8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, shape, dtype=np.uint8)


# --- discovery -------------------------------------------------------------------------------------------------


def test_find_images_matches_lower_cased_names_recursively(tmp_path: Path) -> None:
    touch(tmp_path, "a/x.JPG", "a/b/y.png", "z.exr", "notes.txt", "a/.hidden.jpg", "a/photojpg")
    assert sorted(find_images(tmp_path, IMAGE_EXTENSIONS)) == ["a/b/y.png", "a/x.JPG", "z.exr"]
    assert find_images(tmp_path, [".JPG"]) == ["a/x.JPG"]  # upper-case extension values work too (a fix)
    assert sorted(find_images(tmp_path, ["JPG"])) == ["a/photojpg", "a/x.JPG"]  # plain endswith, as the original


def test_find_images_does_not_follow_symlinked_folders(tmp_path: Path) -> None:
    touch(tmp_path, "data/a/x.png", "elsewhere/y.png")
    (tmp_path / "data/link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert find_images(tmp_path / "data", IMAGE_EXTENSIONS) == ["a/x.png"]


# --- grouping --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "folder", "webdataset"),
    [
        ("video1/frame_00000.jpg", "video1", "video1/frame_00000"),
        ("a/b/x.png", "a/b", "a/b/x"),
        ("x.png", "", "x"),
        ("image_1.jpg", "", "image_1"),
        ("sub/image_1.jpg", "sub", "sub/image_1"),
        ("clip.0001.jpg", "", "clip"),
        ("my.photo.jpg", "", "my"),
        ("a.b/c.jpg", "a.b", "a.b/c"),
        ("a/photojpg", "a", None),
    ],
)
def test_clip_key_examples(path: str, folder: str, webdataset: str | None) -> None:
    assert clip_key(path, "folder") == folder
    assert clip_key(path, "webdataset") == webdataset


NAME = st.text("ab.-_0", min_size=1, max_size=6)


@given(st.lists(NAME, max_size=3), NAME.filter(lambda name: not name.startswith(".")))
def test_webdataset_key_equals_the_original_pattern(folders: list[str], name: str) -> None:
    path = "/".join([*folders, name])
    match = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", path)  # the grouping rule as the spec states it
    assert clip_key(path, "webdataset") == (match.group(1) if match else None)


def test_group_clips_orders_keys_and_files() -> None:
    files = ["b/2.png", "a/10.png", "b/1.png", "a/09.png", "c.png"]
    assert group_clips(files, "folder") == {"": ["c.png"], "a": ["a/09.png", "a/10.png"], "b": ["b/1.png", "b/2.png"]}
    assert list(group_clips(["x.2.jpg", "x.1.jpg", "w.jpg"], "webdataset").items()) == [
        ("w", ["w.jpg"]),
        ("x", ["x.1.jpg", "x.2.jpg"]),
    ]


# --- chunking and work items -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_files", "overlap", "mode", "starts"),
    [
        (10, 0, "all", [0, 4, 8]),
        (11, 2, "all", [0, 2, 4, 6, 8]),
        (10, 0, "first", [0]),
        (10, 0, "drop_last", [0, 4]),
        (11, 2, "drop_last", [0, 2, 4, 6]),  # the last chunk [8, 11) has 3 frames
        (12, 0, "drop_last", [0, 4, 8]),
        (3, 0, "drop_last", []),
        (3, 0, "first", [0]),
        (2, 3, "all", [0]),  # fewer files than the overlap: the original yields no chunk at all
    ],
)
def test_chunk_starts(num_files: int, overlap: int, mode: str, starts: list[int]) -> None:
    assert chunk_starts(num_files, 4, overlap, mode) == starts


def test_pad_to_length() -> None:
    assert pad_to_length([Path("a"), Path("b")], 4) == (Path("a"), Path("b"), Path("b"), Path("b"))
    assert pad_to_length([Path("a"), Path("b")], 1) == (Path("a"),)


def test_inverse_work_items_chunks_and_pads(tmp_path: Path) -> None:
    touch(tmp_path, *[f"v1/{i:05d}.jpg" for i in range(11)], *[f"v0/{i:05d}.jpg" for i in range(2)])
    items = inverse_work_items(tmp_path, 4, overlap=2, chunk_mode="all")
    assert [(item.clip_name, item.chunk_index, item.num_real_frames) for item in items] == [
        ("v0", 0, 2),
        *[("v1", index, 4) for index in range(4)],
        ("v1", 4, 3),
    ]
    assert items[0].paths == (tmp_path / "v0/00000.jpg", *[tmp_path / "v0/00001.jpg"] * 3)
    assert [path.name for path in items[-1].paths] == ["00008.jpg", "00009.jpg", "00010.jpg", "00010.jpg"]
    assert [item.clip_name for item in inverse_work_items(tmp_path, 4)] == ["v0", "v1"]
    assert [item.clip_name for item in inverse_work_items(tmp_path, 4, chunk_mode="drop_last")] == ["v1", "v1"]


def test_top_level_files_in_folder_mode_are_named_after_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "my_frames"
    touch(root, "0.png", "1.png", "sub/0.png")
    assert [(item.clip_name, item.num_real_frames) for item in inverse_work_items(root, 2)] == [
        ("my_frames", 2),
        ("sub", 1),
    ]
    touch(root, "my_frames/0.png")
    with pytest.raises(UserError, match="share the clip name"):
        inverse_work_items(root, 2)


def test_webdataset_items_one_clip_per_image(tmp_path: Path) -> None:
    touch(tmp_path, "image_2.jpg", "image_1.jpg", "sub/image_1.jpg")
    items = inverse_work_items(tmp_path, 1, group_mode="webdataset")
    assert [(item.clip_name, item.paths) for item in items] == [
        ("image_1", (tmp_path / "image_1.jpg",)),
        ("image_2", (tmp_path / "image_2.jpg",)),
        ("sub/image_1", (tmp_path / "sub/image_1.jpg",)),
    ]


def test_inverse_work_items_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        inverse_work_items(tmp_path / "missing", 4)
    touch(tmp_path, "file.png")
    with pytest.raises(UserError, match="is not a folder"):
        inverse_work_items(tmp_path / "file.png", 4)
    touch(tmp_path, "empty/notes.txt")
    with pytest.raises(UserError, match=r"\.png .*\.exr"):
        inverse_work_items(tmp_path / "empty", 4)
    with pytest.raises(UserError, match="overlap"):
        inverse_work_items(tmp_path, 4, overlap=4)
    with pytest.raises(UserError, match="drop_last"):
        inverse_work_items(tmp_path, 4, chunk_mode="drop_last")


# --- frame preprocessing ---------------------------------------------------------------------------------------


def test_resize_is_antialiased_bilinear_interpolate() -> None:
    image = torch.rand(3, 37, 50)
    expected = F.interpolate(image[None], size=(16, 24), mode="bilinear", align_corners=False, antialias=True)[0]
    assert torch.equal(resize(image, (16, 24)), expected)
    assert resize(image, (37, 50)) is image


@pytest.mark.parametrize(
    ("resolution", "size", "expected"),
    [
        (None, (37, 50), (16, 32)),
        ((20, 30), (37, 50), (20, 30)),
        ((16,), (37, 50), (16, 21)),  # shorter side 16, longer int(16 · 50/37) = 21
        ((16,), (50, 37), (21, 16)),
        ((16,), (40, 40), (16, 16)),
    ],
)
def test_resized_size(resolution: tuple[int, ...] | None, size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert resized_size(FrameOptions(height=16, width=32, resize_resolution=resolution), *size) == expected


def test_center_crop_offsets_round_half_to_even() -> None:
    image = torch.arange(13 * 11, dtype=torch.float32).reshape(1, 13, 11)
    # offsets (13 − 4)/2 = 4.5 → 4 and (11 − 8)/2 = 1.5 → 2
    assert torch.equal(center_crop(image, 4, 8), image[:, 4:8, 2:10])
    assert torch.equal(center_crop(image, 13, 11), image)


def test_center_crop_zero_pads_a_short_side() -> None:
    image = torch.ones(1, 3, 9)
    out = center_crop(image, 6, 4)  # height padded 1 above, 2 below; width cropped at round(5/2) = 2
    assert out.shape == (1, 6, 4)
    assert torch.equal(out[0, :, 0], torch.tensor([0.0, 1, 1, 1, 0, 0]))


def test_load_frames_resizes_crops_and_normalises(tmp_path: Path) -> None:
    pixels = random_uint8(30, 50, 3)
    path = save_rgb(tmp_path / "x.png", pixels)
    video = load_frames([path, path], FrameOptions(height=16, width=32, resize_resolution=(20,)))
    resized = resize(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255, (20, 33))
    assert video.shape == (3, 2, 16, 32) and video.dtype == torch.float32
    assert torch.equal(video[:, 0], resized[:, 2:18, 0:32] * 2 - 1)
    exact = random_uint8(32, 48, 3)
    plain = load_frames([save_rgb(tmp_path / "y.png", exact)], FrameOptions(height=32, width=48))
    assert torch.equal(plain[:, 0], torch.from_numpy(exact).permute(2, 0, 1) / 255 * 2 - 1)


def test_mixed_frame_sizes_are_resized_one_by_one(tmp_path: Path) -> None:
    paths = [save_rgb(tmp_path / "a.png", random_uint8(30, 40, 3)), save_rgb(tmp_path / "b.png", random_uint8(8, 8, 3))]
    video = load_frames(paths, FrameOptions(height=16, width=16))
    assert torch.equal(video[:, 1], load_frames(paths[1:], FrameOptions(height=16, width=16))[:, 0])


def test_grayscale_alpha_and_gif(tmp_path: Path) -> None:
    gray = random_uint8(6, 5)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    assert np.array_equal(read_image(tmp_path / "gray.png"), np.repeat(gray[..., None] / np.float32(255), 3, -1))

    rgba = random_uint8(6, 5, 4)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    unit = rgba.astype(np.float32) / 255
    expected = unit[..., :3] * unit[..., 3:] + (1 - unit[..., 3:])
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png"), expected, atol=1e-7)

    Image.fromarray(rgba[..., [0, 3]], "LA").save(tmp_path / "la.png")
    gray_on_white = unit[..., :1] * unit[..., 3:] + (1 - unit[..., 3:])
    np.testing.assert_allclose(read_image(tmp_path / "la.png"), np.repeat(gray_on_white, 3, -1), atol=1e-7)

    first, second = random_uint8(6, 5, 3), random_uint8(6, 5, 3)
    Image.fromarray(first).save(tmp_path / "anim.gif", save_all=True, append_images=[Image.fromarray(second)])
    assert read_image(tmp_path / "anim.gif").shape == (6, 5, 3)
    np.testing.assert_array_equal(read_image(tmp_path / "anim.gif"), first / np.float32(255))


def test_16_bit_pngs_are_divided_by_65535(tmp_path: Path) -> None:
    gray = RNG.integers(0, 65536, (6, 5), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "gray16.png"), gray)
    assert np.array_equal(read_image(tmp_path / "gray16.png"), np.repeat(gray[..., None] / np.float32(65535), 3, -1))
    rgb = RNG.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    write_png16(tmp_path / "rgb16.png", rgb)
    assert np.array_equal(read_image(tmp_path / "rgb16.png"), rgb / np.float32(65535))


def test_exr_is_read_linear_and_gamma_encoded_for_the_inverse_renderer(tmp_path: Path) -> None:
    linear = RNG.uniform(0, 1.5, (16, 32, 3)).astype(np.float32)
    write_exr(tmp_path / "a.exr", linear)
    write_exr(tmp_path / "b.EXR", linear)
    assert np.array_equal(read_image(tmp_path / "a.exr"), linear)
    size = FrameOptions(height=16, width=32)
    assert torch.equal(load_frames([tmp_path / "a.exr"], size)[:, 0], torch.from_numpy(linear).permute(2, 0, 1) * 2 - 1)
    expected = torch.from_numpy(linear).permute(2, 0, 1).clip(0, 1).pow(1 / 2.2) * 2 - 1
    video = load_frames([tmp_path / "a.exr", tmp_path / "b.EXR"], size, linear_exr=True)
    torch.testing.assert_close(video, torch.stack([expected, expected], dim=1), rtol=0, atol=1e-6)


def test_exr_read_through_opencv_is_reordered_to_rgb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bgra = RNG.uniform(0, 1, (4, 3, 4)).astype(np.float32)
    monkeypatch.setattr(frames.cv2, "haveImageReader", lambda path: True)
    monkeypatch.setattr(frames.cv2, "imread", lambda path, flags: bgra)
    expected = bgra[..., [2, 1, 0]] * bgra[..., 3:] + (1 - bgra[..., 3:])
    write_exr(tmp_path / "x.exr", bgra)  # a real header: its declared size is checked before the (faked) decoding
    np.testing.assert_allclose(read_image(tmp_path / "x.exr"), expected, atol=1e-7)


@pytest.mark.parametrize("content", [b"", b"not an image", "truncated"])
def test_unreadable_image_is_a_user_error(tmp_path: Path, content: bytes | str) -> None:
    path = tmp_path / "bad.jpg"
    if content == "truncated":
        save_rgb(path, random_uint8(64, 64, 3))
        content = path.read_bytes()[:300]
    path.write_bytes(content)
    with pytest.raises(UserError, match="bad.jpg"):
        load_frames([path], FrameOptions(height=16, width=16))
    (tmp_path / "bad.exr").write_bytes(b"garbage")
    with pytest.raises(UserError, match="bad.exr"):
        read_image(tmp_path / "bad.exr")


@pytest.mark.parametrize("resolution", [(), (1, 2, 3), (0,)])
def test_invalid_resize_resolution_is_a_user_error(resolution: tuple[int, ...]) -> None:
    with pytest.raises(UserError, match="resize_resolution"):
        FrameOptions(height=16, width=16, resize_resolution=resolution)


# --- forward G-buffer clips ------------------------------------------------------------------------------------


def test_gbuffer_clips_group_by_chunk_and_pad_passes(tmp_path: Path) -> None:
    four = ("basecolor", "normal", "depth", "roughness")
    touch(
        tmp_path,
        *[f"video1/0000.{f:04d}.{name}.jpg" for f in range(3) for name in four],
        "video1/0000.0000.metallic.jpg",
        *[f"image_1/0000.0000.{name}.jpg" for name in (*four, "metallic")],
    )
    clips = gbuffer_clips(tmp_path, 4)
    assert [(clip.clip_name, clip.missing_passes, clip.num_real_frames) for clip in clips] == [
        ("image_1/0000", (), 1),
        ("video1/0000", (), 3),
    ]
    video = clips[1].passes
    assert [path.name for path in video["normal"]] == [f"0000.000{f}.normal.jpg" for f in (0, 1, 2, 2)]
    assert video["metallic"] == (tmp_path / "video1/0000.0000.metallic.jpg",) * 4
    assert [path.name for path in gbuffer_clips(tmp_path, 2)[1].passes["depth"]] == [
        "0000.0000.depth.jpg",
        "0000.0001.depth.jpg",
    ]


def test_gbuffer_pass_label_is_looked_up_in_the_file_name_only(tmp_path: Path) -> None:
    touch(tmp_path, "scene.depth.v2/0000.0000.basecolor.jpg")
    (clip,) = gbuffer_clips(tmp_path, 1)
    assert clip.clip_name == "scene.depth.v2/0000"
    assert list(clip.passes) == ["basecolor"]
    assert clip.missing_passes == ("normal", "depth", "roughness", "metallic")


def test_gbuffer_group_without_passes_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    touch(tmp_path, "a/0000.0000.albedo.jpg", "b/0000.0000.normal.png")
    with caplog.at_level(logging.WARNING):
        assert [clip.clip_name for clip in gbuffer_clips(tmp_path, 1)] == ["b/0000"]
    assert "a/0000" in caplog.text
    (tmp_path / "b/0000.0000.normal.png").unlink()
    with pytest.raises(UserError, match="gbuffer_frames"):
        gbuffer_clips(tmp_path, 1)
