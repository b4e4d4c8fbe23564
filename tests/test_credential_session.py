"""Unit tests of the request guards in retries.py: redirects and first-contact failures."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from tap_qualys.errors import QualysAPIError
from tap_qualys.retries import (
    FIRST_CONTACT_BUDGET,
    CredentialSession,
    RedirectRefused,
    RequestStats,
    RetryPolicy,
    mark_answered,
)


class _Redirecting(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/final":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        self.send_response(307)
        self.send_header("Location", self.path.removeprefix("/to"))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_redirect_on_the_same_server_is_followed(server: str) -> None:
    response = CredentialSession().post(server + "/to/final", data={"password": "x"}, timeout=10)
    assert response.text == "ok"


def test_a_redirect_to_another_port_is_refused_naming_it(server: str) -> None:
    target = f"http://127.0.0.1:{free_port()}/auth"
    with pytest.raises(RedirectRefused) as raised:
        CredentialSession().post(f"{server}/to{target}?token=secret", data={"p": "x"}, timeout=10)
    assert target in str(raised.value)
    assert "secret" not in str(raised.value)


def test_a_server_that_never_answered_gets_a_short_budget_and_then_the_full_one() -> None:
    url = f"http://127.0.0.1:{free_port()}/api/"
    session = CredentialSession()
    waits: list[float] = []
    policy = RetryPolicy(max_retries=50, backoff_base=2.0, sleep=waits.append, jitter=lambda: 1.0)

    def attempt() -> None:
        session.post(url, timeout=5)

    with pytest.raises(QualysAPIError, match="connection refused") as raised:
        policy.run(attempt, label="hosts: /api/", stats=RequestStats())
    assert url.removesuffix("/api/") in str(raised.value)
    assert sum(waits) == pytest.approx(FIRST_CONTACT_BUDGET)
    # Once the server has answered, a refused connection is transient: all 50 retries.
    mark_answered(url)
    waits.clear()
    policy.max_retries, policy.backoff_max = 5, 0.01
    with pytest.raises(QualysAPIError, match="after 6 attempts: ConnectionError"):
        policy.run(attempt, label="hosts: /api/", stats=RequestStats())
    assert len(waits) == 5
    with pytest.raises(requests.exceptions.ConnectionError):
        attempt()
