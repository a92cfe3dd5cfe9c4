"""The bundled example HDRIs that the forward renderer's --envlight_ind indexes.

The files are made by ``scripts/make_example_assets.py``. Paths are relative to the current folder, as in the
original; when a path does not exist there it is looked up in the repository that holds this package.
"""

from __future__ import annotations

from pathlib import Path

from cosmos_predict1.errors import UserError

# --envlight_ind k selects entry k.
ENV_LIGHT_PATH_LIST: list[str] = [
    "asset/examples/hdri_examples/clear_sky_sun.hdr",
    "asset/examples/hdri_examples/pink_sunrise.hdr",
    "asset/examples/hdri_examples/street_lamp_night.hdr",
    "asset/examples/hdri_examples/overcast.hdr",
]

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def env_light_path(index: int) -> Path:
    """The HDRI of ``--envlight_ind index``: CWD-relative if it exists there, else inside the repository.

    Raises ``UserError`` for an index outside the list or a file found in neither place.
    """
    if not 0 <= index < len(ENV_LIGHT_PATH_LIST):
        raise UserError(f"--envlight_ind {index} is out of range: choose from 0 to {len(ENV_LIGHT_PATH_LIST) - 1}.")
    relative = Path(ENV_LIGHT_PATH_LIST[index])
    for candidate in (relative, REPOSITORY_ROOT / relative):
        if candidate.is_file():
            return candidate
    raise UserError(
        f"HDRI {relative} not found in the current folder nor in {REPOSITORY_ROOT}; "
        f"regenerate it with: python scripts/make_example_assets.py"
    )
