"""Credentials never follow a redirect to another server; http and path prefixes in the URLs.

Qualys (or a proxy in front of it) answering a credential-bearing call with a redirect to another
scheme, host or port must stop the run, without retrying, in one line naming the target, and the
other server must receive nothing. The other server here is a real listener on another loopback
port that records every byte it is sent.
"""

from __future__ import annotations

import http.server
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from qualys_simulator.testing import SimulatorProcess
from tests.reliability.errors import assert_one_clear_line, has_traceback
from tests.reliability.harness import PASSWORD, SMALL_WORLD, Pipeline, simulator

DEBUG = {"LOGLEVEL": "DEBUG", "TAP_QUALYS_LOGLEVEL": "DEBUG", "TARGET_SQLITE_LOGLEVEL": "DEBUG"}


class Recorder(http.server.ThreadingHTTPServer):
    """Another server: records each request it gets (line, headers, body) and answers 401."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.received: list[bytes] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.server.lock:
            self.server.received.append(
                self.requestline.encode() + b"\n" + bytes(self.headers) + body)
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _record

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with simulator(**SMALL_WORLD) as running:
        yield running


@pytest.mark.parametrize(("endpoint", "status", "streams", "path"), [
    ("auth", 307, ("csam_assets",), "/auth"),  # the password, in the form body
    ("auth", 308, ("pcrs_policies",), "/auth"),
    ("host_list", 307, ("hosts",), "/api/5.0/fo/asset/host/"),  # Basic credentials
    ("knowledge_base", 301, ("knowledge_base",), "/api/4.0/fo/knowledge_base/vuln/"),
    ("csam_search", 302, ("csam_assets",), "/rest/2.0/search/am/asset"),  # the bearer token
])
def test_a_redirect_to_another_server_is_never_followed(
        sim: SimulatorProcess, recorder: Recorder, tmp_path: Path, endpoint: str, status: int,
        streams: tuple[str, ...], path: str) -> None:
    target = recorder.url + path
    sim.admin_post("/admin/inject", {"clear": True})
    sim.admin_post("/admin/inject", {
        "endpoint": endpoint, "status": status, "content_type": "text/plain",
        "headers": {"Location": target}, "times": 50})
    sim.reset_stats()
    pipeline = Pipeline(sim, tmp_path, max_retries=3)
    try:
        # At DEBUG: urllib3 and requests log every call and redirect; none may show a secret.
        result = pipeline.run(streams=streams, timeout=180, env=DEBUG)
    finally:
        pending = sim.admin_get("/admin/inject")["pending"]
        sim.admin_post("/admin/inject", {"clear": True})
    assert recorder.received == [], f"the other server was sent {recorder.received!r}"
    line = assert_one_clear_line(result, names=(target, "redirect"))
    assert "HTTP 401" not in line, line
    assert "Bad Login" not in line, line
    assert "password" not in line.lower(), line
    assert not has_traceback(result), result.describe()
    # Not retried: the redirect is answered again to every retry.
    assert pending, "the injected answer was never used"
    assert pending[0]["remaining"] == 49, pending


@pytest.mark.parametrize(("endpoint", "streams", "path"), [
    ("host_list", ("hosts",), "/api/5.0/fo/asset/host/"),
    ("csam_search", ("csam_assets",), "/rest/2.0/search/am/asset"),
])
def test_a_redirect_loop_on_the_same_server_is_one_clear_line(
        sim: SimulatorProcess, tmp_path: Path, endpoint: str, streams: tuple[str, ...],
        path: str) -> None:
    """A proxy or login page redirecting a call to itself: requests gives up after 30 hops with
    TooManyRedirects, which used to end the run in a traceback ("Exceeded 30 redirects.")."""
    sim.admin_post("/admin/inject", {"clear": True})
    sim.admin_post("/admin/inject", {
        "endpoint": endpoint, "status": 302, "content_type": "text/plain",
        "headers": {"Location": path + "?again=1"}, "times": 1000})
    pipeline = Pipeline(sim, tmp_path, max_retries=2)
    try:
        result = pipeline.run(streams=streams, timeout=180)
    finally:
        sim.admin_post("/admin/inject", {"clear": True})
    assert_one_clear_line(result, names=(sim.url + path, "redirect"), says=("loop",))
    assert not has_traceback(result), result.describe()


def test_plain_http_to_another_host_is_refused(sim: SimulatorProcess, tmp_path: Path) -> None:
    pipeline = Pipeline(sim, tmp_path)
    for setting in ("api_server", "gateway_url"):
        url = "http://qualysapi.example.com"
        result = pipeline.run(config=pipeline.config(**{setting: url}),
                              streams=("hosts",), timeout=120)
        line = assert_one_clear_line(result, names=(setting, url, "https"))
        assert not has_traceback(result), result.describe()
        assert PASSWORD not in line


class _PrefixProxy(http.server.ThreadingHTTPServer):
    """A reverse proxy serving the simulator under ``/qualys/``; anything else is a 404."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.unprefixed: list[str] = []


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: _PrefixProxy
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if not self.path.startswith("/qualys/"):
            self.server.unprefixed.append(self.path)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in {"host", "connection", "content-length"}}
        request = urllib.request.Request(
            self.server.upstream + self.path.removeprefix("/qualys"), data=body,
            method=self.command, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                status, answer_headers, data = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            status, answer_headers, data = error.code, error.headers, error.read()
        self.send_response(status)
        for key, value in answer_headers.items():
            if key.lower() not in {"transfer-encoding", "connection", "content-length"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_path_prefix_in_the_urls_is_kept(sim: SimulatorProcess, tmp_path: Path) -> None:
    proxy = _PrefixProxy(sim.url)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}/qualys/"
        pipeline = Pipeline(sim, tmp_path)
        streams = ("knowledge_base", "hosts", "csam_assets")
        result = pipeline.sync(config=pipeline.config(api_server=url, gateway_url=url),
                               streams=streams)
        pipeline.assert_ground_truth(streams, context=result.describe())
        assert proxy.unprefixed == [], proxy.unprefixed
    finally:
        proxy.shutdown()
        proxy.server_close()
