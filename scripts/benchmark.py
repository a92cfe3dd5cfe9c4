"""GPU benchmark of the renderers with 7B-sized random weights (no released checkpoint needed).

    python scripts/benchmark.py --json BENCHMARKS.json --markdown BENCHMARKS.md

Measures, in one run: the GPU's ceilings (a large bf16 matmul; SDPA at the DiT's shape) and from them the floor of
one DiT step; our DiT step at 1 frame (batch 1 and 5) and 57 frames of 704×1280 next to diffusers'
CosmosTransformer3DModel (same 7B architecture) as the anchor, eager and at its strongest (each transformer block
compiled, cuDNN attention); whole runs in one process (image inverse with 5 passes, 57-frame inverse with 5 passes,
57-frame forward with one HDRI) with peak GPU memory, also with the offload options; and (``--cases cli``) the
command-line scripts as users run them: subprocesses on 7B-size random checkpoints written in the released layout
(float32 ``model.pt``, full-size tokenizer), timed from process start to the last output file with the caches
emptied first ("cold") and again ("warm"). ``--cases`` picks a subset.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

try:
    import cosmos_predict1  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from cosmos_predict1.arguments import Parser
from cosmos_predict1.diffusion.networks import FORWARD_7B, INVERSE_7B, DiffusionRendererDiT, DiTConfig
from cosmos_predict1.diffusion.networks.acceleration import attention_backends, compile_blocks
from cosmos_predict1.diffusion.options import GBUFFER_PASSES, SamplingOptions
from cosmos_predict1.diffusion.renderer import ForwardRenderer, InverseRenderer, work_item_noise

HEIGHT, WIDTH = 704, 1280
FRAMES = {"1 frame": 1, "57 frames": 57}
STEPS = (("1 frame", 1, 1), ("1 frame, batch 5", 1, 5), ("57 frames", 57, 1))  # (label, frames, batch)
CASES = (
    "ceilings",
    "steps",
    "anchor",
    "fp8",
    "tokenizer",
    "image_inverse",
    "video_inverse",
    "video_forward",
    "offload",
    "cli",
)
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Record:
    """One measured case: seconds (median), the arithmetic floor, the anchor's seconds, peak GPU memory."""

    name: str
    seconds: float
    floor_seconds: float | None = None
    anchor_seconds: float | None = None
    peak_gib: float | None = None
    note: str = ""


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs, timed with CUDA events after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return sorted(times)[len(times) // 2]


def release() -> None:
    """Free everything the previous case held (compiled graphs keep references to their modules)."""
    torch._dynamo.reset()
    gc.collect()
    torch.cuda.empty_cache()


def reset_peak() -> None:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


# ---------------------------------------------------------------- ceilings and floors


def matmul_rate() -> tuple[float, float]:
    """(seconds, bf16 TFLOP/s) of an 8192³ product on random data."""
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    seconds = timed(lambda: a @ b, 20, 5)
    return seconds, 2 * 8192**3 / seconds / 1e12


def attention_rate(tokens: int, batch: int = 1) -> tuple[float, float]:
    """(seconds, bf16 TFLOP/s) of the fastest exact SDPA kernel at the DiT's shape (32 heads of 128)."""
    q, k, v = (torch.randn(batch, 32, tokens, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    with attention_backends(torch.device("cuda")):
        seconds = timed(lambda: F.scaled_dot_product_attention(q, k, v), 10, 3)
    return seconds, 4 * batch * tokens**2 * 4096 / seconds / 1e12


def step_flops(config: DiTConfig, tokens: int, batch: int) -> tuple[float, float]:
    """(linear, attention) FLOPs of one DiT forward with the uniform-context shortcut (no cross-attention q/out)."""
    d = config.model_channels
    per_token = 12 * d * d + config.patch_embed_in_features * d + d * config.patch_out_features
    linear = 2 * batch * tokens * config.num_blocks * 12 * d * d + 2 * batch * tokens * (per_token - 12 * d * d)
    attention = config.num_blocks * 4 * batch * tokens**2 * d
    return linear, attention


# ---------------------------------------------------------------- models with random weights on the GPU


def random_network(config: DiTConfig) -> DiffusionRendererDiT:
    with torch.device("meta"):
        network = DiffusionRendererDiT(config)
    network.to_empty(device="cuda").to(torch.bfloat16)
    with torch.no_grad():
        for param in network.parameters():
            if param.ndim == 2:
                param.normal_(0, param.shape[-1] ** -0.5)
            else:
                param.fill_(1.0)
    return network.eval().requires_grad_(False)


def random_tokenizer() -> torch.nn.Module:
    from diffusers import AutoencoderKLCosmos

    from cosmos_predict1.diffusion.tokenizer import VideoTokenizer

    vae = AutoencoderKLCosmos(latents_mean=None, latents_std=None).to("cuda", torch.bfloat16).eval()
    vae.requires_grad_(False)
    stats = (torch.zeros(256), torch.ones(256))
    return VideoTokenizer(vae, stats, (torch.zeros(16), torch.ones(16)), pixel_chunk_duration=57)


def latent_inputs(config: DiTConfig, frames: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = (frames - 1) // 8 + 1
    shape = (batch, 16, t, HEIGHT // 8, WIDTH // 8)
    x = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    return x, torch.randn(batch, config.additional_concat_ch, *shape[2:], device="cuda", dtype=torch.bfloat16)


def tokens_of(frames: int) -> int:
    return ((frames - 1) // 8 + 1) * (HEIGHT // 16) * (WIDTH // 16)


# ---------------------------------------------------------------- cases


def bench_ceilings(records: list[Record], context: dict) -> None:
    seconds, context["matmul_tflops"] = matmul_rate()
    records.append(Record("ceiling: bf16 matmul 8192³", seconds, note=f"{context['matmul_tflops']:.0f} TFLOP/s"))
    for label, frames in FRAMES.items():
        seconds, rate = attention_rate(tokens_of(frames))
        context[f"sdpa_tflops_{label}"] = rate
        records.append(
            Record(f"ceiling: SDPA 32 heads × 128, {tokens_of(frames)} tokens", seconds, note=f"{rate:.0f} TFLOP/s")
        )


def floor_seconds(context: dict, config: DiTConfig, frames: int, batch: int) -> float:
    label = "1 frame" if frames == 1 else "57 frames"
    linear, attention = step_flops(config, tokens_of(frames), batch)
    return linear / (context["matmul_tflops"] * 1e12) + attention / (context[f"sdpa_tflops_{label}"] * 1e12)


def bench_steps(records: list[Record], context: dict, eager: bool) -> None:
    """Our DiT step, compiled (and eager with ``eager``), at each of ``STEPS``."""
    network = random_network(INVERSE_7B)
    t = torch.tensor(0.5, device="cuda", dtype=torch.bfloat16)
    results = {}
    for compiled in (False, True) if eager else (True,):
        if compiled:
            compile_blocks(network)
        for label, frames, batch in STEPS:
            x, c = latent_inputs(network.config, frames, batch)
            index = torch.arange(batch, device="cuda") % 5
            with attention_backends(torch.device("cuda")), torch.no_grad():
                reset_peak()
                seconds = timed(partial(network, x, t, c, context_index=index), 5 if frames > 1 else 20, 3)
            results[(compiled, label)] = seconds
            floor = floor_seconds(context, network.config, frames, batch) if "matmul_tflops" in context else None
            kind = "compiled" if compiled else "eager"
            records.append(Record(f"DiT step, inverse, {label}, {kind}", seconds, floor, peak_gib=peak_gib()))
    context["our_steps"] = {label: results[(True, label)] for label, _, _ in STEPS}
    del network
    torch.cuda.empty_cache()


def bench_fp8(records: list[Record], context: dict) -> None:
    """The compiled step with ``--fp8`` layers, and its deviation from the bf16 step on the same inputs."""
    from cosmos_predict1.diffusion.networks.fp8 import use_fp8

    network = random_network(INVERSE_7B)
    index = torch.tensor([3], device="cuda")
    t = torch.tensor(0.5, device="cuda", dtype=torch.bfloat16)
    inputs = {label: latent_inputs(network.config, frames, 1) for label, frames in FRAMES.items()}
    with attention_backends(torch.device("cuda")), torch.no_grad():
        exact = {label: network(x, t, c, context_index=index) for label, (x, c) in inputs.items()}
        use_fp8(network)
        compile_blocks(network)
        for label, frames in FRAMES.items():
            x, c = inputs[label]
            out = network(x, t, c, context_index=index)
            deviation = ((out.float() - exact[label].float()).norm() / exact[label].float().norm()).item()
            reset_peak()
            seconds = timed(partial(network, x, t, c, context_index=index), 5 if frames > 1 else 20, 3)
            floor = floor_seconds(context, network.config, frames, 1) if "matmul_tflops" in context else None
            note = f"relative RMS vs bf16 step {deviation:.1e} (random weights)"
            records.append(
                Record(f"DiT step, inverse, {label}, compiled, --fp8", seconds, floor, peak_gib=peak_gib(), note=note)
            )


def bench_anchor(records: list[Record], context: dict) -> None:
    """diffusers' CosmosTransformer3DModel at each of ``STEPS``: eager, then at its strongest (every transformer
    block compiled, cuDNN attention first); our compiled step is compared with the strongest."""
    from diffusers import CosmosTransformer3DModel

    with torch.device("meta"):
        anchor = CosmosTransformer3DModel(in_channels=32, rope_scale=(1.0, 1.0, 1.0), extra_pos_embed_type=None)
    anchor.to_empty(device="cuda").to(torch.bfloat16)
    with torch.no_grad():
        for param in anchor.parameters():
            param.normal_(0, 0.02)
    anchor.eval().requires_grad_(False)
    for strongest in (False, True):
        if strongest:
            for block in anchor.transformer_blocks:
                block.compile(dynamic=False)
        for label, frames, batch in STEPS:
            x, c = latent_inputs(INVERSE_7B, frames, batch)
            inputs = torch.cat([x, c], dim=1)
            context_tokens = torch.randn(batch, 512, 1024, device="cuda", dtype=torch.bfloat16)
            mask = torch.zeros(1, 1, HEIGHT, WIDTH, device="cuda", dtype=torch.bfloat16)  # diffusers repeats it
            t = torch.full((batch,), 0.5, device="cuda", dtype=torch.bfloat16)
            call = partial(anchor, inputs, t, context_tokens, fps=24, padding_mask=mask)
            with torch.no_grad(), attention_backends(torch.device("cuda" if strongest else "cpu")):
                seconds = timed(call, 3 if frames > 1 else 10, 1)
            ours = context.get("our_steps", {}).get(label)
            kind = "compiled blocks + cuDNN attention" if strongest else "eager"
            note = f"ours {ours:.3f} s = {ours / seconds:.2f} ×" if ours else ""
            records.append(
                Record(f"diffusers CosmosTransformer3DModel step, {label}, {kind} (anchor)", seconds, note=note)
            )
            print(f"  {records[-1].name}: {seconds:.4f} s", file=sys.stderr, flush=True)
            ours_names = {f"DiT step, inverse, {label}, {kind}" for kind in ("eager", "compiled")}
            for record in records:
                if strongest and record.name in ours_names:
                    record.anchor_seconds = seconds
    del anchor
    torch.cuda.empty_cache()


def bench_tokenizer(records: list[Record], context: dict, variants: bool = False) -> None:
    tokenizer = random_tokenizer()
    weights = torch.cuda.memory_allocated() / 2**30
    settings = [("", False)]
    if variants:
        settings += [(", compiled", True)]
    for suffix, compiled in settings:
        if compiled:
            tokenizer.vae.encoder.forward = torch.compile(tokenizer.vae.encoder.forward, dynamic=False)
            tokenizer.vae.decoder.forward = torch.compile(tokenizer.vae.decoder.forward, dynamic=False)
        for label, frames, batch in (("57×704×1280 clip", 57, 1), ("5 images 704×1280", 1, 5)):
            video = torch.rand(batch, 3, frames, HEIGHT, WIDTH, device="cuda", dtype=torch.bfloat16) * 2 - 1
            latent = tokenizer.encode(video)
            for name, fn in (
                ("encode", partial(tokenizer.encode, video)),
                ("decode", partial(tokenizer.decode, latent)),
            ):
                reset_peak()
                seconds = timed(fn, 3, 1)
                extra = peak_gib() - weights - (video.numel() + latent.numel()) * 2 / 2**30
                note = f"{extra:.2f} GiB beyond weights and tensors"
                records.append(Record(f"tokenizer {name}, {label}{suffix}", seconds, peak_gib=peak_gib(), note=note))


def run_inverse(frames: int, offload: bool, compiled: bool, context: dict) -> tuple[float, float]:
    network = random_network(INVERSE_7B)
    if compiled:
        compile_blocks(network)
    tokenizer = random_tokenizer()
    if compiled:
        tokenizer.compile()
    if offload:
        network.cpu()
    renderer = InverseRenderer(
        network,
        tokenizer,
        device="cuda",
        offload_network=offload,
        offload_tokenizer=offload,
        options=SamplingOptions(15),
    )
    video = torch.rand(1, 3, frames, HEIGHT, WIDTH) * 2 - 1
    latent_shape = (1, 16, (frames - 1) // 8 + 1, HEIGHT // 8, WIDTH // 8)
    noises = [work_item_noise(latent_shape, 0, "bench", p) for p in GBUFFER_PASSES]
    renderer.options.num_steps = 1
    renderer.render(video, list(GBUFFER_PASSES), noises)  # warm-up: compiles for these shapes
    renderer.options.num_steps = 15
    reset_peak()
    start = time.perf_counter()
    renderer.render(video, list(GBUFFER_PASSES), noises)
    torch.cuda.synchronize()
    return time.perf_counter() - start, peak_gib()


def bench_inverse(records: list[Record], context: dict, frames: int, offload: bool = False) -> None:
    seconds, peak = run_inverse(frames, offload, compiled=True, context=context)
    label = "image" if frames == 1 else f"{frames}-frame"
    floor = None
    if "matmul_tflops" in context:
        batch = 5 if frames == 1 else 1
        per_step = floor_seconds(context, INVERSE_7B, frames, batch) * (1 if frames == 1 else 5)
        floor = 15 * per_step
    records.append(
        Record(
            f"{label} inverse, 5 passes × 15 steps{', offload DiT+tokenizer' if offload else ''}",
            seconds,
            floor,
            peak_gib=peak,
        )
    )
    torch.cuda.empty_cache()


def bench_forward(records: list[Record], context: dict) -> None:
    network = random_network(FORWARD_7B)
    compile_blocks(network)
    tokenizer = random_tokenizer()
    tokenizer.compile()
    renderer = ForwardRenderer(network, tokenizer, device="cuda", options=SamplingOptions(15))
    frames = 57
    video = torch.rand(1, 3, frames, HEIGHT, WIDTH) * 2 - 1
    noise = work_item_noise((1, 16, 8, HEIGHT // 8, WIDTH // 8), 0, "bench")
    lighting = {key: torch.rand_like(video) * 2 - 1 for key in ("env_ldr", "env_log", "env_nrm")}

    def run() -> None:
        gbuffers = renderer.encode_gbuffers({name: video for name in GBUFFER_PASSES})
        light = renderer.encode_lighting(lighting, gbuffers)
        renderer.render(gbuffers, [light], [noise])

    renderer.options.num_steps = 1
    run()  # warm-up: compiles for these shapes
    renderer.options.num_steps = 15
    renderer = ForwardRenderer(network, renderer.tokenizer, device="cuda", options=SamplingOptions(15))
    reset_peak()
    start = time.perf_counter()
    run()
    torch.cuda.synchronize()
    floor = 15 * floor_seconds(context, FORWARD_7B, frames, 1) if "matmul_tflops" in context else None
    records.append(
        Record(
            "57-frame forward, 1 HDRI × 15 steps (8 encodes)", time.perf_counter() - start, floor, peak_gib=peak_gib()
        )
    )


def profile_tokenizer() -> None:
    """Top kernels by GPU time of one 57-frame decode."""
    tokenizer = random_tokenizer()
    latent = torch.randn(1, 16, 8, HEIGHT // 8, WIDTH // 8, device="cuda", dtype=torch.bfloat16)
    tokenizer.decode(latent)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        tokenizer.decode(latent)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=60))


def profile_steps() -> None:
    """Top kernels by GPU time of one compiled inverse step at each size (for finding the gap to the floor)."""
    network = random_network(INVERSE_7B)
    compile_blocks(network)
    t = torch.tensor(0.5, device="cuda", dtype=torch.bfloat16)
    for label, frames, batch in (("1 frame, 5 passes", 1, 5), ("57 frames", 57, 1)):
        x, c = latent_inputs(network.config, frames, batch)
        index = torch.arange(batch, device="cuda")
        with attention_backends(torch.device("cuda")), torch.no_grad():
            for _ in range(3):
                network(x, t, c, context_index=index)
            torch.cuda.synchronize()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                network(x, t, c, context_index=index)
                torch.cuda.synchronize()
        print(f"== {label}")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=70))


# ---------------------------------------------------------------- the command line, as users run it

CLI_SCRIPTS = {
    "inverse": "cosmos_predict1/diffusion/inference/inference_inverse_renderer.py",
    "forward": "cosmos_predict1/diffusion/inference/inference_forward_renderer.py",
}
SUMMARY = re.compile(r"in [0-9.]+ s \((?P<phases>.*)\)\s*$")
WORK_PHASES = ("sampling", "encoding", "decoding")  # the DiT and tokenizer work: the floor of a whole command
CLI_TIMEOUT_S = 300


def write_release_checkpoints(folder: Path) -> None:
    """7B-size random checkpoints in the released layout: per renderer a float32 ``model.pt`` (flat ``net.*`` state
    dict), and the full-size tokenizer as a bf16 TorchScript pair with statistics files. Kept across calls."""
    from diffusers import AutoencoderKLCosmos

    from cosmos_predict1.diffusion.networks import to_released_state_dict
    from cosmos_predict1.diffusion.tokenizer import export_jit_pair
    from cosmos_predict1.release import FORWARD_MODEL, INVERSE_MODEL, TOKENIZER

    complete = folder / ".complete"
    if complete.is_file():
        return
    for name, config in ((INVERSE_MODEL, INVERSE_7B), (FORWARD_MODEL, FORWARD_7B)):
        network = random_network(config)
        state = {key: value.float().cpu() for key, value in to_released_state_dict(network.state_dict()).items()}
        del network
        torch.cuda.empty_cache()
        (folder / name).mkdir(parents=True, exist_ok=True)
        torch.save(state, folder / name / "model.pt")
        del state
    vae = AutoencoderKLCosmos(latents_mean=None, latents_std=None).to("cuda", torch.bfloat16).eval()
    export_jit_pair(vae, folder / TOKENIZER)
    generator = torch.Generator().manual_seed(0)
    mean, std = 0.05 * torch.randn(256, generator=generator), 0.5 + 0.5 * torch.rand(256, generator=generator)
    torch.save((mean, std), folder / TOKENIZER / "mean_std.pt")
    torch.save((mean[::16].clone(), std[::16].clone()), folder / TOKENIZER / "image_mean_std.pt")
    del vae
    torch.cuda.empty_cache()
    complete.touch()


def run_command(script: str, args: list[str], cache: Path, cold: bool) -> tuple[float, dict[str, float]]:
    """Wall seconds of ``python <script> <args>`` from process start to exit (its last file is written before it
    exits), and the phases its summary line reports. ``cold`` empties the cache folder first."""
    if cold:
        shutil.rmtree(cache, ignore_errors=True)
    env = {
        key: value for key, value in os.environ.items() if key not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")
    }
    env.update(COSMOS_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    print(f"  running {Path(script).stem} {' '.join(args[-4:])}", file=sys.stderr, flush=True)
    command = [sys.executable, script, *args]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    wall = time.perf_counter() - start
    lines = done.stderr.strip().splitlines()
    if done.returncode or not lines:
        raise RuntimeError(f"{script} failed ({done.returncode}): {' | '.join(lines[-5:])}")
    match = SUMMARY.search(lines[-1])
    phases = {}
    if match:
        for part in match["phases"].split(", "):
            name, value, _ = part.rsplit(" ", 2)
            phases[name] = float(value)
    print(f"  {Path(script).stem} {' '.join(args[-4:])}: {wall:.1f} s | {lines[-1]}", file=sys.stderr, flush=True)
    return wall, phases


def cli_record(name: str, wall: float, phases: dict[str, float]) -> Record:
    work = sum(phases.get(phase, 0.0) for phase in WORK_PHASES)
    note = "; ".join(f"{phase} {value:.1f} s" for phase, value in phases.items())
    return Record(name, wall, work or None, note=note)


CLI_CASES = ("image", "image_warm", "images", "clip", "forward")


def bench_cli(
    records: list[Record], workdir: Path, checkpoint_dir: Path | None, device: str, selected: list[str]
) -> None:
    """The README's commands as subprocesses, those ``selected`` (of ``CLI_CASES``): cold (empty caches) and warm,
    on the bundled inputs."""
    checkpoints = checkpoint_dir or workdir / "checkpoints"
    if checkpoint_dir is None:
        started = time.perf_counter()
        write_release_checkpoints(checkpoints)
        print(f"  checkpoints ready in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    cache, inputs, outputs = workdir / "cache", workdir / "inputs", workdir / "outputs"
    shutil.rmtree(inputs, ignore_errors=True)
    shutil.rmtree(outputs, ignore_errors=True)
    images = REPO_ROOT / "asset/examples/image_examples"
    (inputs / "one_image").mkdir(parents=True)
    shutil.copy(images / "image_1.jpg", inputs / "one_image")
    subprocess.run(
        [sys.executable, "scripts/dataproc_extract_frames_from_video.py", "--input_folder",
         str(REPO_ROOT / "asset/examples/video_examples"), "--output_folder", str(inputs / "clips"), "--frame_rate",
         "24", "--resize", "1280x704", "--max_frames=57"],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )  # fmt: skip
    shutil.rmtree(inputs / "clips" / "video2")  # one clip
    common = ["--checkpoint_dir", str(checkpoints), "--device", device]
    image = ["--num_video_frames", "1", "--group_mode", "webdataset", "--save_video=False"]
    one_image = [*image, "--dataset_path", str(inputs / "one_image")]
    cases = {
        "image": ("cli: inverse, 1 image, cold", "inverse", one_image, True),
        "image_warm": ("cli: inverse, 1 image, warm", "inverse", one_image, False),
        "images": ("cli: inverse, 5 images, cold", "inverse", [*image, "--dataset_path", str(images)], True),
        "clip": (
            "cli: inverse, 57-frame clip, cold",
            "inverse",
            ["--num_video_frames", "57", "--group_mode", "folder", "--dataset_path", str(inputs / "clips")],
            True,
        ),
        "forward": (
            "cli: forward, 1 image × 4 HDRIs, cold",
            "forward",
            ["--num_video_frames", "1", "--envlight_ind", "0", "1", "2", "3", "--use_custom_envmap=True",
             "--dataset_path", str(outputs / "image" / "gbuffer_frames")],
            True,
        ),
    }  # fmt: skip
    if "forward" in selected and "image" not in selected:
        selected = ["image", *selected]  # the forward case relights the image case's G-buffers
    for key in (key for key in cases if key in selected):
        name, script, args, cold = cases[key]
        folder = ["--video_save_folder", str(outputs / key)]
        wall, phases = run_command(CLI_SCRIPTS[script], [*common, *args, *folder], cache, cold)
        records.append(cli_record(name, wall, phases))


# ---------------------------------------------------------------- report


def markdown(records: list[Record], environment: dict) -> str:
    lines = [
        "| case | seconds | floor s | ours/floor | anchor s | ours/anchor | peak GiB | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]

    def number(value: float | None, digits: int) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for r in records:
        ratio_floor = r.seconds / r.floor_seconds if r.floor_seconds else None
        ratio_anchor = r.seconds / r.anchor_seconds if r.anchor_seconds else None
        cells = [
            r.name,
            number(r.seconds, 3),
            number(r.floor_seconds, 3),
            number(ratio_floor, 2),
            number(r.anchor_seconds, 3),
            number(ratio_anchor, 2),
            number(r.peak_gib, 1),
            r.note,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    header = [
        "# Benchmarks",
        "",
        "Written by `scripts/benchmark.py` (the same figures are in `BENCHMARKS.json`). 7B-sized random weights,",
        "bf16, 704×1280. *floor*: the arithmetic floor from the ceilings measured in the same run (linear FLOPs at",
        "the matmul rate + attention FLOPs at the SDPA rate, with the exact uniform-context cross-attention",
        "shortcut); *anchor*: diffusers' `CosmosTransformer3DModel`, the same 7B architecture, at the same shape.",
        "End-to-end rows include tokenizer encodes and decodes; peak = `torch.cuda.max_memory_allocated`.",
        "",
        f"- GPU: {environment['gpu']}",
        f"- torch {environment['torch']}, CUDA {environment['cuda']}",
        f"- date: {environment['date']}",
        f"- command: `{environment['command']}`",
        "",
    ]
    return "\n".join(header) + "\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(__doc__)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES), help="What to measure.")
    parser.add_argument("--json", type=Path, help="Write the records as JSON.")
    parser.add_argument("--markdown", type=Path, help="Write the table as Markdown.")
    parser.add_argument("--profile", action="store_true", help="Print the top GPU kernels of one compiled DiT step.")
    parser.add_argument("--tokenizer_variants", action="store_true", help="Also time a torch.compile'd tokenizer.")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cosmos_benchmark",
        help="Folder for the cli case's checkpoints (about 53 GiB, kept between runs), inputs, outputs and caches.",
    )
    parser.add_argument(
        "--checkpoint_dir", type=Path, default=None, help="cli case: use these checkpoints instead of random 7B ones."
    )
    parser.add_argument("--device", default="cuda", help="cli case: the scripts' --device.")
    parser.add_argument(
        "--cli_cases", nargs="+", choices=CLI_CASES, default=list(CLI_CASES), help="cli case: which commands to time."
    )
    parser.add_argument("--eager_steps", action="store_true", help="steps case: also time the uncompiled step.")
    args = parser.parse_args(argv)
    cpu_cli_check = args.cases == ["cli"] and args.device == "cpu" and args.checkpoint_dir is not None
    if not torch.cuda.is_available() and not cpu_cli_check:
        print("error: the benchmark needs a CUDA GPU (only --cases cli --device cpu --checkpoint_dir runs without)")
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    environment = {
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.date.today().isoformat(),
        "command": "python scripts/benchmark.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    if args.profile:
        profile_tokenizer()
        profile_steps()
        return 0
    records: list[Record] = []
    context: dict = {}
    steps = {
        "ceilings": lambda: bench_ceilings(records, context),
        "steps": lambda: bench_steps(records, context, eager=args.eager_steps),
        "anchor": lambda: bench_anchor(records, context),
        "fp8": lambda: bench_fp8(records, context),
        "tokenizer": lambda: bench_tokenizer(records, context, variants=args.tokenizer_variants),
        "image_inverse": lambda: bench_inverse(records, context, 1),
        "video_inverse": lambda: bench_inverse(records, context, 57),
        "video_forward": lambda: bench_forward(records, context),
        "offload": lambda: bench_inverse(records, context, 57, offload=True),
        "cli": lambda: bench_cli(records, args.workdir, args.checkpoint_dir, args.device, args.cli_cases),
    }
    for case in CASES:
        if case in args.cases:
            started = time.perf_counter()
            steps[case]()
            release()
            print(f"[{case}] done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            write_reports(args.json, args.markdown, environment, context, records)  # partial results survive a stop
    print(markdown(records, environment))
    return 0


def write_reports(
    json_path: Path | None, markdown_path: Path | None, environment: dict, context: dict, records: list[Record]
) -> None:
    if json_path:
        report = {"environment": environment, "context": context, "records": [asdict(r) for r in records]}
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    if markdown_path:
        markdown_path.write_text(markdown(records, environment))


if __name__ == "__main__":
    sys.exit(main())
