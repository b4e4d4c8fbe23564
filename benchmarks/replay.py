"""A caching HTTP proxy in front of the simulator, so the tap is timed against bytes, not datagen.

The simulator renders every Host List Detection answer on the fly, in Python, at a few MB/s: a
tap measured against it live would be measuring the simulator. The first time the proxy sees a
request it forwards it and keeps the whole answer in memory; every later identical request
(method, path, query and body) is answered from memory at loopback speed, with the simulator's
own status and headers (rate and concurrency limit headers included). ``/admin/...`` is always
forwarded. A benchmark therefore runs the tap once to warm the cache, then times the next runs.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

# Headers that describe one connection or one encoding of the body, not the answer itself.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
}
_WRITE_CHUNK = 1 << 20


@dataclass(frozen=True)
class CachedAnswer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the tap's own log says what was requested."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        key = (self.command, self.path, body)
        cacheable = not self.path.startswith("/admin")
        answer = self.server.cache.get(key) if cacheable else None
        if answer is None:
            answer = self._forward(body)
            if cacheable and answer.status == 200:
                with self.server.lock:
                    self.server.cache[key] = answer
                    self.server.misses += 1
        else:
            with self.server.lock:
                self.server.hits += 1
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        view = memoryview(answer.body)
        for start in range(0, len(view), _WRITE_CHUNK):
            self.wfile.write(view[start : start + _WRITE_CHUNK])

    def _forward(self, body: bytes) -> CachedAnswer:
        upstream = http.client.HTTPConnection(self.server.upstream_host, timeout=3600)
        try:
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in _HOP_BY_HOP and name.lower() != "host"
            }
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            kept = tuple(
                (name, value)
                for name, value in response.getheaders()
                if name.lower() not in _HOP_BY_HOP
            )
            return CachedAnswer(response.status, kept, data)
        finally:
            upstream.close()


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_host: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream_host = upstream_host
        self.cache: dict[tuple[str, str, bytes], CachedAnswer] = {}
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0


class ReplayProxy:
    """``with ReplayProxy(sim.url) as proxy:`` point the tap at ``proxy.url``."""

    def __init__(self, upstream_url: str) -> None:
        self._server = _ProxyServer(urlsplit(upstream_url).netloc)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def hits(self) -> int:
        return self._server.hits

    @property
    def misses(self) -> int:
        return self._server.misses

    def bodies(self, path_part: str, form_part: bytes = b"") -> list[bytes]:
        """Cached answer bodies whose request path contains ``path_part`` and whose request body
        contains ``form_part``, in request order."""
        return [
            answer.body
            for (_, path, form), answer in self._server.cache.items()
            if path_part in path and form_part in form
        ]

    def __enter__(self) -> ReplayProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
