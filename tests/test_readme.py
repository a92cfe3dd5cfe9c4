"""README.md's commands are exactly what the scripts accept, and its test command is what CI runs."""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def shell_commands() -> list[list[str]]:
    """Every command of the README's bash blocks, continuation lines joined, environment assignments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                words = words[1:]
            if words:
                commands.append(words)
    return commands


def script_commands() -> list[pytest.param]:
    found = [c for c in shell_commands() if c[0] == "python" and c[1].endswith(".py")]
    return [pytest.param(c, id=f"{Path(c[1]).stem}-{i}") for i, c in enumerate(found)]


def load_script(path: str):
    if path.startswith("cosmos_predict1/"):
        return importlib.import_module(path.removesuffix(".py").replace("/", "."))
    name = f"readme_script_{Path(path).stem}"
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / path)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("command", script_commands())
def test_readme_command_parses(command: list[str]) -> None:
    parser = load_script(command[1]).build_parser()
    parser.parse_args(command[2:])  # exits (SystemExit) on any option the script does not accept


def test_readme_walkthrough_covers_every_step() -> None:
    scripts = {Path(c[1]).name for c in shell_commands() if c[0] == "python" and c[1].endswith(".py")}
    assert {
        "download_diffusion_renderer_checkpoints.py",
        "dataproc_extract_frames_from_video.py",
        "inference_inverse_renderer.py",
        "inference_forward_renderer.py",
        "make_tiny_checkpoints.py",
    } <= scripts


def test_ci_runs_the_readme_test_command() -> None:
    """README gives the full suite, which CI runs, and the quick subset without the slow tests."""
    full, quick = "python -m pytest -q", 'python -m pytest -q -m "not slow"'
    assert [shlex.split(full), shlex.split(quick)] == [c for c in shell_commands() if "pytest" in c]
    assert (REPO_ROOT / ".ci/run").read_text().rstrip().splitlines()[-1] == full


def test_python_example_uses_the_api_as_it_is() -> None:
    """The "Use from Python" block compiles, imports only exported names, and calls only parameters that exist."""
    import inspect

    import cosmos_predict1

    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no Python example"
    for block in blocks:
        compile(block, "README.md", "exec")
        for names in re.findall(r"^from cosmos_predict1 import (.+)$", block, flags=re.M):
            for name in names.split(","):
                assert hasattr(cosmos_predict1, name.strip()), name
    example = blocks[0]
    calls = {
        "InversePipeline.from_pretrained": cosmos_predict1.InversePipeline.from_pretrained,
        "ForwardPipeline.from_pretrained": cosmos_predict1.ForwardPipeline.from_pretrained,
        "Lighting": cosmos_predict1.Lighting,
    }
    for call, function in calls.items():
        parameters = inspect.signature(function).parameters
        for arguments in re.findall(re.escape(call) + r"\((.*?)\)", example):
            for keyword in re.findall(r"(\w+)=", arguments):
                assert keyword in parameters, f"{call} has no parameter {keyword}"
