"""The original's four HDRIs: fetching them (against a local stand-in for Poly Haven, never the internet), and which
file each ``--envlight_ind`` resolves to with and without them."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from test_scripts import load_script

from cosmos_predict1.diffusion import assets
from cosmos_predict1.diffusion.assets import ENV_LIGHT_PATH_LIST, FALLBACK_HDRI_LIST, HDRI_DOWNLOAD_COMMAND

download = load_script("download_diffusion_renderer_checkpoints")


def hdr_bytes(value: float) -> bytes:
    """A tiny valid Radiance file (2 × 4 texels of one value)."""
    import cv2

    ok, encoded = cv2.imencode(".hdr", np.full((2, 4, 3), value, np.float32))
    assert ok
    return encoded.tobytes()


class PolyHaven:
    """A local HTTP server answering ``/files/<asset>`` like Poly Haven's API and serving the files it lists.

    ``damage[asset]`` = "md5": the listed MD5 is wrong; "truncate": the file's connection closes half way.
    """

    def __init__(self) -> None:
        self.files = {asset: hdr_bytes(k + 1.0) for k, asset in enumerate(assets.ORIGINAL_HDRI_ASSETS)}
        self.damage: dict[str, str] = {}
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                state.requests.append(self.path)
                kind, _, asset = self.path.strip("/").partition("/")
                if asset not in state.files:
                    self.send_error(404)
                    return
                data = state.files[asset]
                if kind == "files":
                    md5 = hashlib.md5(data).hexdigest()
                    if state.damage.get(asset) == "md5":
                        md5 = "0" * 32
                    url = f"{state.url}/dl/{asset}"
                    body = json.dumps({"hdri": {"2k": {"hdr": {"url": url, "md5": md5, "size": len(data)}}}})
                    self._send(body.encode(), len(body))
                elif kind == "dl":
                    cut = state.damage.get(asset) == "truncate"
                    self._send(data[: len(data) // 2] if cut else data, len(data))

            def _send(self, body: bytes, length: int) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def polyhaven() -> Iterator[PolyHaven]:
    server = PolyHaven()
    yield server
    server.close()


def fetch(folder: Path, server: PolyHaven, *extra: str) -> int:
    return download.main(
        ["--model", "hdris", "--hdri_dir", str(folder), "--polyhaven_api", f"{server.url}/files/", *extra]
    )


def test_fetches_the_four_hdris_verified_and_skips_complete_ones(tmp_path: Path, polyhaven: PolyHaven, capsys) -> None:
    assert fetch(tmp_path, polyhaven) == 0
    for relative, asset in zip(ENV_LIGHT_PATH_LIST, assets.ORIGINAL_HDRI_ASSETS):
        assert (tmp_path / Path(relative).name).read_bytes() == polyhaven.files[asset]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(r).name for r in ENV_LIGHT_PATH_LIST)
    polyhaven.requests.clear()
    assert fetch(tmp_path, polyhaven) == 0
    assert not [path for path in polyhaven.requests if path.startswith("/dl/")], "complete files were fetched again"
    assert "exists with a matched MD5 checksum" in capsys.readouterr().out
    assert download.main(["--model", "hdris", "--hdri_dir", str(tmp_path), "--verify_only"]) == 0


@pytest.mark.parametrize("damage", ["md5", "truncate"])
def test_a_damaged_download_leaves_no_file(tmp_path: Path, polyhaven: PolyHaven, damage: str, capsys) -> None:
    asset = assets.ORIGINAL_HDRI_ASSETS[1]
    polyhaven.damage[asset] = damage
    assert fetch(tmp_path, polyhaven) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("Error: ") and "\n" not in error and "run the command again" in error
    assert (tmp_path / Path(ENV_LIGHT_PATH_LIST[0]).name).is_file()  # the one before is complete
    assert not (tmp_path / f"{asset}_2k.hdr").exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")], "a temporary file was left"


def test_unreachable_api_is_one_line(tmp_path: Path, capsys) -> None:
    api = "http://127.0.0.1:9/files/"  # nothing listens on the discard port
    assert download.main(["--model", "hdris", "--hdri_dir", str(tmp_path), "--polyhaven_api", api]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("Error: Cannot reach") and "\n" not in error
    assert download.main(["--model", "hdris", "--hdri_dir", str(tmp_path), "--verify_only"]) == 2
    assert HDRI_DOWNLOAD_COMMAND in capsys.readouterr().err


def test_envlight_ind_uses_the_originals_by_name_and_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for k, relative in enumerate(ENV_LIGHT_PATH_LIST):
        Path(relative).parent.mkdir(parents=True, exist_ok=True)
        Path(relative).write_bytes(hdr_bytes(k + 1.0))
    bundled = assets.bundled_hdris()
    assert [path.resolve() for path in bundled.paths] == [(tmp_path / r).resolve() for r in ENV_LIGHT_PATH_LIST]
    assert bundled.notice(range(4)) is None


def test_stand_ins_serve_while_the_originals_are_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path(ENV_LIGHT_PATH_LIST[2]).parent.mkdir(parents=True)
    Path(ENV_LIGHT_PATH_LIST[2]).write_bytes(hdr_bytes(3.0))  # only one original downloaded
    bundled = assets.bundled_hdris()
    expected = [assets.REPOSITORY_ROOT / relative for relative in FALLBACK_HDRI_LIST]
    expected[2] = Path(ENV_LIGHT_PATH_LIST[2])
    assert list(bundled.paths) == expected
    assert bundled.notice([2]) is None
    notice = bundled.notice([0, 2, 3])
    assert "sunny_vondelpark_2k.hdr" in notice and "rosendal_plains_1_2k.hdr" in notice
    assert "street_lamp" not in notice and HDRI_DOWNLOAD_COMMAND in notice


def test_the_forward_cli_says_once_that_stand_ins_light(
    tiny_checkpoints: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from test_cli_forward import run
    from test_cli_inverse import write_images

    monkeypatch.chdir(tmp_path)  # no original HDRI here, nor in the repository
    gbuffers = tmp_path / "gbuffer_frames" / "image_1"
    gbuffers.mkdir(parents=True)
    write_images(gbuffers, ["0000.0000.basecolor.jpg", "0000.0000.normal.jpg"])
    with caplog.at_level(logging.WARNING):
        code = run(
            tiny_checkpoints,
            "--dataset_path",
            str(tmp_path / "gbuffer_frames"),
            "--num_video_frames",
            "1",
            "--envlight_ind",
            "0",
            "1",
            "--video_save_folder",
            str(tmp_path / "out"),
        )
    assert code == 0
    notices = [record for record in caplog.records if HDRI_DOWNLOAD_COMMAND in record.getMessage()]
    assert len(notices) == 1
