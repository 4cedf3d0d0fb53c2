"""Weights: encoder files, the offline error, and checkpoint downloads from a real local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from open_clip.modified_resnet import ModifiedResNet

from conftest import tiny_model
from ldct_clip.checkpoints import save_checkpoint
from ldct_clip.errors import WeightsError
from ldct_clip.networks import CLIPDenoiser
from ldct_clip.weights import download, load_encoder_weights


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP Range support (what real weight hosts do), logging each request."""

    requests: list[tuple[str, int]] = []

    def do_GET(self):  # noqa: N802 (http.server naming)
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if rng := self.headers.get("Range"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):  # as real hosts answer a range past the end
                RangeHandler.requests.append((self.path, start))
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        RangeHandler.requests.append((self.path, start))
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    RangeHandler.requests = []
    handler = lambda *a, **k: RangeHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _served_checkpoint(root: Path) -> tuple[Path, str]:
    path = save_checkpoint(tiny_model(seed=7), root / "ldct_tiny.pt")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ldct_clip", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def test_cli_downloads_and_verifies_checkpoint(http_root, tmp_path):
    root, base = http_root
    src, sha = _served_checkpoint(root)
    cache = tmp_path / "cache"
    r = _cli("weights", "--tag", "", "--url", f"{base}/ldct_tiny.pt", "--sha256", sha, "--cache", str(cache))
    assert r.returncode == 0, r.stderr
    dest = cache / "checkpoints" / "ldct_tiny.pt"
    assert dest.read_bytes() == src.read_bytes()
    assert not list(cache.rglob("*.part"))
    # a second run finds the verified file and does not download again
    n = len(RangeHandler.requests)
    assert _cli("weights", "--tag", "", "--url", f"{base}/ldct_tiny.pt", "--sha256", sha, "--cache", str(cache)).returncode == 0
    assert len(RangeHandler.requests) == n


def test_download_resumes_partial_file(http_root, tmp_path):
    root, base = http_root
    src, sha = _served_checkpoint(root)
    dest = tmp_path / "ldct_tiny.pt"
    half = len(src.read_bytes()) // 2
    (tmp_path / "ldct_tiny.pt.part").write_bytes(src.read_bytes()[:half])
    download(f"{base}/ldct_tiny.pt", dest, sha)
    assert RangeHandler.requests == [("/ldct_tiny.pt", half)]
    assert dest.read_bytes() == src.read_bytes()


def test_download_completes_a_partial_file_that_holds_every_byte(http_root, tmp_path):
    # a run stopped between the last byte and the rename: the host answers 416, the checksum decides
    root, base = http_root
    src, sha = _served_checkpoint(root)
    dest = tmp_path / "ldct_tiny.pt"
    (tmp_path / "ldct_tiny.pt.part").write_bytes(src.read_bytes())
    download(f"{base}/ldct_tiny.pt", dest, sha)
    assert RangeHandler.requests == [("/ldct_tiny.pt", len(src.read_bytes()))]
    assert dest.read_bytes() == src.read_bytes() and not (tmp_path / "ldct_tiny.pt.part").exists()
    # a longer partial file (the host's file changed) fails the checksum and is removed, so a rerun starts afresh
    (tmp_path / "other.pt.part").write_bytes(src.read_bytes() + b"extra")
    with pytest.raises(WeightsError, match="checksum mismatch"):
        download(f"{base}/ldct_tiny.pt", tmp_path / "other.pt", sha)
    assert not list(tmp_path.glob("other.pt*"))


def test_checksum_mismatch_leaves_nothing(http_root, tmp_path):
    root, base = http_root
    _served_checkpoint(root)
    cache = tmp_path / "cache"
    r = _cli("weights", "--tag", "", "--url", f"{base}/ldct_tiny.pt", "--sha256", "0" * 64, "--cache", str(cache))
    assert r.returncode == 2
    assert "checksum mismatch" in r.stderr and "Traceback" not in r.stderr
    assert not [p for p in cache.rglob("*") if p.is_file()]


def test_missing_url_is_a_clear_error(http_root, tmp_path):
    _, base = http_root
    with pytest.raises(WeightsError, match="could not download .*404"):
        download(f"{base}/nothing.pt", tmp_path / "x.pt", "0" * 64)


def test_served_file_that_is_not_a_checkpoint_is_rejected(http_root, tmp_path):
    root, base = http_root
    (root / "page.pt").write_text("<html>login required</html>")
    sha = hashlib.sha256((root / "page.pt").read_bytes()).hexdigest()
    r = _cli("weights", "--tag", "", "--url", f"{base}/page.pt", "--sha256", sha, "--cache", str(tmp_path))
    assert r.returncode == 2 and "not a readable PyTorch weight file" in r.stderr


def test_offline_without_cached_clip_weights_says_what_to_do(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    r = _cli("weights", "--encoder", "RN50", "--tag", "openai", env=env)
    assert r.returncode == 2
    assert "not in the local cache" in r.stderr and "RN50.pt" in r.stderr
    assert "Traceback" not in r.stderr


def _tiny_clip_visual() -> ModifiedResNet:
    torch.manual_seed(1)
    return ModifiedResNet(layers=[1, 1, 1, 1], output_dim=256, heads=4, image_size=32, width=8)


def test_encoder_weights_from_clip_state_dict(tmp_path):
    visual = _tiny_clip_visual()
    state = {f"visual.{k}": v for k, v in visual.state_dict().items()}
    state["text_projection"] = torch.zeros(4, 4)  # text tower keys are ignored
    torch.save(state, tmp_path / "clip.bin")
    model = CLIPDenoiser(layers=[1, 1, 1, 1], width=8, encoder_weights=str(tmp_path / "clip.bin"))
    assert torch.equal(model.encoder.conv1.weight, visual.conv1.weight)
    assert torch.equal(model.encoder.layer3[0].conv3.weight, visual.layer3[0].conv3.weight)
    assert not model.encoder.conv1.weight.requires_grad


def test_encoder_weights_from_torchscript_archive(tmp_path):
    class ClipLike(torch.nn.Module):  # OpenAI's RN50.pt is a TorchScript CLIP with `visual.*` weights
        def __init__(self):
            super().__init__()
            self.visual = _tiny_clip_visual()

        def forward(self, x):
            return self.visual(x)

    torch.jit.script(ClipLike()).save(str(tmp_path / "RN8.pt"))
    model = CLIPDenoiser(layers=[1, 1, 1, 1], width=8, encoder_weights=str(tmp_path / "RN8.pt"))
    assert torch.equal(model.encoder.bn2.running_var, _tiny_clip_visual().bn2.running_var)


def test_encoder_weights_that_do_not_fit(tmp_path):
    torch.save({f"visual.{k}": v for k, v in _tiny_clip_visual().state_dict().items()}, tmp_path / "w.bin")
    with pytest.raises(WeightsError, match="do not fit"):
        CLIPDenoiser(layers=[1, 1, 1, 1], width=16, encoder_weights=str(tmp_path / "w.bin"))
    with pytest.raises(WeightsError, match="not found"):
        load_encoder_weights(tiny_model().encoder, tmp_path / "missing.pt")
