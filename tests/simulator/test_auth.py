"""Authentication, the mandatory X-Requested-With header, session login and version calls."""

from __future__ import annotations

import requests

from qualys_simulator.testing import SimulatorProcess
from tests.simulator.helpers import HL, HLD, KB, LIMIT_HEADERS, call, simple_return


def test_basic_auth_required(sim: SimulatorProcess) -> None:
    for path in (HL, HLD, KB):
        response = requests.post(sim.url + path, data={"action": "list"},
                                 headers={"X-Requested-With": "t"}, timeout=30)
        assert response.status_code == 401
        assert simple_return(response)[1] == "Bad Login/Password"


def test_bad_password_is_401(sim: SimulatorProcess) -> None:
    response = call(sim, HL, auth=(sim.username, "wrong"))
    assert response.status_code == 401
    assert "X-RateLimit-Limit" in response.headers


def test_x_requested_with_is_mandatory(sim: SimulatorProcess) -> None:
    response = call(sim, HLD, xrw=False)
    assert response.status_code == 400
    code, text = simple_return(response)
    assert code == "1903"
    assert "X-Requested-With" in text


def test_custom_credentials() -> None:
    with SimulatorProcess(hosts=3, username="ab2cd", password="pw") as s:
        assert s.username == "ab2cd"
        assert call(s, HL).status_code == 200
        assert call(s, HL, auth=("qa_sim_user", "sim-password")).status_code == 401


def test_session_login_cookie_logout(sim: SimulatorProcess) -> None:
    url = sim.url + "/api/2.0/fo/session/"
    headers = {"X-Requested-With": "t"}
    bad = requests.post(url, data={"action": "login", "username": sim.username,
                                   "password": "nope"}, headers=headers, timeout=30)
    assert bad.status_code == 401
    session = requests.Session()
    login = session.post(url, data={"action": "login", "username": sim.username,
                                    "password": sim.password}, headers=headers, timeout=30)
    assert login.status_code == 200
    assert simple_return(login)[1] == "Logged in"
    assert "QualysSession" in session.cookies
    assert "DWRSESSIONID" in session.cookies
    listed = session.post(sim.url + HL, data={"action": "list"}, headers=headers, timeout=30)
    assert listed.status_code == 200
    assert b"<HOST_LIST_OUTPUT>" in listed.content
    logout = session.post(url, data={"action": "logout"}, headers=headers, timeout=30)
    assert logout.status_code == 200
    assert simple_return(logout)[1] == "Logged out"
    after = session.post(sim.url + HL, data={"action": "list"}, headers=headers, timeout=30)
    assert after.status_code == 401


def test_version_endpoints_need_auth(sim: SimulatorProcess) -> None:
    headers = {"X-Requested-With": "t"}
    portal = requests.get(sim.url + "/qps/rest/portal/version", headers=headers, timeout=30)
    assert portal.status_code == 401
    portal = requests.get(sim.url + "/qps/rest/portal/version", headers=headers, timeout=30,
                          auth=(sim.username, sim.password))
    assert portal.status_code == 200
    assert b"<Portal-Version>" in portal.content
    about = requests.post(sim.url + "/msp/about.php", headers=headers, timeout=30,
                          auth=(sim.username, sim.password))
    assert about.status_code == 200
    assert b"<ABOUT>" in about.content


def test_unknown_path_is_404(sim: SimulatorProcess) -> None:
    assert call(sim, "/api/5.0/fo/nothing/").status_code == 404


def test_x_requested_with_only_on_fo_paths(sim: SimulatorProcess) -> None:
    auth = (sim.username, sim.password)
    # The version checks need only Basic auth (doc §11).
    portal = requests.get(sim.url + "/qps/rest/portal/version", auth=auth, timeout=30)
    assert portal.status_code == 200
    about = requests.post(sim.url + "/msp/about.php", auth=auth, timeout=30)
    assert about.status_code == 200
    # Session login is under /api/<ver>/fo/, so the header is mandatory there (doc §1).
    login = requests.post(sim.url + "/api/2.0/fo/session/", timeout=30,
                          data={"action": "login", "username": sim.username,
                                "password": sim.password})
    assert login.status_code == 400
    code, text = simple_return(login)
    assert code == "1903"
    assert "X-Requested-With" in text
    assert "Set-Cookie" not in login.headers


def test_session_answers_carry_limit_headers(sim: SimulatorProcess) -> None:
    url = sim.url + "/api/2.0/fo/session/"
    headers = {"X-Requested-With": "t"}
    session = requests.Session()
    login = session.post(url, data={"action": "login", "username": sim.username,
                                    "password": sim.password}, headers=headers, timeout=30)
    logout = session.post(url, data={"action": "logout"}, headers=headers, timeout=30)
    bad = requests.post(url, data={"action": "login", "username": sim.username,
                                   "password": "nope"}, headers=headers, timeout=30)
    assert (login.status_code, logout.status_code, bad.status_code) == (200, 200, 401)
    for response in (login, logout, bad):
        for header in LIMIT_HEADERS:
            assert header in response.headers, (response.status_code, header)
