"""``gateway_clock_step_sec``: tokens expire after a known number of gateway calls."""

from __future__ import annotations

import requests

from qualys_simulator.testing import SimulatorProcess


def test_each_gateway_call_moves_the_clock_and_expires_tokens_on_it() -> None:
    with SimulatorProcess(hosts=3, seed=2) as sim:
        sim.configure(token_lifetime_sec=1000, gateway_clock_step_sec=300)
        token = requests.post(sim.url + "/auth", data={
            "username": sim.username, "password": sim.password, "token": "true"}, timeout=30).text
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        statuses = [requests.post(sim.url + "/rest/2.0/count/am/asset", headers=headers,
                                  json={}, timeout=30).status_code for _ in range(4)]
        # 300, 600, 900 s after issue: valid; 1200 s: past the 1000 s lifetime.
        assert statuses == [200, 200, 200, 401], statuses
