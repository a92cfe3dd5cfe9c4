"""Multi-process inference on the CPU (gloo, 2 processes on 127.0.0.1): data-parallel CLI runs equal a single process
byte for byte, a context-parallel DiT equals the single-process network, and the sharding rule is a partition."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_cli_inverse import SIZE, write_images
from test_readme import shell_commands

from conftest import REPO_ROOT, max_relative_error
from cosmos_predict1.diffusion import distributed
from cosmos_predict1.diffusion.inference import inference_forward_renderer as forward_script
from cosmos_predict1.diffusion.inference import inference_inverse_renderer as inverse_script
from cosmos_predict1.diffusion.networks import FORWARD_7B, INVERSE_7B, DiffusionRendererDiT, context_parallel
from cosmos_predict1.diffusion.networks.context_parallel import unsupported
from cosmos_predict1.errors import UserError

RANKS = 2
TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def loopback_environment() -> dict[str, str]:
    """Keep gloo on the loopback interface and every process on one thread (as torchrun does)."""
    names = {name for _, name in socket.if_nameindex()}
    interface = next((name for name in ("lo", "lo0") if name in names), None)
    return {"OMP_NUM_THREADS": "1", **({"GLOO_SOCKET_IFNAME": interface} if interface else {})}


def launch(*args: str, ranks: int) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=ranks args`` from the repository root."""
    rendezvous = ["--nnodes=1", f"--nproc_per_node={ranks}", "--master_addr=127.0.0.1", f"--master_port={free_port()}"]
    command = [sys.executable, "-m", "torch.distributed.run", *rendezvous, *args]
    env = {**os.environ, **loopback_environment(), "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_single_thread(main, *args: str) -> None:
    """A script's ``main`` in this process, on one thread like the torchrun workers (same float rounding)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(list(args)) == 0
    finally:
        torch.set_num_threads(threads)


def file_contents(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


# ------------------------------------------------------------------------------------------------- sharding rule


@pytest.mark.parametrize("sizes", [[1] * 7, [5, 1, 1, 5, 2], [2, 2, 1] * 3, [3], [1, 1]])
@pytest.mark.parametrize("parts", [1, 2, 3, 4, 8])
def test_owners_are_a_deterministic_contiguous_balanced_partition(sizes: list[int], parts: int) -> None:
    owners = distributed.owners(sizes, parts)
    assert owners == distributed.owners(sizes, parts)
    assert len(owners) == len(sizes) and all(0 <= owner < parts for owner in owners)
    assert owners == sorted(owners)  # contiguous runs
    loads = [sum(size for size, owner in zip(sizes, owners) if owner == part) for part in range(parts)]
    assert max(loads) - min(loads) <= 2 * max(sizes)


def test_shards_of_all_ranks_cover_the_work_once(monkeypatch) -> None:
    items = [f"clip_{i}" for i in range(4)]
    units = [(item, [f"{item}.{output}"]) for item in items for output in "abc"]  # every output its own unit
    shares = []
    for rank in range(4):
        monkeypatch.setattr(distributed, "_layout", distributed.Layout(rank=rank, world_size=4))
        shares.append(distributed.shard(units))
    outputs = [output for share in shares for _, outputs in share for output in outputs]
    assert sorted(outputs) == sorted(output for _, outputs in units for output in outputs)  # disjoint and covering
    for share in shares:  # an item's units on one rank are merged into one entry
        assert len({item for item, _ in share}) == len(share)
    monkeypatch.setattr(distributed, "_layout", distributed.Layout(rank=3, world_size=4, context_parallel_size=2))
    assert distributed.shard(units) == shares[2] + shares[3]  # a context-parallel group shares its work


def test_single_process_share_is_the_whole_work() -> None:
    units = [("a", [1, 2]), ("a", [3]), ("b", [1])]
    assert distributed.shard(units) == [("a", [1, 2, 3]), ("b", [1])]


def test_layout_and_context_parallel_constraints() -> None:
    with pytest.raises(UserError, match="--context_parallel_size 2: must divide the number of processes"):
        distributed.setup("cpu", 2)
    assert unsupported(32, 28160, 8) is None
    assert "heads" in unsupported(2, 72, 4) and "tokens" in unsupported(4, 6, 4)


def test_torchrun_ranks_take_the_gpu_of_their_local_rank(monkeypatch) -> None:
    from cosmos_predict1.diffusion.assembly import compute_device

    monkeypatch.setattr(distributed, "_layout", distributed.Layout(rank=3, world_size=4, local_rank=1))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert compute_device("cuda") == torch.device("cuda", 1)
    assert compute_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="under torchrun use --device cuda"):
        compute_device("cuda:0")


def test_readme_torchrun_commands_parse() -> None:
    commands = [command for command in shell_commands() if command[0] == "torchrun"]
    assert len(commands) >= 2
    for command in commands:
        script = next(word for word in command[1:] if not word.startswith("-"))  # after torchrun's own options
        module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
        module.build_parser().parse_args(command[command.index(script) + 1 :])


# ------------------------------------------------------------------------------------------- data parallel (CLI)


@pytest.mark.slow
def test_inverse_and_forward_on_two_ranks_equal_one_process(tiny_checkpoints: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", ["a.png", "b.png", "c.png"])
    common = ["--checkpoint_dir", str(tiny_checkpoints), "--device", "cpu", "--num_steps", "2", *SIZE]
    common += ["--num_video_frames", "1"]
    # --max_batch 2 cuts each image's 5 passes into 3 batches, so one image's passes go to both ranks.
    inverse = [*common, "--group_mode", "webdataset", "--dataset_path", str(tmp_path / "in"), "--max_batch", "2"]
    run_single_thread(inverse_script.main, *inverse, "--video_save_folder", str(tmp_path / "inverse_1"))
    launch(
        "cosmos_predict1/diffusion/inference/inference_inverse_renderer.py",
        *inverse,
        "--video_save_folder",
        str(tmp_path / "inverse_2"),
        ranks=RANKS,
    )
    single, parallel = file_contents(tmp_path / "inverse_1"), file_contents(tmp_path / "inverse_2")
    assert len(single) == 3 * 5 * 2 and single == parallel

    forward = [
        *common,
        "--dataset_path",
        str(tmp_path / "inverse_1/gbuffer_frames"),
        "--max_batch",
        "1",
        "--use_custom_envmap",
        "False",
        "--envlight_ind",
        "0",
        "1",
    ]
    run_single_thread(forward_script.main, *forward, "--video_save_folder", str(tmp_path / "forward_1"))
    launch(
        "-m",
        "cosmos_predict1.diffusion.inference.inference_forward_renderer",
        *forward,
        "--video_save_folder",
        str(tmp_path / "forward_2"),
        ranks=RANKS,
    )
    single, parallel = file_contents(tmp_path / "forward_1"), file_contents(tmp_path / "forward_2")
    assert len(single) == 3 * 2 and single == parallel


# ------------------------------------------------------------------------------------------ context parallel (DiT)


def tiny_network(base) -> DiffusionRendererDiT:
    sizes = {"model_channels": 64, "num_blocks": 2, "num_heads": 2, "adaln_lora_dim": 16, "crossattn_emb_channels": 32}
    torch.manual_seed(0)
    net = DiffusionRendererDiT(base.replace(**sizes))
    with torch.no_grad():
        for param in net.parameters():
            param.normal_(0, 0.2)
    return net.eval()


def network_cases() -> dict[str, tuple[DiffusionRendererDiT, tuple, dict]]:
    """name → (network, positional inputs, keyword inputs): inverse, forward, forward with a full context; T' > 1."""
    generator = torch.Generator().manual_seed(1)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator)

    inverse, forward = tiny_network(INVERSE_7B), tiny_network(FORWARD_7B)
    mask = torch.zeros(2, 1, 64, 96)
    mask[:, :, :, 80:] = 1
    return {
        "inverse": (
            inverse,
            (randn(2, 16, 3, 8, 12), torch.tensor(0.3), randn(2, 16, 3, 8, 12)),
            {"context_index": torch.tensor([0, 3]), "padding_mask": mask},
        ),
        "forward": (
            forward,
            (randn(1, 16, 2, 8, 8), torch.tensor(-0.2), randn(1, 136, 2, 8, 8)),
            {},
        ),
        "forward_full_context": (
            forward,
            (randn(1, 16, 2, 4, 8), torch.tensor(0.1), randn(1, 136, 2, 4, 8)),
            {"crossattn_emb": randn(1, 7, 32)},
        ),
    }


def context_parallel_worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(loopback_environment())
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=RANKS)
    try:
        group = dist.new_group(list(range(RANKS)))
        outputs = {}
        for name, (net, args, kwargs) in network_cases().items():
            context_parallel.install(net, group)
            with torch.no_grad():
                outputs[name] = net(*args, **kwargs)
        torch.save(outputs, Path(folder) / f"rank_{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_context_parallel_network_equals_one_process(tmp_path: Path) -> None:
    context = mp.start_processes(
        context_parallel_worker, args=(free_port(), str(tmp_path)), nprocs=RANKS, join=False, start_method="spawn"
    )
    for _ in range(TIMEOUT_S):
        if context.join(timeout=1):
            break
    else:
        for process in context.processes:
            process.kill()
        pytest.fail("context-parallel workers did not finish in time")
    for name, (net, args, kwargs) in network_cases().items():
        with torch.no_grad():
            reference = net(*args, **kwargs)
        for rank in range(RANKS):
            out = torch.load(tmp_path / f"rank_{rank}.pt")[name]
            assert out.shape == reference.shape
            error = max_relative_error(out, reference)
            assert error <= 1e-5, f"{name}, rank {rank}: max relative error {error:.2e}"
