"""Where the released weights live: folder names, Hugging Face repositories and the published MD5 sums.

This is the one place that names the repositories, so a move of the organisation is a one-line change.
"""

from __future__ import annotations

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

DOWNLOAD_SCRIPT = "scripts/download_diffusion_renderer_checkpoints.py"


def download_command(checkpoint_dir: str = "checkpoints") -> str:
    """The shell command that fetches every released file into ``checkpoint_dir``."""
    return f"python {DOWNLOAD_SCRIPT} --checkpoint_dir {checkpoint_dir}"
