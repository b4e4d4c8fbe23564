"""Clock, advances and ground truth, over HTTP and on the World object itself."""

from __future__ import annotations

import tracemalloc
from datetime import datetime, timezone

from qualys_simulator.testing import SimulatorProcess
from qualys_simulator.world import World, WorldOptions
from tests.simulator.helpers import (
    ALL_STATUSES,
    HL,
    HLD,
    KB,
    TRUTH_FIELDS,
    call,
    detection_records,
    follow,
    xml,
)

FULL_SYNC = {"status": ALL_STATUSES, "show_igs": "1", "truncation_limit": "0",
             **TRUTH_FIELDS}


def test_clock_starts_fixed_and_moves_on_advance() -> None:
    with SimulatorProcess(hosts=20, seed=1) as s:
        assert xml(call(s, HL)).findtext("RESPONSE/DATETIME") == "2026-11-01T00:00:00Z"
        answer = s.advance(3600 * 25)
        assert answer["now"] == "2026-11-02T01:00:00Z"
        assert answer["epoch"] == 1
        assert xml(call(s, HL)).findtext("RESPONSE/DATETIME") == "2026-11-02T01:00:00Z"
        assert s.admin_get("/admin/clock") == {"now": "2026-11-02T01:00:00Z", "epoch": 1}


def test_advance_changes_hosts_detections_and_kb() -> None:
    with SimulatorProcess(hosts=80, seed=6, detections_per_host=6, kb_size=200, kb_extra=20) as s:
        hosts_before = {h["ID"]: h for h in s.ground_truth("hosts")}
        detections_before = {d["UNIQUE_VULN_ID"]: d for d in s.ground_truth("host_detections")}
        kb_before = {q["QID"]: q for q in s.ground_truth("knowledge_base")}
        answer = s.advance(86400, rescan_fraction=0.5, purge=2, new_hosts=3, kb_new=4,
                           kb_modified_fraction=0.1)
        hosts_after = {h["ID"]: h for h in s.ground_truth("hosts")}
        purged = set(answer["purged_host_ids"])
        assert len(purged) == 2
        assert not purged & hosts_after.keys()
        assert len(hosts_after) == len(hosts_before) - 2 + 3
        # Purged hosts vanish from the API too.
        listed = {int(h.text or 0) for h in xml(call(s, HL, {"truncation_limit": "0"}))
                  .iterfind(".//HOST/ID")}
        assert listed == hosts_after.keys()
        rescanned = [i for i in hosts_after if i in hosts_before
                     and hosts_after[i]["LAST_VM_SCANNED_DATE"]
                     != hosts_before[i]["LAST_VM_SCANNED_DATE"]]
        assert 0.3 * len(hosts_before) < len(rescanned) < 0.7 * len(hosts_before)
        detections_after = {d["UNIQUE_VULN_ID"]: d for d in s.ground_truth("host_detections")}
        changed_status = {(detections_before[u]["STATUS"], d["STATUS"])
                          for u, d in detections_after.items()
                          if u in detections_before and detections_before[u]["STATUS"]
                          != d["STATUS"]}
        assert ("Fixed", "Re-Opened") in changed_status
        assert any(new == "Fixed" for _, new in changed_status)
        assert any(u not in detections_before and d["STATUS"] == "New"
                   for u, d in detections_after.items())
        kb_after = {q["QID"]: q for q in s.ground_truth("knowledge_base")}
        assert len(kb_after) == len(kb_before) + 4
        modified = [q for q in kb_before if kb_after[q]["LAST_SERVICE_MODIFICATION_DATETIME"]
                    != kb_before[q]["LAST_SERVICE_MODIFICATION_DATETIME"]]
        assert modified
        assert all(kb_after[q]["LAST_SERVICE_MODIFICATION_DATETIME"] >= "2026-11-01"
                   for q in modified)


def test_ground_truth_equals_a_full_sync_after_advances() -> None:
    with SimulatorProcess(hosts=50, seed=8, detections_per_host=5, kb_size=150, kb_extra=10) as s:
        for _ in range(3):
            s.advance(86400)
        assert detection_records(follow(s, HLD, {**FULL_SYNC, "truncation_limit": "7"})) == \
            s.ground_truth("host_detections")
        kb = xml(call(s, KB))
        assert [int(q.text or 0) for q in kb.iterfind(".//VULN/QID")] == \
            [q["QID"] for q in s.ground_truth("knowledge_base")]
        hosts = xml(call(s, HL, {"truncation_limit": "0", "show_asset_id": "1"}))
        truth = s.ground_truth("hosts")
        listed = [{"ID": int(h.findtext("ID") or 0), "ASSET_ID": int(h.findtext("ASSET_ID") or 0),
                   "OS": (h.findtext("OS") or "").strip(),
                   "LAST_VM_SCANNED_DATE": h.findtext("LAST_VM_SCANNED_DATE")}
                  for h in hosts.iterfind(".//HOST")]
        assert listed == [{k: h[k] for k in ("ID", "ASSET_ID", "OS", "LAST_VM_SCANNED_DATE")}
                          for h in truth]


def test_ground_truth_summary_is_deterministic_per_seed() -> None:
    def summary(seed: int) -> dict[str, dict[str, object]]:
        with SimulatorProcess(hosts=30, seed=seed, kb_size=100, kb_extra=10) as s:
            s.advance(86400)
            streams = s.ground_truth()["streams"]
            assert streams["hosts"]["count"] == len(s.ground_truth("hosts"))
            return {k: streams[k] for k in ("hosts", "host_detections", "knowledge_base")}

    first = summary(3)
    assert first == summary(3)
    assert first["hosts"]["checksum"] != summary(4)["hosts"]["checksum"]


def test_world_is_lazy_and_deterministic() -> None:
    world = World(WorldOptions(hosts=100_000, seed=5, detections_per_host=50))
    world.advance(86400)
    ids = world.host_ids()
    assert len(ids) == 100_000 - 500 + 1000
    assert ids == sorted(ids)
    tracemalloc.start()
    host = world.host(ids[77_777])
    assert host is not None
    assert host.id == ids[77_777]
    detections = world.detections(host)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # One host and its detections, nothing per subscription: state is derived, not stored.
    assert peak < 2 * 1024 * 1024
    assert detections == world.detections(world.host_at(host.index))
    assert world.host(ids[0] + 1) is None  # ids are sparse, like real host ids
    assert world.clock.now() == datetime(2026, 11, 2, tzinfo=timezone.utc)


def test_on_advance_hooks_and_ground_truth_registry() -> None:
    world = World(WorldOptions(hosts=10, seed=1))
    seen = []
    world.on_advance(lambda w, epoch: seen.append((w.epoch, epoch.number)))
    world.register_ground_truth("custom", lambda: [{"ID": 1}])
    world.advance(60)
    assert seen == [(1, 1)]
    assert world.ground_truth_summary()["custom"]["count"] == 1
    assert "custom" in world.ground_truth_streams()
