"""The video tokenizer: parity with the original's fixtures, released (TorchScript) and diffusers folders, the
conversion cache, strict loading, chunking, shape checks and the frame-wise attention."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLCosmos
from diffusers.models.autoencoders.autoencoder_kl_cosmos import CosmosSpatialAttentionProcessor2_0
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from conftest import FIXTURES, first_case, fixture_cases, fixture_family, load_pt, max_relative_error
from cosmos_predict1.diffusion.tokenizer import (
    FramewiseSpatialAttention,
    VideoTokenizer,
    convert,
    diffusers_name,
    export_jit_pair,
    load_tokenizer,
    released_name,
)
from cosmos_predict1.diffusion.tokenizer.attention import stock_spatial_attention
from cosmos_predict1.diffusion.tokenizer.names import DECODER_FILE, ENCODER_FILE, released_file, released_tensors
from cosmos_predict1.diffusion.tokenizer.video_tokenizer import IMAGE_STATISTICS, VIDEO_STATISTICS
from cosmos_predict1.errors import UserError
from cosmos_predict1.release import TOKENIZER
from cosmos_predict1.tiny_checkpoints import write_tokenizer

FAMILY = FIXTURES / "tokenizer"
RELEASED_STATISTICS = FAMILY / "Cosmos-Tokenize1-CV8x8x8-720p"
TOLERANCE = 1e-4


# ---------------------------------------------------------------------------------------------------- helpers


def _fixture_weights() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return load_pt(FAMILY / "encoder_state_dict.pt"), load_pt(FAMILY / "decoder_state_dict.pt")


def _video_case() -> Path:
    """The first fixture case whose input has several frames."""
    return first_case("tokenizer", lambda case: load_pt(case / "inputs.pt")["video"].shape[2] > 1, "video")


def _image_case() -> Path:
    """The first fixture case whose input is a single frame."""
    return first_case("tokenizer", lambda case: load_pt(case / "inputs.pt")["video"].shape[2] == 1, "image")


def _chunk_duration(case: Path) -> int:
    """The case's ``pixel_chunk_duration`` (null for single images, where any valid value does)."""
    cases = json.loads((FAMILY / "config.json").read_text())["cases"]
    return cases[case.name.removeprefix("case_")]["pixel_chunk_duration"] or 57


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def _relative_errors(tokenizer: VideoTokenizer, case: Path) -> dict[str, float]:
    """Max relative error of every fixture output of ``case``; shapes must match."""
    video, ref = load_pt(case / "inputs.pt")["video"], load_pt(case / "outputs.pt")
    chunks = video.split(tokenizer.pixel_chunk_duration, dim=2)
    latent = tokenizer.encode(video)
    outputs = {
        "encoder_raw": torch.cat([tokenizer.vae.encode(chunk).latent_dist.mode() for chunk in chunks], dim=2),
        "latent_tokenizer": latent / 0.5,
        "latent_model": latent,
        "decoded": tokenizer.decode(ref["latent_model"]),
    }
    for name, out in outputs.items():
        assert out.shape == ref[name].shape, name
    return {name: max_relative_error(out, ref[name]) for name, out in outputs.items()}


def _assert_reproduces(tokenizer: VideoTokenizer, case: Path, label: str) -> None:
    errors = _relative_errors(tokenizer, case)
    report = ", ".join(f"{name} {error:.2e}" for name, error in errors.items())
    print(f"{label} {case.parent.name}/{case.name}: max relative error {report}")
    assert max(errors.values()) <= TOLERANCE, f"{case.name} max relative error: {report}"


def _tiny_vae(seed: int = 0) -> AutoencoderKLCosmos:
    """The released architecture at base width 8 (as the fixture), random weights."""
    torch.manual_seed(seed)
    return AutoencoderKLCosmos(
        encoder_block_out_channels=(8, 16, 32, 32),
        decode_block_out_channels=(16, 32, 32, 32),
        latents_mean=None,
        latents_std=None,
    ).eval()


def _random_statistics(values: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(values) * 0.1, torch.rand(values) + 0.5


def _tiny_tokenizer(pixel_chunk_duration: int = 9) -> VideoTokenizer:
    return VideoTokenizer(_tiny_vae(), _random_statistics(256), _random_statistics(16), pixel_chunk_duration)


def _video(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh conversion cache for every test."""
    monkeypatch.setenv("COSMOS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def released_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A released-layout folder: TorchScript pair exported from the fixture weights + the fixture statistics."""
    fixture_family("tokenizer")
    folder = tmp_path_factory.mktemp("checkpoints") / "Cosmos-Tokenize1-CV8x8x8-720p"
    export_jit_pair(_fixture_weights(), folder)
    for name in (VIDEO_STATISTICS, IMAGE_STATISTICS):
        shutil.copy(RELEASED_STATISTICS / name, folder)
    return folder


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.mark.fixtures
@pytest.mark.parametrize("case", fixture_cases("tokenizer"))
def test_reproduces_fixture(case: Path, released_folder: Path) -> None:
    tokenizer = load_tokenizer(released_folder, pixel_chunk_duration=_chunk_duration(case))
    _assert_reproduces(tokenizer, case, "released folder")


@pytest.mark.fixtures
def test_exported_pair_has_the_released_layout(released_folder: Path) -> None:
    for file, reference in zip((ENCODER_FILE, DECODER_FILE), _fixture_weights()):
        state = torch.jit.load(str(released_folder / file)).state_dict()
        assert state.keys() == reference.keys()
        for name, tensor in reference.items():
            assert state[name].dtype == tensor.dtype and torch.equal(state[name], tensor), name
    case = _video_case()
    video, ref = load_pt(case / "inputs.pt")["video"], load_pt(case / "outputs.pt")
    latent, placeholder = torch.jit.load(str(released_folder / ENCODER_FILE))(video)
    assert max_relative_error(latent, ref["encoder_raw"]) <= TOLERANCE
    assert [t.tolist() for t in placeholder] == [[0.0], [0.0]]
    decoded = torch.jit.load(str(released_folder / DECODER_FILE))(ref["encoder_raw"])
    assert decoded.shape == video.shape


@pytest.mark.fixtures
def test_second_load_uses_the_conversion_cache(
    released_folder: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    read = convert.read_jit_state_dict
    monkeypatch.setattr(convert, "read_jit_state_dict", lambda path, *a: reads.append(path.name) or read(path, *a))
    before = _snapshot(released_folder)
    case = _video_case()
    first = load_tokenizer(released_folder, pixel_chunk_duration=_chunk_duration(case))
    assert sorted(reads) == [DECODER_FILE, ENCODER_FILE]
    assert len(list(cache.rglob("*.safetensors"))) == 1
    second = load_tokenizer(released_folder, pixel_chunk_duration=_chunk_duration(case))
    assert len(reads) == 2, "the second load read the TorchScript files again"
    assert _snapshot(released_folder) == before, "the checkpoint folder was written to"
    video = load_pt(case / "inputs.pt")["video"]
    assert torch.equal(first.encode(video), second.encode(video))
    _assert_reproduces(second, case, "cached conversion")


@pytest.mark.fixtures
def test_diffusers_folder(released_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "vae"
    load_tokenizer(released_folder).vae.save_pretrained(folder)
    for name in (VIDEO_STATISTICS, IMAGE_STATISTICS):
        shutil.copy(RELEASED_STATISTICS / name, folder)
    for case in (_video_case(), _image_case()):
        _assert_reproduces(load_tokenizer(folder, pixel_chunk_duration=_chunk_duration(case)), case, "diffusers folder")

    # Without the statistics files the config's latents_mean/std stand in for mean_std.pt.
    mean, std = load_pt(RELEASED_STATISTICS / VIDEO_STATISTICS)
    config = json.loads((folder / "config.json").read_text())
    config.update(latents_mean=mean.tolist(), latents_std=std.tolist())
    (folder / "config.json").write_text(json.dumps(config))
    for name in (VIDEO_STATISTICS, IMAGE_STATISTICS):
        (folder / name).unlink()
    case = _video_case()
    tokenizer = load_tokenizer(folder, pixel_chunk_duration=_chunk_duration(case))
    latent = tokenizer.encode(load_pt(case / "inputs.pt")["video"])
    error = max_relative_error(latent, load_pt(case / "outputs.pt")["latent_model"])
    assert error <= TOLERANCE, f"max relative error {error:.2e}"


@pytest.mark.fixtures
def test_bf16_network_rounds_statistics_and_keeps_the_caller_dtype(released_folder: Path) -> None:
    tokenizer = load_tokenizer(released_folder, dtype=torch.bfloat16, pixel_chunk_duration=9)
    mean, _ = load_pt(RELEASED_STATISTICS / VIDEO_STATISTICS)
    assert tokenizer.vae.dtype == torch.bfloat16
    assert torch.equal(tokenizer.video_mean.flatten(), mean.view(16, -1)[:, :2].flatten().bfloat16())
    latent = load_pt(_video_case() / "outputs.pt")["latent_model"]
    assert tokenizer.decode(latent).dtype == torch.float32  # CPU has no bf16 avg_pool3d, so only decode here


# ---------------------------------------------------------------------------------------------------- loading


def test_names_round_trip() -> None:
    with torch.device("meta"):
        vae = AutoencoderKLCosmos()
    tensors = released_tensors(vae)
    assert sum(released_file(name) == ENCODER_FILE for name in tensors) == 141
    assert sum(released_file(name) == DECODER_FILE for name in tensors) == 174
    assert diffusers_name("decoder.up.0.block.0.nin_shortcut.conv3d.weight", 3) == (
        "decoder.up_blocks.2.resnets.0.conv_shortcut.weight"
    )
    names = [name for name, _ in [*vae.named_parameters(), *vae.named_buffers()]]
    assert all(diffusers_name(released_name(name, 3), 3) == name for name in names)


Change = Callable[[dict[str, torch.Tensor]], object]


def _released_folder_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Change) -> Path:
    """A released-layout folder whose TorchScript files read as the tiny network's tensors after ``change``."""
    folder = tmp_path / "checkpoints" / "tokenizer"
    folder.mkdir(parents=True)
    for name in (ENCODER_FILE, DECODER_FILE):
        (folder / name).touch()
    torch.save(_random_statistics(256), folder / VIDEO_STATISTICS)
    torch.save(_random_statistics(16), folder / IMAGE_STATISTICS)
    tensors = {name: t.detach().clone() for name, t in released_tensors(_tiny_vae()).items()}
    change(tensors)
    files = {
        file: {k: t for k, t in tensors.items() if released_file(k) == file} for file in (ENCODER_FILE, DECODER_FILE)
    }
    monkeypatch.setattr(convert, "read_jit_state_dict", lambda path, *args: files[path.name])
    return folder


@pytest.mark.parametrize(
    "change, file, problem",
    [
        (lambda s: s.pop("decoder.conv_out.1.conv3d.bias"), DECODER_FILE, "1 missing: decoder.conv_out.1.conv3d.bias"),
        (lambda s: s.update({"encoder.extra.weight": torch.zeros(1)}), ENCODER_FILE, "1 unexpected"),
        (
            lambda s: s.update({"decoder.up.0.block.1.conv2.1.conv3d.weight": torch.zeros(16, 16, 2, 1, 1)}),
            DECODER_FILE,
            "1 wrong shape: decoder.up.0.block.1.conv2.1.conv3d.weight [16, 16, 2, 1, 1]",
        ),
    ],
    ids=["missing", "unexpected", "wrong-shape"],
)
def test_strict_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Change, file: str, problem: str
) -> None:
    folder = _released_folder_with(tmp_path, monkeypatch, change)
    with pytest.raises(UserError) as caught:
        load_tokenizer(folder)
    message = str(caught.value)
    assert str(folder / file) in message and problem in message and "download" in message and "\n" not in message


def test_released_folder_loads_the_tiny_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = load_tokenizer(_released_folder_with(tmp_path, monkeypatch, lambda s: None), pixel_chunk_duration=9)
    loaded, reference = tokenizer.vae.state_dict(), _tiny_vae().state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[name], reference[name]) for name in reference)


def test_unwritable_cache_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.touch()
    monkeypatch.setenv("COSMOS_CACHE_DIR", str(blocker / "cache"))
    folder = _released_folder_with(tmp_path, monkeypatch, lambda s: None)
    for _ in range(2):
        load_tokenizer(folder, pixel_chunk_duration=9)
    assert blocker.is_file()


def _counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the TorchScript files read from now on (a cache hit reads none)."""
    reads: list[str] = []
    read = convert.read_jit_state_dict
    monkeypatch.setattr(convert, "read_jit_state_dict", lambda path, *a: reads.append(path.name) or read(path, *a))
    return reads


def _flip_a_tensor_byte(entry: Path) -> None:
    data = bytearray(entry.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # safetensors: u64 header length, header, tensor bytes
    data[(start + len(data)) // 2] ^= 0x01
    entry.write_bytes(bytes(data))


def _alter_keeping_metadata(entry: Path) -> None:
    with safe_open(entry, framework="pt") as cached:
        metadata, tensors = cached.metadata(), {name: cached.get_tensor(name) for name in cached.keys()}
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1
    save_file(tensors, entry, metadata=metadata)


def _swap_for_foreign_file(entry: Path) -> None:
    save_file({name: torch.zeros_like(t) for name, t in load_file(entry).items()}, entry)


def _truncate(entry: Path) -> None:
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])


DAMAGES = {
    "flipped": _flip_a_tensor_byte,
    "truncated": _truncate,
    "altered": _alter_keeping_metadata,
    "foreign": _swap_for_foreign_file,
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", [*DAMAGES, "other_entry"])
def test_damaged_cache_entry_is_rebuilt(
    tiny_checkpoints: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    folder = Path(shutil.copytree(tiny_checkpoints / TOKENIZER, tmp_path / "tokenizer"))
    reads = _counted_reads(monkeypatch)
    reference = load_tokenizer(folder, pixel_chunk_duration=9)
    [entry] = cache.rglob("*.safetensors")
    if damage == "other_entry":  # the valid entry of another tokenizer, renamed over this one
        write_tokenizer(tmp_path / "other", torch.Generator().manual_seed(1))
        load_tokenizer(tmp_path / "other", pixel_chunk_duration=9)
        [other] = set(cache.rglob("*.safetensors")) - {entry}
        os.replace(other, entry)
    else:
        DAMAGES[damage](entry)
    reads.clear()
    rebuilt = load_tokenizer(folder, pixel_chunk_duration=9)
    assert sorted(reads) == [DECODER_FILE, ENCODER_FILE], "the damaged entry was trusted"
    expected = reference.vae.state_dict()
    assert all(torch.equal(t, expected[name]) for name, t in rebuilt.vae.state_dict().items())
    video = _video(1, 3, 9, 16, 16)
    assert torch.equal(rebuilt.encode(video), reference.encode(video))
    load_tokenizer(folder, pixel_chunk_duration=9)
    assert len(reads) == 2, "the rebuilt entry was not used"


def _double_largest_record(archive_path: Path) -> None:
    """Double the values of a float32 TorchScript archive's largest tensor record in place (CRCs updated)."""
    data = bytearray(archive_path.read_bytes())
    with zipfile.ZipFile(archive_path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    doubled = (torch.frombuffer(data[start : start + info.file_size], dtype=torch.float32) * 2).numpy().tobytes()
    data[start : start + info.file_size] = doubled
    central = data.rindex(info.filename.encode()) - 46  # central directory entry: 46 bytes, then the name
    struct.pack_into("<I", data, info.header_offset + 14, zlib.crc32(doubled))
    struct.pack_into("<I", data, central + 16, zlib.crc32(doubled))
    archive_path.write_bytes(bytes(data))


def test_cache_follows_file_content_not_path_or_time(
    tiny_checkpoints: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = Path(shutil.copytree(tiny_checkpoints / TOKENIZER, tmp_path / "tokenizer"))
    reads = _counted_reads(monkeypatch)
    first = load_tokenizer(folder, pixel_chunk_duration=9)
    load_tokenizer(shutil.copytree(folder, tmp_path / "moved"), pixel_chunk_duration=9)
    assert len(reads) == 2, "the same files elsewhere were read again"

    # Other weights in an encoder.jit of the same size and modification time at the same path.
    encoder = folder / ENCODER_FILE
    before = encoder.stat()
    _double_largest_record(encoder)
    os.utime(encoder, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert encoder.stat().st_size == before.st_size
    second = load_tokenizer(folder, pixel_chunk_duration=9)
    assert len(reads) == 4 and len(list(cache.rglob("*.safetensors"))) == 2
    changed = [
        name
        for name, t in second.vae.encoder.state_dict().items()
        if not torch.equal(t, first.vae.encoder.state_dict()[name])
    ]
    assert changed


def test_cache_keeps_only_its_most_recently_used_entries(
    tiny_checkpoints: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = [Path(shutil.copytree(tiny_checkpoints / TOKENIZER, tmp_path / "released"))]
    for seed in (1, 2):
        write_tokenizer(tmp_path / f"other_{seed}", torch.Generator().manual_seed(seed))
        folders.append(tmp_path / f"other_{seed}")
    reads = _counted_reads(monkeypatch)
    for folder in (folders[0], folders[1], folders[0]):  # the last load is a hit: it marks the first entry used
        load_tokenizer(folder, pixel_chunk_duration=9)
    assert len(reads) == 4
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = cache / "tokenizer" / f".0123.cosmos-tmp-{finished.stdout.strip()}-0123abcd.safetensors"
    stale.write_bytes(b"half an entry")  # what a conversion killed while writing leaves
    load_tokenizer(folders[2], pixel_chunk_duration=9)  # a third entry: the least recently used one goes
    assert len(list((cache / "tokenizer").glob("*.safetensors"))) == convert.CACHE_ENTRIES == 2
    assert not stale.exists()
    reads.clear()
    load_tokenizer(folders[0], pixel_chunk_duration=9)
    assert reads == [], "the most recently used entry was removed"
    load_tokenizer(folders[1], pixel_chunk_duration=9)
    assert len(reads) == 2, "the least recently used entry was kept"


def test_diffusers_folder_strict(tmp_path: Path) -> None:
    vae = _tiny_vae()
    vae.save_pretrained(tmp_path)
    torch.save(_random_statistics(256), tmp_path / VIDEO_STATISTICS)
    torch.save(_random_statistics(16), tmp_path / IMAGE_STATISTICS)
    load_tokenizer(tmp_path, pixel_chunk_duration=9)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_layers": 1}))
    with pytest.raises(UserError, match="diffusion_pytorch_model.safetensors: not the expected tokenizer weights"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize(
    "present", [(), (VIDEO_STATISTICS, IMAGE_STATISTICS), (VIDEO_STATISTICS, IMAGE_STATISTICS, ENCODER_FILE)]
)
def test_missing_files(tmp_path: Path, present: tuple[str, ...]) -> None:
    folder = tmp_path / "checkpoints" / "tokenizer"
    folder.mkdir(parents=True)
    for name in present:
        if name.endswith(".jit"):
            (folder / name).touch()
        else:
            torch.save(_random_statistics(16), folder / name)
    order = (VIDEO_STATISTICS, IMAGE_STATISTICS, ENCODER_FILE, DECODER_FILE)
    missing = next(name for name in order if name not in present)
    with pytest.raises(UserError) as caught:
        load_tokenizer(folder)
    assert str(folder / missing) in str(caught.value)
    assert f"--checkpoint_dir {tmp_path / 'checkpoints'}" in str(caught.value)


# ---------------------------------------------------------------------------------------------------- behaviour


@pytest.mark.slow
def test_chunks_are_encoded_and_decoded_independently() -> None:
    tokenizer = _tiny_tokenizer(pixel_chunk_duration=9)
    video = _video(2, 3, 18, 16, 24)
    latent = tokenizer.encode(video)
    assert latent.shape == (2, 16, 4, 2, 3)
    halves = torch.cat([tokenizer.encode(video[:, :, :9]), tokenizer.encode(video[:, :, 9:])], dim=2)
    assert torch.equal(latent, halves)
    assert torch.equal(latent[1:], tokenizer.encode(video[1:]))
    decoded = tokenizer.decode(latent)
    assert decoded.shape == video.shape
    assert torch.equal(decoded, torch.cat([tokenizer.decode(latent[:, :, :2]), tokenizer.decode(latent[:, :, 2:])], 2))
    assert (tokenizer.latent_frames(18), tokenizer.latent_frames(1)) == (4, 1)
    assert (tokenizer.spatial_compression, tokenizer.latent_channels) == (8, 16)


def test_single_frame_uses_the_image_statistics() -> None:
    tokenizer = _tiny_tokenizer()
    image = _video(1, 3, 1, 16, 16)
    raw = tokenizer.vae.encode(image).latent_dist.mode()
    expected = (raw - tokenizer.image_mean) / tokenizer.image_std * 0.5
    assert torch.allclose(tokenizer.encode(image), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "call, shape, allowed",
    [
        ("encode", (1, 3, 10, 16, 16), "T = 1 or a multiple of 9 (9, 18, ...)"),
        ("encode", (1, 3, 9, 12, 16), "H and W multiples of 8"),
        ("encode", (1, 4, 9, 16, 16), "[B, 3, T, H, W]"),
        ("decode", (1, 16, 3, 2, 2), "T = 1 or a multiple of 2 (2, 4, ...)"),
    ],
)
def test_invalid_shapes(call: str, shape: tuple[int, ...], allowed: str) -> None:
    with pytest.raises(UserError) as caught:
        getattr(_tiny_tokenizer(), call)(torch.zeros(shape))
    assert allowed in str(caught.value)


def test_invalid_frame_counts() -> None:
    tokenizer = _tiny_tokenizer()
    with pytest.raises(UserError, match="multiple of 9"):
        tokenizer.latent_frames(10)
    with pytest.raises(UserError, match="1 \\+ 8·k"):
        _tiny_tokenizer(pixel_chunk_duration=10)


def test_framewise_attention_matches_stock_processor() -> None:
    attention = _tiny_vae().encoder.mid_block.attentions[0]
    x = torch.randn(2, 32, 3, 5, 7, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        stock = CosmosSpatialAttentionProcessor2_0()(attention, x)
        framewise = FramewiseSpatialAttention(query_block=8)(attention, x)
    error = max_relative_error(framewise, stock)
    assert error <= 1e-5, f"max relative error {error:.2e}"


def test_tokenizer_uses_framewise_attention_by_default() -> None:
    tokenizer = _tiny_tokenizer()
    assert all(isinstance(m.processor, FramewiseSpatialAttention) for m in tokenizer.vae.decoder.mid_block.attentions)
    video = _video(1, 3, 9, 16, 24)
    latent, decoded = tokenizer.encode(video), tokenizer.decode(tokenizer.encode(video))
    with stock_spatial_attention(tokenizer.vae):
        assert max_relative_error(latent, tokenizer.encode(video)) <= 1e-5
        assert max_relative_error(decoded, tokenizer.decode(latent)) <= 1e-5
