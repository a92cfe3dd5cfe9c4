"""Output writers: uint8 conversion, JPEG/PNG/MP4/EXR files, the 1-frame rule, atomic and verified writes (a file
under a final name is complete), the completeness check of resuming, layout names."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import cv2
import imageio.v2 as imageio_v2
import imageio.v3 as iio
import numpy as np
import pytest
import torch

from conftest import fixture_family, load_pt
from cosmos_predict1.diffusion import layout
from cosmos_predict1.diffusion import writers as io
from cosmos_predict1.diffusion.frames import read_image
from cosmos_predict1.diffusion.integrity import is_complete
from cosmos_predict1.errors import UserError
from cosmos_predict1.temporary import TEMPORARY_NAME, temporary_path

RNG = np.random.default_rng(0)


def random_frames(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def listing(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


# --- uint8 conversion ------------------------------------------------------------------------------------------


def test_frames_to_uint8_clamps_and_truncates() -> None:
    values = torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0])  # (x+1)/2·255 = ≤0, 0, 127.5, 254.87, 255, ≥255
    video = values.reshape(1, 1, 1, 6).expand(3, 1, 1, 6)
    out = io.frames_to_uint8(video[None])
    assert out.shape == (1, 1, 6, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert out[0, 0, :, 0].tolist() == [0, 0, 127, 254, 255, 255]
    video = torch.rand(3, 2, 4, 5) * 2 - 1
    assert np.array_equal(io.frames_to_uint8(video)[1], io.frames_to_uint8(video[None])[1])
    assert np.array_equal(io.frames_to_uint8(video)[1, 2, 3], ((video[:, 1, 2, 3] + 1) / 2 * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="batch"):
        io.frames_to_uint8(torch.zeros(2, 3, 1, 4, 4))


@pytest.mark.fixtures
def test_frames_to_uint8_reproduces_the_original() -> None:
    outputs = load_pt(fixture_family("e2e_inverse") / "outputs.pt")
    assert np.array_equal(io.frames_to_uint8(outputs["decoded"]), outputs["frames_uint8"].numpy())


# --- writers ---------------------------------------------------------------------------------------------------


def test_jpeg_is_the_original_writers_file(tmp_path: Path) -> None:
    frame = random_frames(32, 48, 3)
    io.write_image(tmp_path / "a.jpg", frame)
    imageio_v2.imwrite(tmp_path / "reference.jpg", frame, format="JPEG", quality=85)  # the original's call
    assert (tmp_path / "a.jpg").read_bytes() == (tmp_path / "reference.jpg").read_bytes()
    assert iio.imread(tmp_path / "a.jpg").shape == (32, 48, 3)


def test_png_round_trip(tmp_path: Path) -> None:
    frame = random_frames(7, 5, 3)
    io.write_image(tmp_path / "sub" / "a.png", frame)
    assert np.array_equal(iio.imread(tmp_path / "sub" / "a.png"), frame)
    with pytest.raises(ValueError, match="uint8"):
        io.write_image(tmp_path / "b.png", frame.astype(np.float32))


def test_png16_and_exr_round_trips(tmp_path: Path) -> None:
    image16 = RNG.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    io.write_png16(tmp_path / "a.png", image16)
    assert np.array_equal(cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED)[..., ::-1], image16)
    linear = RNG.uniform(0, 4, (5, 7, 3)).astype(np.float32)
    io.write_exr(tmp_path / "a.exr", linear)
    assert np.array_equal(read_image(tmp_path / "a.exr"), linear)
    io.write_exr(tmp_path / "y.exr", linear[..., :1])
    assert np.array_equal(read_image(tmp_path / "y.exr"), np.repeat(linear[..., :1], 3, -1))
    assert listing(tmp_path) == ["a.exr", "a.png", "y.exr"]


def test_mp4_round_trip(tmp_path: Path) -> None:
    frames = np.repeat(random_frames(5, 1, 1, 3), 32 * 48, axis=1).reshape(5, 32, 48, 3)  # flat colours
    io.write_video(tmp_path / "clip.mp4", frames, fps=24)
    decoded = iio.imread(tmp_path / "clip.mp4", plugin="FFMPEG")
    assert decoded.shape == (5, 32, 48, 3)
    assert np.abs(decoded.astype(int) - frames).mean() < 8
    meta = iio.immeta(tmp_path / "clip.mp4", plugin="FFMPEG")
    assert (meta["codec"], meta["pix_fmt"].split("(")[0], meta["fps"]) == ("h264", "yuv420p", 24)
    assert b" crf=25.0 " in (tmp_path / "clip.mp4").read_bytes()  # x264 records its settings in the stream
    assert listing(tmp_path) == ["clip.mp4"]


def test_one_frame_rule(tmp_path: Path) -> None:
    one, many = random_frames(1, 16, 16, 3), random_frames(2, 16, 16, 3)
    assert layout.inverse_video_path(tmp_path, "image_1", "basecolor", 1) == tmp_path / "image_1.basecolor.jpg"
    for frames in (one, many):
        io.write_clip(layout.inverse_video_path(tmp_path, "image_1", "basecolor", len(frames)), frames, fps=24)
    assert listing(tmp_path) == ["image_1.basecolor.jpg", "image_1.basecolor.mp4"]
    assert iio.imread(tmp_path / "image_1.basecolor.mp4").shape == (2, 16, 16, 3)


def test_layout_names() -> None:
    root = Path("out")
    frames = root / "gbuffer_frames"
    assert (
        layout.inverse_frame_path(root, "video1", 0, 56, "metallic", "jpg") == frames / "video1/0000.0056.metallic.jpg"
    )
    assert layout.inverse_frame_path(root, "a/b", 1, 2, "depth", "jpg") == frames / "a/b/0001.0002.depth.jpg"
    assert layout.inverse_frame_path(root, "a", 0, 0, "depth", "exr") == frames / "a/0000.0000.depth.exr"
    assert layout.inverse_frame_path(root, "a", 0, 0, "basecolor", "exr") == frames / "a/0000.0000.basecolor.png"
    assert layout.inverse_video_path(root, layout.flat_clip_name("a/b"), "normal", 57) == root / "a__b.normal.mp4"
    assert layout.forward_frame_path(root, "video1/0000", 3, 5) == root / "relit_frames_0003/video1/0000.0005.jpg"
    assert layout.forward_video_path(root, "video1__0000", 0, 57) == root / "video1__0000.relit_0000.mp4"
    assert layout.forward_video_path(root, "image_1__0000", 2, 1) == root / "image_1__0000.relit_0002.jpg"
    assert layout.contact_sheet_path(root, "a__b") == root / "contact_sheets/a__b.png"


# --- atomicity and errors --------------------------------------------------------------------------------------


def failing_after_partial_write(path: Path, *args: object, **kwargs: object) -> None:
    if path != "<bytes>":  # an encoder writing the file itself (images are encoded in memory: nothing to write)
        Path(path).write_bytes(b"partial")
    raise RuntimeError("encoder failed")


def test_failed_image_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keep.jpg").write_bytes(b"old")
    monkeypatch.setattr(io.iio, "imwrite", failing_after_partial_write)
    with pytest.raises(RuntimeError, match="encoder failed"):
        io.write_image(tmp_path / "new.jpg", random_frames(4, 4, 3))
    with pytest.raises(RuntimeError, match="encoder failed"):
        io.write_image(tmp_path / "keep.jpg", random_frames(4, 4, 3))
    assert listing(tmp_path) == ["keep.jpg"]
    assert (tmp_path / "keep.jpg").read_bytes() == b"old"


def test_failed_video_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(io, "_start_ffmpeg", failing_after_partial_write)
    with pytest.raises(RuntimeError, match="encoder failed"):
        io.write_clip(tmp_path / "clip.mp4", random_frames(3, 4, 4, 3), fps=24)
    assert listing(tmp_path) == []


def test_unwritable_output_folder_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(UserError, match=str(tmp_path / "file" / "sub")):
        io.write_image(tmp_path / "file" / "sub" / "a.jpg", random_frames(4, 4, 3))
    monkeypatch.setattr(io.os, "access", lambda path, mode: False)
    with pytest.raises(UserError, match=f"{tmp_path / 'out'} is not writable"):
        io.write_video(tmp_path / "out" / "a.mp4", random_frames(2, 4, 4, 3), fps=24)
    assert os.listdir(tmp_path / "out") == []


# --- verified writes -------------------------------------------------------------------------------------------


WRITE_EACH_FORMAT = {  # a file of every format the writers write
    "a.jpg": lambda path: io.write_image(path, random_frames(32, 48, 3)),
    "a.png": lambda path: io.write_image(path, random_frames(32, 48, 3)),
    "b.png": lambda path: io.write_png16(path, random_frames(32, 48, 3).astype(np.uint16) * 257),
    "a.exr": lambda path: io.write_exr(path, RNG.uniform(0, 4, (40, 24, 3)).astype(np.float32)),
    "a.mp4": lambda path: io.write_video(path, random_frames(3, 32, 48, 3), fps=24),
}


def test_complete_files_are_recognised_and_cut_ones_are_not(tmp_path: Path) -> None:
    for name, write in WRITE_EACH_FORMAT.items():
        path = tmp_path / "whole" / name
        write(path)
        assert is_complete(path), path
        data = path.read_bytes()
        for length in sorted({0, 2, 12, len(data) // 3, len(data) // 2, len(data) - 1, min(4096, len(data) - 1)}):
            cut = tmp_path / "cut" / f"{length}{path.suffix}"
            cut.parent.mkdir(exist_ok=True)
            cut.write_bytes(data[:length])
            assert not is_complete(cut), f"{name} cut at {length} of {len(data)} bytes"
        link = tmp_path / f"link{path.suffix}"
        link.symlink_to(path)
        assert not is_complete(link), "a link is rewritten, never trusted"
        link.unlink()
    assert not is_complete(tmp_path / "missing.jpg") and not is_complete(tmp_path / "whole")


@pytest.mark.parametrize(
    "code, words", [(errno.ENOSPC, "the disk is full"), (errno.EDQUOT, "the disk quota is exceeded")]
)
def test_a_failure_at_the_end_of_a_write_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, words: str
) -> None:
    """A filesystem that takes the data but fails when it is flushed to disk (fsync), as a full disk can: every
    writer reports one line naming the file, and nothing is left under a final or a temporary name."""

    def failing_fsync(descriptor: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(io.os, "fsync", failing_fsync)
    for name, write in WRITE_EACH_FORMAT.items():
        with pytest.raises(UserError) as caught:
            write(tmp_path / name)
        message = str(caught.value)
        assert message.startswith(f"Cannot write {tmp_path / name}: {words} (") and "\n" not in message
        assert message.endswith("check free space and permissions, or choose another --video_save_folder.")
        assert listing(tmp_path) == []


def test_temporary_names_are_marked_fresh_and_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "clip.depth.mp4"
    first, second = temporary_path(target), temporary_path(target)
    assert first != second and first.parent == second.parent == tmp_path
    match = TEMPORARY_NAME.fullmatch(first.name)
    assert match and (match["stem"], match["pid"], match["suffix"]) == ("clip.depth", str(os.getpid()), ".mp4")
    assert len(first.name.encode()) - len(target.name.encode()) <= layout.TEMPORARY_RESERVE
