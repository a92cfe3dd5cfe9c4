"""Shared test helpers: where the parity fixtures are and how their cases are discovered.

The fixture root is ``$COSMOS_FIXTURES`` (default ``../shared/fixtures`` next to the repository). Tests never name a
case folder: they discover the cases of a family, so any fixture set with the same layout runs. A family folder is
optional: when it is absent its tests are skipped, or fail when ``COSMOS_REQUIRE_FIXTURES=1`` (CI sets it, so CI
cannot pass without the fixtures); a case folder that exists but cannot be loaded fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("COSMOS_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures")).resolve()
REQUIRE_FIXTURES = os.environ.get("COSMOS_REQUIRE_FIXTURES") == "1"


def missing_fixture(reason: str) -> NoReturn:
    """End the current test for absent fixtures: a skip, or a failure under ``COSMOS_REQUIRE_FIXTURES=1``."""
    if REQUIRE_FIXTURES:
        pytest.fail(f"{reason} (COSMOS_REQUIRE_FIXTURES=1)", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("missing_fixture")
    if marker is not None:
        missing_fixture(marker.args[0])


def _absent(family: str, label: str, reason: str):
    return pytest.param(None, id=f"{family}/{label}", marks=pytest.mark.missing_fixture(reason))


def fixture_cases(family: str, pattern: str = "case_*") -> list:
    """One ``pytest.param(path, id="family/case")`` per case folder or file of a fixture family.

    ``family`` may also name a folder that is one case by itself (``pattern=""``), like ``e2e_inverse``.
    """
    root = FIXTURES / family
    if not root.is_dir():
        return [_absent(family, "absent", f"no fixture family {root}")]
    if not pattern:
        return [pytest.param(root, id=family)]
    cases = sorted(root.glob(pattern))
    if not cases:
        return [_absent(family, "empty", f"no {pattern} in {root}")]
    return [pytest.param(case, id=f"{family}/{case.name.removesuffix('.pt')}") for case in cases]


def fixture_family(family: str) -> Path:
    """The folder of a fixture family (``missing_fixture`` when it is absent)."""
    root = FIXTURES / family
    if not root.is_dir():
        missing_fixture(f"no fixture family {root}")
    return root


def first_case(family: str, matches: Callable[[Path], bool], what: str) -> Path:
    """The first case folder of ``family`` (in name order) for which ``matches(case)`` holds, e.g. the first case
    whose input is a video; ``missing_fixture`` when the family has none."""
    for case in sorted(fixture_family(family).glob("case_*")):
        if matches(case):
            return case
    missing_fixture(f"no {what} case in {FIXTURES / family}")


def assert_close_elementwise(out: torch.Tensor, ref: torch.Tensor, tolerance: float, label: str = "") -> None:
    """|out − ref| ≤ tolerance · (1 + |ref|) everywhere (NaN equal to NaN): for references whose largest values
    (e.g. texels clamped to 65504) would make a comparison relative to the maximum meaningless."""
    torch.testing.assert_close(
        out.double(), ref.double(), rtol=tolerance, atol=tolerance, equal_nan=True, msg=label or None
    )


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

    source = fixture_family("tokenizer")
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
