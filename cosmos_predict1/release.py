"""What NVIDIA released and where it lives: folder names, Hugging Face repositories and the published MD5 sums.

This is the one place that names the repositories, so a move of the organisation is a one-line change. It also
holds the checks (required files, streaming MD5), the download used by
``scripts/download_diffusion_renderer_checkpoints.py``, and the one message every loader gives for a missing or
damaged released file (``missing_file``, ``redownload_hint``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Collection
from pathlib import Path

from cosmos_predict1.errors import UserError

INVERSE_MODEL = "Diffusion_Renderer_Inverse_Cosmos_7B"
FORWARD_MODEL = "Diffusion_Renderer_Forward_Cosmos_7B"
TOKENIZER = "Cosmos-Tokenize1-CV8x8x8-720p"

# Folder under --checkpoint_dir -> Hugging Face repository id.
REPOSITORIES: dict[str, str] = {
    INVERSE_MODEL: f"zianw/{INVERSE_MODEL}",
    FORWARD_MODEL: f"zianw/{FORWARD_MODEL}",
    TOKENIZER: f"nvidia/{TOKENIZER}",
}

# MD5 sums published by the original download script, keyed by '<folder>/<file>'.
MD5: dict[str, str] = {
    f"{INVERSE_MODEL}/model.pt": "77eb5beddf131bfc8235a300132f22e4",
    f"{FORWARD_MODEL}/model.pt": "2b664e2d1872873ee9089a3f2071f25d",
    f"{TOKENIZER}/mean_std.pt": "f07680ad7eefae57d698778e2a0c7c96",
    f"{TOKENIZER}/image_mean_std.pt": "9f19fd3312fc1198e4905ada02e68bce",
}

# Files the renderer reads from each folder; a folder is complete when all are present (and match MD5 where listed).
REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    INVERSE_MODEL: ("model.pt",),
    FORWARD_MODEL: ("model.pt",),
    TOKENIZER: ("encoder.jit", "decoder.jit", "mean_std.pt", "image_mean_std.pt"),
}

# What is fetched from each repository: the original's patterns for the renderers; for the tokenizer only what the
# renderer reads (the repository also holds a 226 MB autoencoder.jit that is never used).
_RENDERER_PATTERNS = [
    "README.md",
    "model.pt",
    "mean_std.pt",
    "image_mean_std.pt",
    "config.json",
    "*.jit",
    "guardrail/*",
]
ALLOW_PATTERNS: dict[str, list[str]] = {
    INVERSE_MODEL: _RENDERER_PATTERNS,
    FORWARD_MODEL: _RENDERER_PATTERNS,
    TOKENIZER: [*REQUIRED_FILES[TOKENIZER], "config.json", "README.md"],
}

DOWNLOAD_SCRIPT = "scripts/download_diffusion_renderer_checkpoints.py"
STAGING_FOLDER = ".download"  # in a model folder: where files land until they verify (the hub resumes from it)
# The download script's --model choice that fetches each folder alone (its other choices: hdris, all).
DOWNLOAD_CHOICES: dict[str, str] = {"inverse": INVERSE_MODEL, "forward": FORWARD_MODEL, "tokenizer": TOKENIZER}
LOGIN_HINT = "log in with `hf auth login` (or `huggingface-cli login`) using a token with read access"
# Whether the repositories are gated is not known here (a gated one is reported when downloading); the release's
# instructions log in first.
LOGIN_FIRST = "log in first with `hf auth login`, a token with read access, as the release's instructions ask"
_MD5_CHUNK_BYTES = 16 * 1024 * 1024


def download_command(checkpoint_dir: str = "checkpoints", model: str | None = None) -> str:
    """The shell command that fetches every released file into ``checkpoint_dir``, or only the folder of ``model``
    (a key of ``DOWNLOAD_CHOICES``)."""
    return f"python {DOWNLOAD_SCRIPT} --checkpoint_dir {checkpoint_dir}" + (f" --model {model}" if model else "")


def released_folder(path: str | Path) -> tuple[Path, str | None]:
    """(checkpoint folder, ``--model`` choice) for a released model folder ``<checkpoint_dir>/<folder>`` or a file
    in one; for any other path (a fine-tune's, say) the folder above its model folder, and None (a name with a
    suffix is taken for a file: ``<folder>/model.pt``)."""
    path = Path(path)
    choices = {folder: choice for choice, folder in DOWNLOAD_CHOICES.items()}
    for folder in (path, path.parent):
        if folder.name in choices:
            return folder.parent, choices[folder.name]
    return (path.parent.parent if path.suffix else path.parent), None


def _downloads(paths: list[Path]) -> str:
    """What fetches ``paths``: the downloads of just the released models they belong to (all of them for a path
    outside the released folders), and the login step."""
    commands = dict.fromkeys(download_command(str(folder), model) for folder, model in map(released_folder, paths))
    return f"download the weights with: {' && '.join(commands)} ({LOGIN_FIRST})"


def redownload_hint(path: str | Path) -> str:
    """How to get the released file or model folder ``path`` (again), for the end of a one-line error: the download
    of its model only, and the login step."""
    return _downloads([Path(path)])


def missing_files(paths: list[Path]) -> UserError:
    """The one-line error for released files or model folders that are not there: each named (up to three), and
    the downloads of just the models they belong to."""
    named = [str(path) for path in paths[:3]] + ([f"{len(paths) - 3} more"] if len(paths) > 3 else [])
    listed = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
    return UserError(f"{listed}: missing; {_downloads(paths)}")


def missing_file(path: str | Path) -> UserError:
    """The one-line error for a released file or model folder that is not there (``missing_files``)."""
    return missing_files([Path(path)])


def file_md5(path: str | Path) -> str:
    """Hex MD5 of a file, read in 16 MiB chunks so multi-GB checkpoints never sit in memory whole."""
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        while chunk := stream.read(_MD5_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def expected_md5(folder: str) -> dict[str, str]:
    """File name -> published MD5 for the files of ``folder`` that have one."""
    prefix = f"{folder}/"
    return {key.removeprefix(prefix): md5 for key, md5 in MD5.items() if key.startswith(prefix)}


def checked_files(folder: str) -> list[str]:
    """The files of ``folder`` that ``check_model`` checks: the required ones and those with a published MD5."""
    return list(dict.fromkeys([*REQUIRED_FILES[folder], *expected_md5(folder)]))


def check_model(
    checkpoint_dir: str | Path, folder: str, verbose: bool = False, verified: Collection[str] = ()
) -> tuple[list[Path], list[Path]]:
    """The (missing, mismatched) files of ``<checkpoint_dir>/<folder>``; both empty when the model is complete.

    Missing: a required file or a file with a published MD5 that does not exist. Mismatched: a file whose MD5
    differs from the published one (files named in ``verified``, just checked, are not read again). With
    ``verbose`` every check and every problem is printed (an MD5 check of a multi-GB file takes a while).
    """
    model_dir = Path(checkpoint_dir) / folder
    checksums = expected_md5(folder)
    missing, mismatched = [], []
    for name in checked_files(folder):
        path = model_dir / name
        if not path.is_file():
            missing.append(path)
            if verbose:
                print(f"Checkpoint {path} does not exist.")
            continue
        if name not in checksums or name in verified:
            continue
        if verbose:
            print(f"Verifying checkpoint {path}...", flush=True)
        actual = file_md5(path)
        if actual != checksums[name]:
            mismatched.append(path)
            if verbose:
                print(f"MD5 checksum of checkpoint {path} does not match (got {actual}, expected {checksums[name]}).")
    return missing, mismatched


HF_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")  # the hub's rule for a name (repo or org)
HF_REPO_ID_MAX = 96


def check_hf_org(hf_org: str) -> None:
    """``UserError`` unless ``hf_org`` is a name the hub accepts as the organisation of the renderer models."""
    longest = max(len(f"{hf_org}/{folder}") for folder in (INVERSE_MODEL, FORWARD_MODEL))
    if not HF_NAME.fullmatch(hf_org) or "--" in hf_org or ".." in hf_org or longest > HF_REPO_ID_MAX:
        raise UserError(
            f"--hf_org {hf_org!r}: not a Hugging Face organisation name; use letters, digits, '-', '_' and '.' (not "
            f"first or last, no '--' or '..'), at most {HF_REPO_ID_MAX - len(INVERSE_MODEL) - 1} characters, e.g. "
            "--hf_org nvidia."
        )


def repository_id(folder: str, hf_org: str | None = None) -> str:
    """The repository of ``folder``; ``hf_org`` replaces the organisation of the two renderer models only."""
    if hf_org is None or folder == TOKENIZER:
        return REPOSITORIES[folder]
    check_hf_org(hf_org)
    return f"{hf_org}/{folder}"


def download_model(checkpoint_dir: str | Path, folder: str, hf_org: str | None = None, force: bool = False) -> None:
    """Make ``<checkpoint_dir>/<folder>`` complete, downloading from Hugging Face only when it is not.

    What the folder lacks or holds with an MD5 that differs from the published one (with ``force``: every file) is
    downloaded into its ``STAGING_FOLDER`` and moved into place only once every downloaded file with a published MD5
    matches it. Nothing is deleted beforehand: a failed download (offline, hub unreachable, gated repository,
    missing or invalid token, a checksum mismatch) leaves every file of the folder as it was, and the staging folder
    keeps a partial download for the next attempt. Every failure is raised as a one-line ``UserError``.
    """
    model_dir = Path(checkpoint_dir) / folder
    verified: list[str] = []  # files that are there and need no download
    if not force:
        missing, mismatched = check_model(checkpoint_dir, folder, verbose=True)
        if not missing and not mismatched:
            print(f"Model checkpoints for {folder} exist with matched MD5 checksums.")
            return
        for path in mismatched:
            print(f"Keeping {path} until a new copy is downloaded and verified.")
        problems = {*missing, *mismatched}
        verified = [name for name in checked_files(folder) if model_dir / name not in problems]
    repo_id = repository_id(folder, hf_org)
    staging = model_dir / STAGING_FOLDER
    print(f"Downloading {repo_id} to {staging}...", flush=True)
    _snapshot_download(repo_id, staging, ALLOW_PATTERNS[folder], force, verified)
    fetched = _install(staging, model_dir, expected_md5(folder), repo_id)
    missing, mismatched = check_model(checkpoint_dir, folder, verified=[*verified, *fetched])
    if missing:
        raise UserError(f"Download of {repo_id} finished without {missing[0]}, a file the renderer needs.")
    if mismatched:
        raise UserError(
            f"Download of {repo_id} finished without {mismatched[0].name}, and {mismatched[0]} does not match the "
            "published MD5 checksum: the file may have moved or changed upstream (check --hf_org)."
        )
    print(f"Model checkpoints for {folder} downloaded and verified.")


def _install(staging: Path, model_dir: Path, checksums: dict[str, str], repo_id: str) -> set[str]:
    """Move the files downloaded into ``staging`` to the same places in ``model_dir`` once those with a published
    MD5 all match it (else ``staging`` is removed and ``UserError`` says which did not: nothing is moved); returns
    their names relative to ``model_dir``. ``staging`` is removed afterwards."""
    downloaded = {
        path.relative_to(staging).as_posix(): path
        for path in sorted(staging.rglob("*"))
        if path.is_file() and ".cache" not in path.relative_to(staging).parts
    }
    for name, path in downloaded.items():
        if name in checksums:
            print(f"Verifying downloaded {name}...", flush=True)
            if file_md5(path) != checksums[name]:
                shutil.rmtree(staging, ignore_errors=True)
                raise UserError(
                    f"MD5 checksum of {name} downloaded from {repo_id} does not match the published one; "
                    f"{model_dir / name} was left as it was. Run the command again to fetch it anew (if this "
                    "persists, the file changed upstream)."
                )
    try:
        for name, path in downloaded.items():
            (model_dir / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, model_dir / name)
    except OSError as err:
        raise UserError(
            f"Cannot move the files downloaded from {repo_id} from {staging} into {model_dir}: "
            f"{err.strerror or err}; check the folder's permissions, then run the command again."
        ) from err
    shutil.rmtree(staging, ignore_errors=True)
    return set(downloaded)


def _snapshot_download(
    repo_id: str, local_dir: Path, allow_patterns: list[str], force: bool, ignore_patterns: list[str]
) -> None:
    """``huggingface_hub.snapshot_download`` with its failures turned into one-line ``UserError``s."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    # Errors of the hub's HTTP client: OSErrors with requests (huggingface_hub < 1.0), errors.HTTPError with httpx.
    client_errors = (OSError, getattr(huggingface_hub.errors, "HTTPError", OSError))
    url = f"https://huggingface.co/{repo_id}"
    try:
        huggingface_hub.snapshot_download(
            repo_id,
            local_dir=str(local_dir),
            allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns,
            force_download=force,
        )
    except HFValidationError as err:  # names are checked before (check_hf_org); the hub's own rule is the last word
        raise UserError(f"{repo_id}: not a valid Hugging Face repository id ({_first_line(err)}).") from err
    except GatedRepoError as err:
        raise UserError(f"{repo_id} is gated: accept its terms on {url}, then {LOGIN_HINT}.") from err
    except RepositoryNotFoundError as err:
        raise UserError(
            f"{repo_id} was not found or your token may not read it (HTTP {_status(err)}): {LOGIN_HINT}; "
            f"if the weights moved, pass --hf_org with the new organisation."
        ) from err
    except LocalEntryNotFoundError as err:
        if constants.HF_HUB_OFFLINE:
            raise UserError(f"Cannot download {repo_id}: HF_HUB_OFFLINE is set; unset it to download.") from err
        raise UserError(f"Cannot reach the Hugging Face hub to download {repo_id}: check the connection.") from err
    except HfHubHTTPError as err:
        if _status(err) in ("401", "403"):
            raise UserError(f"The hub refused access to {repo_id} (HTTP {_status(err)}): {LOGIN_HINT}.") from err
        raise UserError(f"Download of {repo_id} failed: {_first_line(err)}") from err
    except client_errors as err:  # a dropped connection, a full disk, a read-only folder
        raise UserError(f"Download of {repo_id} to {local_dir} failed: {_first_line(err)}") from err


def _status(err: Exception) -> str:
    """The HTTP status of a hub error, or '?' when it has none."""
    response = getattr(err, "response", None)
    return str(getattr(response, "status_code", "?"))


def _first_line(err: Exception) -> str:
    """The first non-empty line of an exception's message, prefixed with its type."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else 'no details'}"
