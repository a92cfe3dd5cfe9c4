"""Write tiny random-weight checkpoints in the released folder layout (seconds, any CPU).

    python scripts/make_tiny_checkpoints.py --checkpoint_dir checkpoints_tiny
    python cosmos_predict1/diffusion/inference/inference_inverse_renderer.py --checkpoint_dir checkpoints_tiny \
        --device cpu --height 64 --width 96 --num_video_frames 1 --group_mode webdataset \
        --dataset_path asset/examples/image_examples --video_save_folder outputs/tiny_inverse
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import cosmos_predict1  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosmos_predict1.arguments import Parser
from cosmos_predict1.boundary import guard
from cosmos_predict1.errors import UserError
from cosmos_predict1.tiny_checkpoints import write_tiny_checkpoints


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(__doc__)
    parser.add_argument("--checkpoint_dir", type=Path, required=True, help="Folder to write the checkpoints into.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights, 0 to 2**63 - 1.")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace files in --checkpoint_dir that this script did not write (by default such a folder, e.g. one "
        "with the real weights, is refused).",
    )
    parser.add_argument("--debug", action="store_true", help="Show full tracebacks instead of one-line errors.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """0 when written; 2 with one line for a folder that is a file, not writable, full or holds files this script did
    not write (without --overwrite); 1 for an internal error."""
    args = build_parser().parse_args(argv)

    def run() -> int:
        if not 0 <= args.seed < 2**63:
            raise UserError(f"--seed {args.seed}: must be from 0 to 2**63 - 1.")
        write_tiny_checkpoints(args.checkpoint_dir, args.seed, args.overwrite)
        print(f"Wrote tiny checkpoints to {args.checkpoint_dir}")
        return 0

    return guard(run, debug=args.debug, prefix="Error")


if __name__ == "__main__":
    sys.exit(main())
