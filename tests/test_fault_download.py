"""Fault injection: a weights download cut short by the server, and a corrupt finished file.

A real HTTP server on 127.0.0.1 sends the full Content-Length, writes part of the file, then closes the
connection (what a proxy timeout or a dropped link does). ``ldct-clip weights`` must say so in one line
(exit 2, the partial file kept), a rerun must resume with an HTTP Range request and verify the SHA-256, and
a finished file whose checksum is wrong must never be loaded.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import tiny_model
from ldct_clip.checkpoints import save_checkpoint

pytestmark = pytest.mark.slow  # subprocesses against a server


class CuttingHandler(http.server.BaseHTTPRequestHandler):
    """Serves one file with Range support; the first ``cuts`` transfers are cut after ``cut_at`` bytes."""

    data = b""
    cut_at = 0
    cuts = 0
    log: list[tuple[int, int]] = []  # (range start, bytes sent) per request

    def do_GET(self):  # noqa: N802 (http.server naming)
        data, start = CuttingHandler.data, 0
        if rng := self.headers.get("Range"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if CuttingHandler.cuts > 0:
            CuttingHandler.cuts -= 1
            body = body[: CuttingHandler.cut_at]
            self.wfile.write(body)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the fault: the connection closes mid-file
            self.close_connection = True
        else:
            self.wfile.write(body)
        CuttingHandler.log.append((start, len(body)))

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    ckpt = save_checkpoint(tiny_model(seed=3), tmp_path / "served.pt")
    CuttingHandler.data = ckpt.read_bytes()
    CuttingHandler.cut_at = len(CuttingHandler.data) // 3
    CuttingHandler.cuts = 0
    CuttingHandler.log = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CuttingHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/ldct_tiny.pt", hashlib.sha256(CuttingHandler.data).hexdigest()
    httpd.shutdown()
    httpd.server_close()


def _weights(url: str, sha: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ldct_clip", "weights", "--tag", "", "--url", url, "--sha256", sha, "--cache", str(cache)],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )


def test_cut_download_is_reported_then_resumed_and_verified(server, tmp_path):
    url, sha = server
    cache = tmp_path / "cache"
    dest, part = cache / "checkpoints" / "ldct_tiny.pt", cache / "checkpoints" / "ldct_tiny.pt.part"
    CuttingHandler.cuts = 1
    r = _weights(url, sha, cache)
    assert CuttingHandler.log == [(0, CuttingHandler.cut_at)]  # the fault happened: the transfer was cut
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("ldct-clip weights: error: could not download"), r.stderr
    assert "connection closed after" in errors[0] and "resume" in errors[0]
    assert not dest.exists()  # nothing half-written under the final name
    assert part.read_bytes() == CuttingHandler.data[: CuttingHandler.cut_at]  # what arrived is kept

    r = _weights(url, sha, cache)
    assert r.returncode == 0, r.stdout + r.stderr
    assert CuttingHandler.log[1] == (CuttingHandler.cut_at, len(CuttingHandler.data) - CuttingHandler.cut_at)  # Range
    assert dest.read_bytes() == CuttingHandler.data and not part.exists()
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha


def test_two_cuts_in_a_row_still_end_in_the_verified_file(server, tmp_path):
    url, sha = server
    cache = tmp_path / "cache"
    CuttingHandler.cuts = 2
    assert _weights(url, sha, cache).returncode == 2
    assert _weights(url, sha, cache).returncode == 2
    assert [start for start, _ in CuttingHandler.log] == [0, CuttingHandler.cut_at]  # the 2nd resumed, then was cut
    r = _weights(url, sha, cache)
    assert r.returncode == 0, r.stderr
    assert (cache / "checkpoints" / "ldct_tiny.pt").read_bytes() == CuttingHandler.data


def test_corrupt_finished_file_is_refused_and_replaced(server, tmp_path):
    url, sha = server
    cache = tmp_path / "cache"
    dest = cache / "checkpoints" / "ldct_tiny.pt"
    dest.parent.mkdir(parents=True)
    corrupt = bytearray(CuttingHandler.data)
    corrupt[len(corrupt) // 2] ^= 0xFF  # one flipped byte: loads fine as a zip? the checksum must catch it
    dest.write_bytes(bytes(corrupt))
    r = _weights(url, sha, cache)
    assert r.returncode == 0, r.stderr
    assert CuttingHandler.log == [(0, len(CuttingHandler.data))]  # it was not trusted: downloaded afresh
    assert dest.read_bytes() == CuttingHandler.data


def test_corrupt_served_file_is_refused_and_not_loaded(server, tmp_path):
    url, sha = server
    cache = tmp_path / "cache"
    good = CuttingHandler.data
    CuttingHandler.data = good[:-100] + bytes(100)  # the host serves a damaged file of the same size
    r = _weights(url, sha, cache)
    assert CuttingHandler.log == [(0, len(good))]
    assert r.returncode == 2 and "checksum mismatch" in r.stderr and "Traceback" not in r.stderr
    assert "checkpoint:" not in r.stdout  # never handed on as a usable checkpoint
    assert not [p for p in cache.rglob("*") if p.is_file()]
