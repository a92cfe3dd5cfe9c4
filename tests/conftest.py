"""Shared test helpers: where the parity fixtures are and how their cases are discovered.

The fixture root is ``$COSMOS_FIXTURES`` (default ``../shared/fixtures`` next to the repository). Every family
folder is optional: when it is absent its tests are skipped; a case folder that exists but cannot be loaded fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("COSMOS_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures")).resolve()


def fixture_cases(family: str, pattern: str = "case_*") -> list:
    """One ``pytest.param(path, id="family/case")`` per case folder or file of a fixture family.

    ``family`` may also name a folder that is one case by itself (``pattern=""``), like ``e2e_inverse``.
    """
    root = FIXTURES / family
    if not root.is_dir():
        return [pytest.param(None, id=f"{family}/absent", marks=pytest.mark.skip(reason=f"no fixture family {root}"))]
    if not pattern:
        return [pytest.param(root, id=family)]
    cases = sorted(root.glob(pattern))
    if not cases:
        return [pytest.param(None, id=f"{family}/empty", marks=pytest.mark.skip(reason=f"no {pattern} in {root}"))]
    return [pytest.param(case, id=f"{family}/{case.name.removesuffix('.pt')}") for case in cases]


def load_pt(path: Path):
    """``torch.load`` of a fixture file (plain tensors and containers only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def max_relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max|out - ref| / max|ref| in float64."""
    out, ref = out.double(), ref.double()
    return ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the tokenizer conversion cache of the test run out of the user's cache folder."""
    os.environ["COSMOS_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def fixture_tokenizer_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture tokenizer as a released-layout folder (TorchScript pair + statistics files)."""
    from cosmos_predict1.diffusion.tokenizer import export_jit_pair

    source = FIXTURES / "tokenizer"
    if not source.is_dir():
        pytest.skip(f"no fixture family {source}")
    folder = tmp_path_factory.mktemp("tokenizer")
    export_jit_pair((load_pt(source / "encoder_state_dict.pt"), load_pt(source / "decoder_state_dict.pt")), folder)
    for name in ("mean_std.pt", "image_mean_std.pt"):
        (folder / name).write_bytes((source / "Cosmos-Tokenize1-CV8x8x8-720p" / name).read_bytes())
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random-weight checkpoints in the released layout (scripts/make_tiny_checkpoints.py)."""
    from cosmos_predict1.tiny_checkpoints import write_tiny_checkpoints

    folder = tmp_path_factory.mktemp("checkpoints")
    write_tiny_checkpoints(folder)
    return folder
