"""Faults on demand: each one, its accounting, and determinism for a seed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from lxml import etree

from qualys_simulator.testing import SimulatorProcess
from tests.simulator.helpers import HL, HLD, KB, LIMIT_HEADERS, call, simple_return, xml

BIG = {"truncation_limit": "0", "show_results": "1"}


@pytest.fixture(scope="module")
def faulty() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(hosts=60, seed=9, detections_per_host=10,
                          fault_endpoints="host_detection") as s:
        yield s


def _next_call_with(sim: SimulatorProcess, fault: str) -> None:
    sim.configure(fault_budget={fault: 1})


def test_http_503_then_recovers(faulty: SimulatorProcess) -> None:
    _next_call_with(faulty, "http_503")
    maintenance = call(faulty, HLD)
    assert maintenance.status_code == 503
    # Every VM API answer carries the limit headers (doc §2, §11), maintenance included.
    for header in LIMIT_HEADERS:
        assert header in maintenance.headers, header
    assert call(faulty, HLD).status_code == 200
    assert faulty.stats()["faults"]["http_503"] == 1


def test_injected_409s(faulty: SimulatorProcess) -> None:
    _next_call_with(faulty, "conflict_1960")
    response = call(faulty, HLD)
    assert response.status_code == 409
    assert simple_return(response)[0] == "1960"
    assert "X-RateLimit-ToWait-Sec" not in response.headers
    assert "X-RateLimit-Remaining" not in response.headers
    # Only ToWait and Remaining are absent (doc §2): Limit, Window and concurrency stay.
    for header in ("X-RateLimit-Limit", "X-RateLimit-Window-Sec", "X-Concurrency-Limit-Limit",
                   "X-Concurrency-Limit-Running"):
        assert header in response.headers, header
    _next_call_with(faulty, "conflict_1965")
    response = call(faulty, HLD)
    assert response.status_code == 409
    assert simple_return(response)[0] == "1965"
    assert int(response.headers["X-RateLimit-ToWait-Sec"]) > 0
    faulty.configure(reset_rate_windows=True)
    assert call(faulty, HLD).status_code == 200


def test_connection_dropped_mid_body(faulty: SimulatorProcess) -> None:
    _next_call_with(faulty, "drop")
    response = call(faulty, HLD, BIG, stream=True)
    assert response.status_code == 200
    with pytest.raises((requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ConnectionError)):
        response.content  # noqa: B018
    # The slot of the dropped call is released: the limit is 2 and both next calls work.
    assert call(faulty, HLD).status_code == 200
    assert call(faulty, HLD).status_code == 200
    # The server thread releases the slot right after the reset; give it a moment.
    deadline = time.monotonic() + 5
    while faulty.stats()["running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert faulty.stats()["running"] == {}


def test_error_document_with_status_200(faulty: SimulatorProcess) -> None:
    _next_call_with(faulty, "error_200")
    response = call(faulty, HLD)
    assert response.status_code == 200
    code, _ = simple_return(response)
    assert code is not None


def test_truncated_body_with_incident_signature(faulty: SimulatorProcess) -> None:
    _next_call_with(faulty, "truncated_200")
    response = call(faulty, HLD, BIG)
    assert response.status_code == 200
    assert b"</RESPONSE>" not in response.content
    assert b"incident signature" in response.content
    assert len(response.content) < len(call(faulty, HLD, BIG).content)


def test_malformed_xml(faulty: SimulatorProcess) -> None:
    _next_call_with(faulty, "malformed_xml")
    response = call(faulty, HLD, BIG)
    assert response.status_code == 200
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(response.content)
    xml(call(faulty, HLD, BIG))  # the next one parses


def test_invalid_characters_in_text(faulty: SimulatorProcess) -> None:
    _next_call_with(faulty, "invalid_chars")
    response = call(faulty, HLD, BIG)
    assert response.status_code == 200
    assert b"\x00" in response.content
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(response.content)
    # The structure is intact: a repairing parser still sees every host.
    cleaned = response.content.replace(b"\x00", b"").replace(b"\x0b", b"")
    repaired = etree.fromstring(cleaned.decode("utf-8", "replace").encode())
    assert len(repaired.findall(".//HOST")) == len(xml(call(faulty, HLD, BIG)).findall(".//HOST"))


def test_slow_first_byte(faulty: SimulatorProcess) -> None:
    faulty.configure(fault_budget={"slow_first_byte": 1}, slow_first_byte_sec=1.0)
    started = time.monotonic()
    assert call(faulty, HLD).status_code == 200
    assert time.monotonic() - started >= 1.0
    started = time.monotonic()
    call(faulty, HLD)
    assert time.monotonic() - started < 1.0


def test_record_delay_makes_the_server_slow(faulty: SimulatorProcess) -> None:
    faulty.configure(record_delay_sec=0.02)
    try:
        started = time.monotonic()
        root = xml(call(faulty, HLD, {"truncation_limit": "20"}))
        elapsed = time.monotonic() - started
    finally:
        faulty.configure(record_delay_sec=0)
    assert len(root.findall(".//HOST")) == 20
    assert elapsed >= 20 * 0.02


def test_fault_endpoints_limit_where_faults_land(faulty: SimulatorProcess) -> None:
    faulty.configure(faults={"http_503": 1.0})
    try:
        assert call(faulty, HL).status_code == 200
        assert call(faulty, KB, {"ids": "10000-10010"}).status_code == 200
        assert call(faulty, HLD).status_code == 503
    finally:
        faulty.configure(faults={"http_503": 0.0})


def test_unknown_fault_is_rejected(faulty: SimulatorProcess) -> None:
    with pytest.raises(RuntimeError, match="unknown fault"):
        faulty.configure(faults={"gremlins": 0.5})


def _outcomes(seed: int) -> list[int]:
    with SimulatorProcess(hosts=10, seed=seed, fault=["http_503=0.5", "error_200=0.3"]) as s:
        statuses = []
        for _ in range(24):
            response = call(s, HL)
            statuses.append(response.status_code if b"<CODE>" not in response.content else 299)
        counted = s.stats()["faults"]
        assert counted.get("http_503", 0) == statuses.count(503)
        assert counted.get("error_200", 0) == statuses.count(299)
        return statuses


def test_faults_are_deterministic_for_a_seed() -> None:
    first = _outcomes(21)
    assert first == _outcomes(21)
    assert {200, 503, 299} <= set(first)
    assert first != _outcomes(22)
