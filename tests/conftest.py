"""Shared fixtures: a simulator per test session and a tap config pointing at it."""

from __future__ import annotations

import atexit
import functools
import typing as t

import pytest

from qualys_simulator.testing import SimulatorProcess

#: The simulator most tests share: small, with the default limits (2 parallel calls).
SHARED_SIMULATOR_OPTIONS: dict[str, t.Any] = {"hosts": 30, "seed": 7}


@functools.cache
def shared_simulator() -> SimulatorProcess:
    """Start the shared simulator once per process.

    A function rather than only a fixture: the SDK's generated test class needs its config when
    the test module is imported, before any fixture runs.
    """
    sim = SimulatorProcess(**SHARED_SIMULATOR_OPTIONS).start()
    atexit.register(sim.stop)
    return sim


def tap_config(sim: SimulatorProcess, **overrides: t.Any) -> dict[str, t.Any]:
    """A tap config for ``sim``: both APIs on the simulator, fast retries for tests."""
    return {
        "username": sim.username,
        "password": sim.password,
        "api_server": sim.url,
        "gateway_url": sim.url,
        "retry_backoff_seconds": 0.05,
        **overrides,
    }


@pytest.fixture(scope="session")
def sim() -> SimulatorProcess:
    """The shared simulator. Tests that change its state or faults should use their own."""
    return shared_simulator()
