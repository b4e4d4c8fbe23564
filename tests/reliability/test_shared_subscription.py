"""Scenario 2: another tool holds one of the subscription's parallel-call slots the whole time.

Qualys allows 2 parallel calls per API here and another client keeps one busy on every VM API.
The tap may run into the limit once (it cannot know before Qualys tells it), but never again:
it must adapt to the one slot left, and still load everything.
"""

from __future__ import annotations

from pathlib import Path

from tests.reliability.harness import SMALL_WORLD, VM_STREAMS, Pipeline, simulator

VM_ENDPOINTS = ("knowledge_base", "host_list", "host_detection")


def test_a_slot_held_by_another_client_costs_at_most_one_409(tmp_path: Path) -> None:
    world = {**SMALL_WORLD, "hosts": 40, "kb_page_size": 10}
    with simulator(**world, concurrency_limit=2) as sim:
        sim.configure(held_slots=dict.fromkeys(VM_ENDPOINTS, 1))
        # Many small detection batches: plenty of chances to collide again after the first.
        pipeline = Pipeline(sim, tmp_path, truncation_limit=5, host_batch_size=3)
        result = pipeline.sync(streams=VM_STREAMS, timeout=300)
        stats = sim.stats()

        pipeline.assert_ground_truth(VM_STREAMS, context=result.describe())
        assert stats["requests"].get("host_detection", 0) >= 10, stats["requests"]
        conflicts = {endpoint: stats["responses"].get(endpoint, {}).get("409/1960", 0)
                     for endpoint in VM_ENDPOINTS}
        assert all(count <= 1 for count in conflicts.values()), (
            f"the tap kept colliding with the other client's call: 409/1960 per API {conflicts}"
            f"\n{result.describe()}")
        # Our calls plus the held slot never exceeded the limit more than that one time.
        assert stats["peak_concurrency"].get("host_detection", 0) <= 2, stats["peak_concurrency"]
