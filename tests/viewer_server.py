"""OHIF's published static app and a PACS's DICOMweb, served from one origin on 127.0.0.1, for tests/test_viewer.py.

The app (``@ohif/app``'s ``dist/``, fetched by ``scripts/setup_viewer.sh``) is served as files, with
``index.html`` for its client-side routes (``/viewer?...``) and a generated ``app-config.js`` whose one data
source is this server's ``/dicom-web``; requests there are passed on to the real DICOMweb server (Orthanc),
so the browser sees a single origin (no CORS setup in Orthanc).
"""

from __future__ import annotations

import http.server
import json
import mimetypes
import os
import threading
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "host"}


def app_config(base: str) -> str:
    """OHIF's ``window.config`` for a DICOMweb data source at ``{base}/dicom-web``."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "pacs",
        "configuration": {
            "friendlyName": "Orthanc (ldct-clip test)", "name": "pacs",
            "wadoUriRoot": f"{base}/dicom-web", "qidoRoot": f"{base}/dicom-web", "wadoRoot": f"{base}/dicom-web",
            "qidoSupportsIncludeField": True, "imageRendering": "wadors", "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True, "supportsFuzzyMatching": False, "supportsWildcard": True,
            "dicomUploadEnabled": False, "omitQuotationForMultipartRequest": True,
            "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
        },
    }
    config = {
        "routerBasename": "/", "extensions": [], "modes": [], "customizationService": {}, "showStudyList": True,
        "maxNumberOfWebWorkers": 1, "showWarningMessageForCrossOrigin": False, "showCPUFallbackMessage": False,
        "showLoadingIndicator": False, "strictZSpacingForVolumeViewport": True,
        "investigationalUseDialog": {"option": "never"}, "defaultDataSourceName": "pacs", "dataSources": [source],
    }
    return f"window.config = {json.dumps(config, indent=1)};\n"


def _split_includefield(query: str) -> str:
    """``includefield=a,b`` as ``includefield=a&includefield=b``.

    PS3.18 allows both; OHIF sends the comma list, and Debian bookworm's Orthanc DICOMweb plugin (1.7) ignores
    it, so OHIF's study list would show "No Description" for every study. (A site running OHIF on that Orthanc
    needs the same rewrite in its reverse proxy, or a newer plugin.)
    """
    pairs = parse_qsl(query, keep_blank_values=True)
    split = [(k, v) for key, value in pairs for k, v in
             ([(key, f) for f in value.split(",")] if key.lower() == "includefield" else [(key, value)])]
    return urlencode(split)


class ViewerServer:
    """Serve ``dist`` (OHIF's built app) and proxy ``/dicom-web`` to ``dicomweb`` on a free loopback port."""

    def __init__(self, dist: Path, dicomweb: str) -> None:
        self.dist, self.dicomweb = Path(dist), dicomweb.rstrip("/")
        self.requests: list[tuple[str, int]] = []  # (path, status) of every request, for diagnostics
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                outer._handle(self)

            def do_HEAD(self):  # noqa: N802
                outer._handle(self)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.config = app_config(self.url).encode()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ViewerServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _send(self, handler, status: int, body: bytes, headers: dict[str, str]) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        # cross-origin isolation, as OHIF's own deployments set it (SharedArrayBuffer for its decoders)
        handler.send_header("Cross-Origin-Opener-Policy", "same-origin")
        handler.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
        self.requests.append((handler.path, status))

    def _handle(self, handler) -> None:
        path = urlsplit(handler.path).path
        if path.startswith("/dicom-web/") or path == "/dicom-web":
            query = _split_includefield(urlsplit(handler.path).query)
            target = self.dicomweb + path[len("/dicom-web"):] + (f"?{query}" if query else "")
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_HEADERS}
            try:
                r = requests.request(handler.command, target, headers=headers, timeout=120)
            except requests.RequestException as e:
                self._send(handler, 502, str(e).encode(), {"Content-Type": "text/plain"})
                return
            keep = {k: v for k, v in r.headers.items() if k.lower() not in _HOP_HEADERS}
            self._send(handler, r.status_code, r.content, keep)
            return
        if path == "/app-config.js":
            self._send(handler, 200, self.config, {"Content-Type": "application/javascript"})
            return
        file = (self.dist / path.lstrip("/")).resolve()
        if not file.is_relative_to(self.dist.resolve()) or not file.is_file():
            if "." in Path(path).name:  # a missing asset
                self._send(handler, 404, b"not found", {"Content-Type": "text/plain"})
                return
            file = self.dist / "index.html"  # a client-side route of the single-page app
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix == ".wasm":
            kind = "application/wasm"
        self._send(handler, 200, file.read_bytes(), {"Content-Type": kind})


def setup_viewer_folder() -> Path | str:
    """``scripts/setup_viewer.sh``'s folder (OHIF dist + playwright-core), or why it cannot be had."""
    import subprocess

    script = Path(__file__).resolve().parent.parent / "scripts" / "setup_viewer.sh"
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900, env={**os.environ})
    if r.returncode != 0:
        return f"scripts/setup_viewer.sh failed (exit {r.returncode}): {r.stderr.strip()[-800:]}"
    return Path(r.stdout.strip().splitlines()[-1])
