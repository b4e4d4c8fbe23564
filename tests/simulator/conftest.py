from __future__ import annotations

from collections.abc import Iterator

import pytest

from qualys_simulator.testing import SimulatorProcess


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    """A small simulator shared by the read-only tests of one module."""
    with SimulatorProcess(hosts=40, seed=11, detections_per_host=6, kb_size=300, kb_extra=40) as s:
        yield s
