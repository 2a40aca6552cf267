"""Fixtures of the data tests: a local HTTP server and catalog entries pointed at it.

The server (127.0.0.1, a free port, one thread per connection) serves byte strings by path,
honours ``Range: bytes=N-`` with 206 answers, and can be told per path to drop the connection
half-way through the first response, to ignore Range, or to answer with an error status. It
records every request so tests can assert that a download really resumed. No test reaches the
internet: every catalog URL used in a test is replaced by a mirror on this server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


ENDLESS_LIMIT_BYTES = 64 << 20  # far past any cap a test sets (hundreds of KB)


class FileServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_once: set[str] = set()
        self.no_range: set[str] = set()
        self.status: dict[str, int] = {}
        self.slow: dict[str, float] = {}  # path -> seconds between bytes (a trickling server)
        self.endless: set[str] = set()  # paths answered with bytes that never end (no Content-Length)
        self.stop = threading.Event()
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                rng = self.headers.get("Range")
                with server._lock:
                    server.requests.append((path, rng))
                    drop = path in server.drop_once
                    server.drop_once.discard(path)
                if path in server.status:
                    self.send_response(server.status[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path in server.endless:
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    sent = 0
                    try:  # "endless" to the client; bounded here so that a broken cap fails the test, not the disk
                        while not server.stop.is_set() and sent < ENDLESS_LIMIT_BYTES:
                            self.wfile.write(bytes(64 << 10))
                            sent += 64 << 10
                    except OSError:  # the client hung up
                        pass
                    return
                data = server.files.get(path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                m = re.match(r"bytes=(\d+)-$", rng or "")
                if m and path not in server.no_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if path in server.slow:
                    try:
                        for i in range(len(body)):
                            if server.stop.wait(server.slow[path]):
                                break
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                    except OSError:  # the client hung up
                        pass
                    self.close_connection = True
                    return
                if drop:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.url(path)

    def gets(self, path: str) -> list[str | None]:
        return [r for p, r in self.requests if p == path]

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    """No back-off pauses in tests; a dropped connection is retried at once."""
    from fgbench.data import download

    monkeypatch.setattr(download, "RETRY_DELAYS_S", (0.0,))


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def patch_entry(monkeypatch):
    """Replace catalog fields of one entry for the length of a test (tiny counts, test md5s)."""
    from fgbench.data import catalog

    def patch(name: str, **changes):
        entry = dataclasses.replace(catalog.get(name), **changes)
        monkeypatch.setitem(catalog._BY_NAME, name, entry)
        return entry

    return patch


@pytest.fixture
def serve_dataset(server, patch_entry, monkeypatch):
    """Serve ``{filename: bytes}`` for dataset ``name`` and point the catalog at the server:
    the entry gets the files' real md5s and sizes (unless overridden), its counts are set from
    ``facts``, and FGBENCH_MIRROR_<NAME> names the server."""
    from fgbench.data.catalog import Source

    def serve(name: str, files: dict[str, bytes], facts: dict | None = None, *, md5s: dict | None = None,
              sizes: bool = True, num_classes: int | None = None):
        sources = []
        for filename, data in files.items():
            server.add(f"/{name}/{filename}", data)
            sources.append(Source(f"https://example.invalid/{filename}", filename,
                                  md5=(md5s or {}).get(filename, md5(data)), size=len(data) if sizes else None))
        changes = {"sources": tuple(sources)}
        if facts is not None:
            changes.update(train_images=facts["train"], test_images=facts["test"],
                           num_classes=num_classes if num_classes is not None else len(facts["classes"]))
        patch_entry(name, **changes)
        base = server.url(f"/{name}/")
        mirror = base + next(iter(files)) if len(files) == 1 else base
        monkeypatch.setenv(f"FGBENCH_MIRROR_{name.upper()}", mirror)
        return mirror

    return serve
