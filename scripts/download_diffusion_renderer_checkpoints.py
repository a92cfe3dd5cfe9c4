"""Download the DiffusionRenderer weights from Hugging Face into --checkpoint_dir and verify them.

Layout written (about 56 GB in all):

    <checkpoint_dir>/Diffusion_Renderer_Inverse_Cosmos_7B/model.pt   (+ README.md, config.json when published)
    <checkpoint_dir>/Diffusion_Renderer_Forward_Cosmos_7B/model.pt
    <checkpoint_dir>/Cosmos-Tokenize1-CV8x8x8-720p/{encoder.jit, decoder.jit, mean_std.pt, image_mean_std.pt}
    asset/examples/hdri_examples/{sunny_vondelpark, pink_sunrise, street_lamp, rosendal_plains_1}_2k.hdr

The four HDRIs are the original's bundled lighting (Poly Haven, CC0; about 25 MB), fetched from Poly Haven's public
files API, which lists each file's URL and MD5.

A model whose files are all present with the published MD5 sums is skipped. Log in first (`hf auth login` or
`huggingface-cli login`) with a token that has read access, after accepting the models' terms on their pages.

Differences from the original script: MD5 sums are computed in chunks; a file with a wrong MD5 is not deleted
first: the missing and mismatching files are downloaded into the model folder's hidden .download/ and moved into
place only once they verify, so an offline or failed download leaves every existing file as it was (and the next
run resumes the partial download); only the files the renderer reads are fetched from the tokenizer repository;
--model, --hf_org, --force and --verify_only exist; and failures end with one line and exit code 2 instead of a
traceback (an internal error: exit code 1 and a hint to rerun with --debug).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("cosmos_predict1") is None:  # run as `python scripts/...` without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosmos_predict1.arguments import Parser
from cosmos_predict1.boundary import guard
from cosmos_predict1.diffusion.assets import (
    ENV_LIGHT_PATH_LIST,
    HDRI_DOWNLOAD_COMMAND,
    HDRI_FOLDER,
    POLYHAVEN_FILES_API,
    fetch_original_hdris,
)
from cosmos_predict1.errors import UserError
from cosmos_predict1.release import DOWNLOAD_CHOICES, check_hf_org, check_model, download_command, download_model

HDRIS = "hdris"
MODELS: dict[str, list[str]] = {
    **{choice: [folder] for choice, folder in DOWNLOAD_CHOICES.items()},
    HDRIS: [],
    "all": list(DOWNLOAD_CHOICES.values()),
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = Parser(__doc__)
    parser.add_argument(
        "--checkpoint_dir", default="checkpoints", metavar="DIR", help="Folder that receives the model folders."
    )
    parser.add_argument(
        "--model",
        choices=list(MODELS),
        default="all",
        help="What to fetch: one model, the original's four HDRIs (hdris), or all of them.",
    )
    parser.add_argument("--hdri_dir", default=HDRI_FOLDER, metavar="DIR", help="Folder for the HDRIs.")
    parser.add_argument("--polyhaven_api", default=POLYHAVEN_FILES_API, metavar="URL", help="Poly Haven files API.")
    parser.add_argument(
        "--hf_org",
        default=None,
        metavar="ORG",
        help="Hugging Face organisation of the two renderer models (default: the one in cosmos_predict1/release.py"
        "; 'nvidia' is the other known host). The tokenizer always comes from nvidia.",
    )
    parser.add_argument("--force", action="store_true", help="Download every file again, even when it verifies.")
    parser.add_argument(
        "--verify_only", action="store_true", help="Only check the files already there, offline (exit code 2 if not)."
    )
    parser.add_argument("--debug", action="store_true", help="Show full tracebacks instead of one-line errors.")
    return parser


def verify(checkpoint_dir: str, folders: list[str]) -> None:
    """Check every folder; raise ``UserError`` naming the missing files and those whose MD5 does not match."""
    missing, mismatched = [], []
    for folder in folders:
        folder_missing, folder_mismatched = check_model(checkpoint_dir, folder, verbose=True)
        missing += folder_missing
        mismatched += folder_mismatched
    problems = [f"missing {', '.join(map(str, missing))}"] if missing else []
    if mismatched:
        problems.append(f"MD5 checksum mismatch (corrupt or incomplete download) of {', '.join(map(str, mismatched))}")
    if problems:
        raise UserError(
            f"Checkpoints in {checkpoint_dir} are not usable: {'; '.join(problems)}. Fetch them again with: "
            f"{download_command(checkpoint_dir)}"
        )
    print(f"All checkpoints in {checkpoint_dir} are complete with matched MD5 checksums.")


def verify_hdris(folder: str) -> None:
    """Check offline that the four HDRIs exist (their MD5 sums come from Poly Haven's API, checked when fetching)."""
    paths = [Path(folder, Path(name).name) for name in ENV_LIGHT_PATH_LIST]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise UserError(f"HDRIs missing: {', '.join(missing)}. Fetch them with: {HDRI_DOWNLOAD_COMMAND}")
    print(f"The four HDRIs are in {folder}.")


def main(argv: list[str] | None = None) -> int:
    """Download (or only verify) the selected models; 0 on success, 2 with a one-line message on failure (1 for an
    internal error, with a hint to rerun with --debug)."""
    args = build_parser().parse_args(argv)
    return guard(lambda: run(args), debug=args.debug, prefix="Error")


def run(args: argparse.Namespace) -> int:
    """The work of ``main`` for parsed arguments; failures are raised (``UserError`` for what the user can fix)."""
    folders = MODELS[args.model]
    hdris = args.model in (HDRIS, "all")
    if args.verify_only:
        if folders:
            verify(args.checkpoint_dir, folders)
        if hdris:
            verify_hdris(args.hdri_dir)
        return 0
    if args.hf_org is not None:
        check_hf_org(args.hf_org)  # before the first download, not after the tokenizer's
    for folder in folders:
        download_model(args.checkpoint_dir, folder, hf_org=args.hf_org, force=args.force)
    if hdris:
        fetch_original_hdris(args.hdri_dir, args.polyhaven_api, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
