"""The HDRIs that the forward renderer's ``--envlight_ind`` indexes, and the download of the original's four.

``ENV_LIGHT_PATH_LIST`` is the original's list: four Poly Haven HDRIs (CC0) at 2k, in the original's order. They
are not in the repository; ``scripts/download_diffusion_renderer_checkpoints.py --model hdris`` fetches them from
Poly Haven (``fetch_original_hdris``). Until then the procedurally generated maps of ``FALLBACK_HDRI_LIST`` stand in
for them, index for index, and the run says so once. Paths are relative to the current folder, as in the original;
a path that does not exist there is looked up in the repository that holds this package.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cosmos_predict1.errors import UserError
from cosmos_predict1.temporary import temporary_path

HDRI_FOLDER = "asset/examples/hdri_examples"
# --envlight_ind k selects entry k: the original's four (Poly Haven asset ids + "_2k.hdr").
ORIGINAL_HDRI_ASSETS = ("sunny_vondelpark", "pink_sunrise", "street_lamp", "rosendal_plains_1")
HDRI_RESOLUTION = "2k"
ENV_LIGHT_PATH_LIST: list[str] = [f"{HDRI_FOLDER}/{asset}_{HDRI_RESOLUTION}.hdr" for asset in ORIGINAL_HDRI_ASSETS]
# Made by scripts/make_example_assets.py; entry k stands in for ENV_LIGHT_PATH_LIST[k] while that is absent.
FALLBACK_HDRI_LIST: list[str] = [
    f"{HDRI_FOLDER}/clear_sky_sun.hdr",
    f"{HDRI_FOLDER}/pink_sunrise.hdr",
    f"{HDRI_FOLDER}/street_lamp_night.hdr",
    f"{HDRI_FOLDER}/overcast.hdr",
]

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
POLYHAVEN_FILES_API = "https://api.polyhaven.com/files/"
USER_AGENT = "cosmos-diffusion-renderer (github: Cosmos DiffusionRenderer open inference)"  # Poly Haven's terms
HDRI_DOWNLOAD_COMMAND = "python scripts/download_diffusion_renderer_checkpoints.py --model hdris"
_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60


def _find(relative: str) -> Path | None:
    """``relative`` in the current folder if it is a file there, else in the repository, else None."""
    for candidate in (Path(relative), REPOSITORY_ROOT / relative):
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class BundledHdris:
    """The files ``--envlight_ind`` 0…3 resolve to, and which of the original's files are absent (fallbacks used)."""

    paths: tuple[Path, ...]
    missing_originals: tuple[str, ...]

    def notice(self, indices: Sequence[int]) -> str | None:
        """One line for the run's log when a procedural map stands in for the original at any of ``indices``."""
        names = [Path(ENV_LIGHT_PATH_LIST[k]).name for k in indices if ENV_LIGHT_PATH_LIST[k] in self.missing_originals]
        if not names:
            return None
        return (
            f"the original's HDRI(s) {', '.join(names)} are not downloaded, so procedural stand-ins light "
            f"those indices; fetch the originals with: {HDRI_DOWNLOAD_COMMAND}"
        )


def bundled_hdris() -> BundledHdris:
    """Resolve the four bundled lighting indices: the original's HDRI where present, else its procedural stand-in.

    ``UserError`` if neither file of an index exists (a broken checkout).
    """
    paths, missing = [], []
    for original, fallback in zip(ENV_LIGHT_PATH_LIST, FALLBACK_HDRI_LIST):
        found = _find(original)
        if found is None:
            missing.append(original)
            found = _find(fallback)
        if found is None:
            raise UserError(
                f"HDRI {original} and its stand-in {fallback} are missing; fetch the original with: "
                f"{HDRI_DOWNLOAD_COMMAND}"
            )
        paths.append(found)
    return BundledHdris(tuple(paths), tuple(missing))


# --------------------------------------------------------------------------------------- fetching the originals


@dataclass(frozen=True)
class RemoteFile:
    """A file offered by Poly Haven: its URL, byte size and MD5."""

    url: str
    size: int
    md5: str


def hdri_file_info(asset: str, api: str = POLYHAVEN_FILES_API) -> RemoteFile:
    """URL, size and MD5 of ``asset``'s 2k Radiance HDR from Poly Haven's files API (``<api><asset>``)."""
    url = f"{api}{asset}"
    try:
        with _open(url) as response:
            listing = json.load(response)
        entry = listing["hdri"][HDRI_RESOLUTION]["hdr"]
        return RemoteFile(str(entry["url"]), int(entry["size"]), str(entry["md5"]).lower())
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise UserError(
            f"Cannot reach {url} to look up the HDRI {asset}: {_reason(err)}; check the connection."
        ) from err
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{url}: unexpected answer ({type(err).__name__}: {err}); the Poly Haven API changed?") from err


def _open(url: str):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(request, timeout=_TIMEOUT_S)  # noqa: S310 (http(s) URLs of our own constant)


def _reason(err: BaseException) -> str:
    return str(getattr(err, "reason", None) or err) or type(err).__name__


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def download_verified(remote: RemoteFile, target: Path) -> None:
    """Stream ``remote`` into ``target`` through a temporary file beside it, checking size and MD5 on the way.

    The file appears under its final name only when complete and verified; on any failure the temporary file is
    removed and ``UserError`` says what went wrong.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(target)
    digest, size = hashlib.md5(), 0
    try:
        with _open(remote.url) as response, open(temporary, "wb") as out:
            while chunk := response.read(_CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if size != remote.size or digest.hexdigest() != remote.md5:
            raise UserError(
                f"Download of {remote.url} is damaged ({size} of {remote.size} bytes, MD5 {digest.hexdigest()}, "
                f"expected {remote.md5}); run the command again."
            )
        os.replace(temporary, target)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:  # IncompleteRead: a cut connection
        raise UserError(f"Download of {remote.url} to {target} failed: {_reason(err)}; run the command again.") from err
    finally:
        temporary.unlink(missing_ok=True)


def fetch_original_hdris(
    folder: str | Path = HDRI_FOLDER, api: str = POLYHAVEN_FILES_API, force: bool = False
) -> list[Path]:
    """Download the original's four HDRIs into ``folder`` (verified by MD5); files already complete are skipped
    unless ``force``.

    Returns the four paths in ``--envlight_ind`` order. Every failure is a one-line ``UserError``.
    """
    folder = Path(folder)
    paths = []
    for relative in ENV_LIGHT_PATH_LIST:
        asset = Path(relative).name.removesuffix(f"_{HDRI_RESOLUTION}.hdr")
        target = folder / Path(relative).name
        remote = hdri_file_info(asset, api)
        if not force and target.is_file() and target.stat().st_size == remote.size and _md5(target) == remote.md5:
            print(f"HDRI {target} exists with a matched MD5 checksum.")
        else:
            print(f"Downloading {remote.url} to {target}...", flush=True)
            download_verified(remote, target)
            print(f"HDRI {target} downloaded and verified (Poly Haven, CC0).")
        paths.append(target)
    return paths
