"""Pagers against a hostile server, and detection batches Qualys truncates on its own.

Real processes: the simulator, `tap-qualys | target-sqlite`. A server that pages in place
(`stalled_pager`: no record, yet "more" with a cursor one past the one sent) must end the run
with one clear line after a bounded number of requests, never page forever. A detection batch
answered with a truncation WARNING although the tap asked for `truncation_limit=0` must be
followed to its end, and the target must equal the simulator's ground truth.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qualys_simulator.testing import SimulatorProcess
from tap_qualys.client import MAX_STALLED_PAGES
from tests.reliability.errors import assert_one_clear_line, has_traceback
from tests.reliability.harness import SMALL_WORLD, VM_STREAMS, Pipeline, simulator


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with simulator(**SMALL_WORLD) as running:
        yield running


@pytest.fixture
def stalled(sim: SimulatorProcess) -> Iterator[SimulatorProcess]:
    sim.reset_stats()
    yield sim
    sim.configure(faults={"stalled_pager": 0.0}, fault_endpoints=[])


@pytest.mark.parametrize(("endpoint", "stream"), [
    ("csam_search", "csam_assets"),
    ("host_list", "hosts"),
    ("knowledge_base", "knowledge_base"),
    ("host_detection", "host_detections"),
])
def test_a_pager_that_never_ends_is_stopped(stalled: SimulatorProcess, tmp_path: Path,
                                            endpoint: str, stream: str) -> None:
    stalled.configure(faults={"stalled_pager": 1.0}, fault_endpoints=[endpoint])
    # One detection batch at a time, so that exactly one batch meets the stalled pages.
    result = Pipeline(stalled, tmp_path, max_concurrency=1).run(streams=(stream,), timeout=120)
    line = assert_one_clear_line(result, names=(stream,), says=("pages in a row",))
    assert str(MAX_STALLED_PAGES) in line, line
    assert not has_traceback(result), result.describe()
    stats = stalled.stats()
    # Detection batches: the next batch in the window may already be paging when the first
    # one fails; it is stopped by the same bound.
    bound = MAX_STALLED_PAGES * (2 if stream == "host_detections" else 1)
    assert MAX_STALLED_PAGES <= stats["faults"]["stalled_pager"] <= bound, stats["faults"]
    assert stats["requests"][endpoint] <= bound, stats["requests"]
    assert not result.records(stream), "records from a server that never sent one"
    states = [m["value"] for m in result.tap_messages() if m.get("type") == "STATE"]
    assert not any(s.get("bookmarks", {}).get(stream, {}).get("resume") for s in states), (
        "a resume point past assets the server never sent")


def test_truncated_detection_batches_are_followed(tmp_path: Path) -> None:
    """Qualys truncates detection batches at 3 hosts although the tap asks for no limit."""
    with simulator(**SMALL_WORLD, detection_truncation_limit=3) as sim:
        pipeline = Pipeline(sim, tmp_path)
        result = pipeline.sync(streams=VM_STREAMS)
        pipeline.assert_ground_truth(VM_STREAMS, context=result.describe())
        summary = [line for line in result.log(("INFO",))
                   if line.startswith("host_detections:") and "truncated" in line]
        assert summary, f"no summary of the truncated batches\n{result.describe()}"
        assert "0 truncated" not in summary[-1], summary
