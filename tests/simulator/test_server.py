"""The process and the HTTP server: ready line, HTTPS, concurrency, streaming, admin."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from qualys_simulator.testing import SimulatorProcess
from tests.simulator.helpers import HL, HLD, call, xml


def test_ready_line_is_exactly_one_line() -> None:
    process = subprocess.Popen([sys.executable, "-m", "qualys_simulator", "--port", "0",
                                "--hosts", "5"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("qualys-simulator listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        response = requests.get(f"http://127.0.0.1:{port}/admin/clock", timeout=10)
        assert response.json()["epoch"] == 0
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.stdout.read() == ""  # nothing but the ready line on stdout


def test_bad_flags_fail_fast() -> None:
    result = subprocess.run([sys.executable, "-m", "qualys_simulator", "--fault", "nope=1"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "unknown fault" in result.stderr


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_https(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    with SimulatorProcess(hosts=12, tls_cert=cert, tls_key=key) as s:
        assert s.url.startswith("https://127.0.0.1:")
        response = call(s, HL, {"truncation_limit": "5"}, verify=str(cert))
        assert response.status_code == 200
        assert (xml(response).findtext("RESPONSE/WARNING/URL") or "").startswith("https://")
        assert s.stats()["requests"]["host_list"] == 1
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(s.url + "/admin/clock", timeout=10)  # self-signed: verification fails


def test_concurrent_requests_are_served_in_parallel() -> None:
    with SimulatorProcess(hosts=100, concurrency_limit=10, record_delay_sec=0.01) as s:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: call(s, HLD, {"truncation_limit": "30"}),
                                    range(8)))
        assert all(r.status_code == 200 for r in results)
        assert s.stats()["peak_concurrency"]["host_detection"] >= 4


def test_keep_alive_session_reuses_connection(sim: SimulatorProcess) -> None:
    session = requests.Session()
    for _ in range(3):
        response = session.post(sim.url + HL, data={"action": "list"},
                                auth=(sim.username, sim.password),
                                headers={"X-Requested-With": "t"}, timeout=30)
        assert response.status_code == 200
        assert response.headers["Transfer-Encoding"] == "chunked"


def test_stats_reset_and_shape(sim: SimulatorProcess) -> None:
    sim.reset_stats()
    call(sim, HL)
    call(sim, HL, {"bogus": "1"})
    stats = sim.stats()
    assert stats["requests"] == {"host_list": 2}
    assert stats["responses"]["host_list"] == {"200": 1, "400/1901": 1}
    assert stats["records"]["host_list"] > 0
    assert stats["limits"]["concurrency_limit"] == 2
    sim.reset_stats()
    assert sim.stats()["requests"] == {}


def test_admin_errors(sim: SimulatorProcess) -> None:
    assert requests.get(sim.url + "/admin/ground-truth?stream=nope", timeout=10).status_code == 404
    assert requests.post(sim.url + "/admin/config", data=b"{", timeout=10).status_code == 400
    assert requests.get(sim.url + "/admin/nothing", timeout=10).status_code == 404
