"""POST /admin/inject: the next N answers of an endpoint are exactly the crafted payload."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import requests

from qualys_simulator.testing import SimulatorProcess
from tests.simulator.helpers import HL, KB, call


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(hosts=5, seed=3, kb_size=20, kb_extra=2) as simulator:
        yield simulator


def test_the_next_answers_are_the_payload_then_normal_again(sim: SimulatorProcess) -> None:
    sim.admin_post("/admin/inject", {
        "endpoint": "host_list", "status": 200, "content_type": "text/html",
        "headers": {"X-Proxy": "corp"}, "body_b64": b64(b"<html>login</html>"), "times": 2,
    })
    for _ in range(2):
        response = call(sim, HL, {"truncation_limit": "0"})
        assert response.status_code == 200
        assert response.content == b"<html>login</html>"
        assert response.headers["Content-Type"] == "text/html"
        assert response.headers["X-Proxy"] == "corp"
    assert b"<HOST_LIST_OUTPUT>" in call(sim, HL, {"truncation_limit": "0"}).content
    stats = sim.stats()
    assert stats["faults"]["inject"] == 2
    assert stats["requests"]["host_list"] == 3


def test_other_endpoints_are_untouched_and_auth_is_bypassed(sim: SimulatorProcess) -> None:
    sim.admin_post("/admin/inject", {"endpoint": "knowledge_base", "status": 503,
                                     "body_b64": b64(b"down")})
    assert b"<HOST_LIST_OUTPUT>" in call(sim, HL).content
    # The payload is served before authentication, exactly as given.
    response = call(sim, KB, auth=("nobody", "wrong"))
    assert (response.status_code, response.content) == (503, b"down")


def test_gateway_endpoints_and_empty_bodies(sim: SimulatorProcess) -> None:
    sim.admin_post("/admin/inject", {"endpoint": "auth", "content_type": "text/plain"})
    response = requests.post(sim.url + "/auth", data={"username": sim.username,
                                                      "password": sim.password,
                                                      "token": "true"}, timeout=30)
    assert (response.status_code, response.content) == (200, b"")
    assert requests.post(sim.url + "/auth", data={"username": sim.username,
                                                  "password": sim.password, "token": "true"},
                         timeout=30).status_code == 201


def test_large_bodies_are_streamed_from_a_repeated_unit(sim: SimulatorProcess) -> None:
    sim.admin_post("/admin/inject", {
        "endpoint": "host_detection", "body_b64": b64(b"<A>"), "repeat_b64": b64(b"x" * 1000),
        "repeat_count": 5000, "tail_b64": b64(b"</A>"),
    })
    response = call(sim, "/api/5.0/fo/asset/host/vm/detection/", stream=True)
    body = response.raw.read()
    assert len(body) == 3 + 5_000_000 + 4
    assert body.startswith(b"<A>xxx")
    assert body.endswith(b"x</A>")
    assert response.headers.get("Transfer-Encoding") == "chunked"


def test_listing_clearing_and_validation(sim: SimulatorProcess) -> None:
    sim.admin_post("/admin/inject", {"endpoint": "csam_search", "times": 3})
    assert sim.admin_get("/admin/inject")["pending"] == [
        {"endpoint": "csam_search", "status": 200, "content_type": "text/xml; charset=UTF-8",
         "bytes": 0, "remaining": 3}]
    assert sim.admin_post("/admin/inject", {"clear": True}) == {"pending": []}
    with pytest.raises(RuntimeError, match="unknown endpoint"):
        sim.admin_post("/admin/inject", {"endpoint": "nope"})
    with pytest.raises(RuntimeError, match="base64"):
        sim.admin_post("/admin/inject", {"endpoint": "host_list", "body_b64": "%%%"})
    with pytest.raises(RuntimeError, match="times"):
        sim.admin_post("/admin/inject", {"endpoint": "host_list", "times": 0})
