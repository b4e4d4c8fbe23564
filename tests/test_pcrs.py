"""The PCRS streams against the simulator: policies -> host ids -> posture, complete and exact."""

from __future__ import annotations

import copy
import gzip
import json
import logging
import re
import sqlite3
import typing as t
from datetime import datetime, timedelta

import pytest

from qualys_simulator.testing import SimulatorProcess
from tap_qualys.client import (
    GUNZIP_MAX_RATIO,
    GUNZIP_MIN_LIMIT,
    decode_gateway_body,
    gunzip_bounded,
)
from tap_qualys.emit import RecordSpool
from tap_qualys.errors import QualysAPIError
from tap_qualys.naming import snake_case
from tap_qualys.purges import decode_ids
from tap_qualys.retries import FailedAttempt, Kind, classify_gateway_response
from tap_qualys.streams.pcrs import (
    CONTROLS_VIEW_SQL,
    POSTURES_BODY,
    PcrsPoliciesStream,
    PcrsPolicyHostIdsStream,
    PcrsPostureInfoStream,
    read_host_ids,
    read_postures,
)
from tap_qualys.tap import TapQualys
from tests.gateway_support import PCRS_STREAMS, gateway_config, inject, keyed, merged, run_tap

POSTURE_DATES = (
    "first_fail_date",
    "last_fail_date",
    "first_pass_date",
    "last_pass_date",
    "posture_modified_date",
    "last_evaluated_date",
    "created",
    "compliance_last_scan_date",
    "agent_last_detected_date",
    "scanner_last_detected_date",
)


@pytest.fixture(scope="module")
def world() -> t.Iterator[SimulatorProcess]:
    """This module's simulator (its clock is moved): 30 hosts, 8 policies (2 inactive)."""
    with SimulatorProcess(hosts=30, seed=7) as sim:
        yield sim


def assert_matches_truth(records: dict[str, list[dict[str, t.Any]]], sim: SimulatorProcess) -> None:
    """Every ground-truth record of the three streams once, with its values, and no extras.

    The ground truth has Qualys' keys; the records' top-level keys are snake_case (``naming``).
    """
    for stream, keys in (
        ("pcrs_policies", ("id",)),
        ("pcrs_policy_host_ids", ("policyId", "hostId")),
        ("pcrs_posture_info", ("id",)),
    ):
        got = keyed(records.get(stream, []), *(snake_case(key) for key in keys))
        want = keyed(sim.ground_truth(stream), *keys)
        assert got.keys() == want.keys(), stream
        for key, expected in want.items():
            loaded = {field: got[key][snake_case(field)] for field in expected}
            assert loaded == expected, (stream, key)


def test_full_sync_matches_ground_truth(world: SimulatorProcess) -> None:
    config = gateway_config(world, pcrs_batch_size=4, pcrs_max_concurrency=3)
    world.reset_stats()
    records, _ = run_tap(config, PCRS_STREAMS)
    assert_matches_truth(records, world)
    policies = records["pcrs_policies"]
    inactive = {p["id"] for p in policies if p["status"] == "inactive"}
    assert inactive  # emitted, but without children
    assert not inactive & {h["policy_id"] for h in records["pcrs_policy_host_ids"]}
    assert all(isinstance(h["host_id"], int) for h in records["pcrs_policy_host_ids"])
    assert {p["subscription_id"] for p in policies} == {6184390}
    # One postureInfo call per batch of 4 hosts of each active policy, at most 3 at a time.
    per_policy: dict[int, int] = {}
    for host in records["pcrs_policy_host_ids"]:
        per_policy[host["policy_id"]] = per_policy.get(host["policy_id"], 0) + 1
    stats = world.stats()
    assert stats["requests"]["pcrs_posture_info"] == sum(-(-n // 4) for n in per_policy.values())
    assert 1 < stats["peak_concurrency"]["pcrs_posture_info"] <= 3
    assert stats["requests"]["auth"] == 1


def test_posture_calls_are_paced_by_the_rate_headers(caplog: pytest.LogCaptureFixture) -> None:
    """Few gateway calls left: parallel postureInfo workers slow down together, and the sync is
    complete."""
    with SimulatorProcess(hosts=20, seed=11, gateway_rate_limit=8, gateway_rate_window=2) as sim:
        config = gateway_config(sim, pcrs_batch_size=4, pcrs_max_concurrency=3)
        with caplog.at_level(logging.INFO):
            records, _ = run_tap(config, PCRS_STREAMS)
        assert_matches_truth(records, sim)
        stats = sim.stats()
    assert stats["requests"]["pcrs_posture_info"] > 8  # more calls than one window allows
    assert "pcrs_posture_info: pacing" in caplog.text


def test_posture_records_are_typed(world: SimulatorProcess) -> None:
    postures = run_tap(gateway_config(world), PCRS_STREAMS)[0]["pcrs_posture_info"]
    never_failed = [p for p in postures if p["status"] == "Passed" and p["first_fail_date"] is None]
    assert never_failed  # PCRS' "" for a date that never happened is null
    for posture in postures:
        for field in POSTURE_DATES:
            assert posture[field] is None or posture[field].endswith("Z"), field
        for field in ("id", "policy_id", "host_id", "control_id", "technology_id"):
            assert isinstance(posture[field], int), field
        assert posture["control_statement"]
        assert posture["remediation"]
        assert posture["technology"]["name"]
        assert posture["evidence"] is None  # pcrs_evidence_required is off by default


def test_evidence_on_request(world: SimulatorProcess) -> None:
    config = gateway_config(world, pcrs_evidence_required=True)
    postures = run_tap(config, PCRS_STREAMS)[0]["pcrs_posture_info"]
    assert postures
    for posture in postures:
        evidence = posture["evidence"]
        assert evidence["evaluationDate"].endswith("Z")
        assert evidence["systemEvidence"][0]["status"] == posture["status"]


@pytest.mark.parametrize(("compression", "header"), [(True, False), (True, True), (False, False)])
def test_gzip_with_and_without_content_encoding(
    world: SimulatorProcess, compression: bool, header: bool
) -> None:
    world.configure(pcrs_gzip_header=header)
    try:
        config = gateway_config(world, pcrs_compression_required=compression)
        records, _ = run_tap(config, PCRS_STREAMS)
    finally:
        world.configure(pcrs_gzip_header=False)
    assert_matches_truth(records, world)


def test_incremental_after_reevaluation(world: SimulatorProcess) -> None:
    config = gateway_config(world, pcrs_batch_size=6)
    first, states = run_tap(config, PCRS_STREAMS)
    assert states[-1]["bookmarks"]["pcrs_policies"]["replication_key_value"]
    world.advance(86400)
    second, _ = run_tap(config, PCRS_STREAMS, state=states[-1])
    # Only re-evaluated policies, hosts and their postures come again.
    assert 0 < len(second["pcrs_posture_info"]) < len(first["pcrs_posture_info"])
    assert 0 < len(second["pcrs_policies"]) <= len(first["pcrs_policies"])
    union = {
        "pcrs_policies": list(
            merged(first["pcrs_policies"], second["pcrs_policies"], keys=("id",)).values()
        ),
        "pcrs_policy_host_ids": live(
            merged(
                first["pcrs_policy_host_ids"],
                second.get("pcrs_policy_host_ids", []),
                keys=("policy_id", "host_id"),
            ).values()
        ),
        "pcrs_posture_info": list(
            merged(first["pcrs_posture_info"], second["pcrs_posture_info"], keys=("id",)).values()
        ),
    }
    # Postures of a host that left its policy are not tombstoned (their key is the posture id):
    # a consumer keeps those of the live memberships.
    members = {(h["policy_id"], h["host_id"]) for h in union["pcrs_policy_host_ids"]}
    union["pcrs_posture_info"] = [
        p for p in union["pcrs_posture_info"] if (p["policy_id"], p["host_id"]) in members
    ]
    assert_matches_truth(union, world)


def live(rows: t.Iterable[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """The rows a soft-deleting target shows as live."""
    return [row for row in rows if not row.get("_sdc_deleted_at")]


def removed_truth(sim: SimulatorProcess) -> set[tuple[int, int]]:
    """Every (policy, host) membership the simulator ended so far."""
    return {(r["policyId"], r["hostId"]) for r in sim.ground_truth("pcrs_policy_host_ids_removed")}


def tombstones(records: dict[str, list[dict[str, t.Any]]]) -> list[dict[str, t.Any]]:
    """The tombstones of a run's pcrs_policy_host_ids."""
    return [r for r in records.get("pcrs_policy_host_ids", []) if r.get("_sdc_deleted_at")]


def test_hosts_that_left_a_policy_become_tombstones(world: SimulatorProcess) -> None:
    config = gateway_config(world)
    first, states = run_tap(config, PCRS_STREAMS)
    assert not tombstones(first)  # the first run only records each policy's hosts
    kept = states[-1]["bookmarks"]["pcrs_policy_host_ids"]["policy_members"]
    active = {p["id"] for p in first["pcrs_policies"] if p["status"] == "active"}
    assert set(kept) == {str(p) for p in active}
    before = removed_truth(world)
    world.advance(86400)
    (victim,) = world.purge([first["pcrs_policy_host_ids"][0]["host_id"]])
    ended = removed_truth(world) - before
    assert {pair for pair in ended if pair[1] != victim}  # some left while their host lives
    second, states = run_tap(config, PCRS_STREAMS, state=states[-1])
    dead = tombstones(second)
    assert all(set(r) == {"policy_id", "host_id", "_sdc_deleted_at"} for r in dead)
    assert {(r["policy_id"], r["host_id"]) for r in dead} == ended
    assert len(dead) == len(ended)
    # A third run with nothing changed has nothing to delete.
    third, _ = run_tap(config, PCRS_STREAMS, state=states[-1])
    assert not tombstones(third)


def test_pcrs_window_overlaps_the_previous_one(
    world: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, dict[str, t.Any]]] = []
    real = PcrsPoliciesStream.gateway_call

    def spy(self: t.Any, path: str, parse: t.Any, **kwargs: t.Any) -> t.Any:
        sent.append((path, dict(kwargs.get("params") or {})))
        return real(self, path, parse, **kwargs)

    monkeypatch.setattr(PcrsPoliciesStream, "gateway_call", spy)
    monkeypatch.setattr(PcrsPolicyHostIdsStream, "gateway_call", spy)
    # The newest evaluation as the bookmark: its policy is listed again within the overlap.
    newest = max(p["lastEvaluatedDate"] for p in world.ground_truth("pcrs_policies"))
    moment = datetime.fromisoformat(newest.replace("Z", "+00:00")).replace(microsecond=0)
    bookmark = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    overlapped = (moment - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")
    state = {
        "bookmarks": {
            "pcrs_policies": {
                "replication_key": "lastEvaluatedDate",
                "replication_key_value": bookmark,
            }
        }
    }
    run_tap(gateway_config(world), PCRS_STREAMS, state=copy.deepcopy(state))
    # The removed-host sweep asks for each policy's full host list: no date at all.
    sweeps = [p for _, p in sent if set(p) == {"policyId"}]
    assert sweeps
    windows = {p.get("lastEvaluationDate") or p.get("lastScanDate") for _, p in sent} - {None}
    assert windows == {overlapped}  # 24 hours before the bookmark
    assert any(path == PcrsPolicyHostIdsStream.path for path, _ in sent)
    assert len(sent) == 1 + 2 * len(sweeps)  # the policy list, then two calls per policy

    sent.clear()
    run_tap(gateway_config(world, pcrs_overlap_hours=0), PCRS_STREAMS, state=state)
    windows = {p.get("lastEvaluationDate") or p.get("lastScanDate") for _, p in sent} - {None}
    assert windows == {bookmark}


def test_postures_alone_still_walk_the_parents(world: SimulatorProcess) -> None:
    records, _ = run_tap(gateway_config(world), ["pcrs_posture_info"])
    assert set(records) == {"pcrs_posture_info"}
    truth = world.ground_truth("pcrs_posture_info")
    assert keyed(records["pcrs_posture_info"], "id").keys() == {(r["id"],) for r in truth}


def test_filtered_host_ids_never_lose_other_hosts_postures(world: SimulatorProcess) -> None:
    config = gateway_config(world)
    full, _ = run_tap(config, PCRS_STREAMS)
    per_policy: dict[int, list[int]] = {}
    for row in full["pcrs_policy_host_ids"]:
        per_policy.setdefault(row["policy_id"], []).append(row["host_id"])
    # Filter out each policy's *last* host: it carried the policy's postures before the fix.
    last_hosts = {hosts[-1] for hosts in per_policy.values()}
    expression = " and ".join(f"host_id != {h}" for h in sorted(last_hosts))
    filtered, _ = run_tap(
        {**config, "stream_maps": {"pcrs_policy_host_ids": {"__filter__": expression}}},
        PCRS_STREAMS,
    )
    expected = {p["id"] for p in full["pcrs_posture_info"] if p["host_id"] not in last_hosts}
    assert expected
    assert {p["id"] for p in filtered.get("pcrs_posture_info", [])} == expected


@pytest.mark.parametrize("fault", ["error_200", "truncated_200", "drop", "http_503"])
def test_transient_posture_failures_are_retried(world: SimulatorProcess, fault: str) -> None:
    world.configure(
        faults={fault: 1.0}, fault_budget={fault: 2}, fault_endpoints=["pcrs_posture_info"]
    )
    world.reset_stats()
    try:
        records, _ = run_tap(gateway_config(world, pcrs_batch_size=8), PCRS_STREAMS)
    finally:
        world.configure(faults={}, fault_budget={}, fault_endpoints=[])
    assert sum(world.stats()["faults"].values()) == 2
    assert_matches_truth(records, world)


def test_unknown_policy_warns_and_yields_nothing(
    world: SimulatorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    tap = TapQualys(config=gateway_config(world))
    stream = t.cast("PcrsPolicyHostIdsStream", tap.streams["pcrs_policy_host_ids"])
    context = {"policy_id": 999, "subscription_id": 6184390, "window": "1970-01-01T00:00:00Z"}
    with caplog.at_level(logging.WARNING):
        assert list(stream.get_records(context)) == []
    assert "policy 999: Qualys answered" in caplog.text
    assert "does not exist" in caplog.text


def test_non_numeric_host_id_is_retried_then_one_line(world: SimulatorProcess) -> None:
    answer = [{"policyId": "1", "subscriptionId": "1", "hostIds": ["123", "12a"]}]
    inject(world, "pcrs_hostids", answer, times=2)
    with pytest.raises(QualysAPIError) as caught:
        run_tap(gateway_config(world, max_retries=1), PCRS_STREAMS)
    message = str(caught.value)
    assert message.startswith("pcrs_policy_host_ids: GET /pcrs/5.0/posture/hostids failed")
    assert "host id '12a' is not a number" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("status", "body", "kind", "text"),
    [
        (
            400,
            b'[{"response":{"datetime":"2026-11-01T00:00:00Z","code":1905,'
            b'"text":"parameter policy_ids has invalid value: x"}}]',
            Kind.FATAL,
            "HTTP 400 CODE 1905: parameter policy_ids has invalid value: x",
        ),
        (404, b'{"message":"Invalid input Parameter."}', Kind.FATAL, "Invalid input Parameter."),
        (
            401,
            b'{"status":401,"error":"Unauthorized","message":"JWT expired"}',
            Kind.FATAL,
            "JWT expired",
        ),
        (503, b"<html><body>Service under maintenance</body></html>", Kind.BACKOFF, "maintenance"),
        (429, b'{"message":"API rate limit exceeded"}', Kind.BACKOFF, "HTTP 429"),
    ],
)
def test_gateway_error_bodies(status: int, body: bytes, kind: Kind, text: str) -> None:
    verdict = classify_gateway_response(status, body, {})
    assert verdict.kind is kind
    assert text in verdict.reason


def test_429_waits_exactly_what_the_gateway_says() -> None:
    for headers in ({"Retry-After": "7"}, {"X-RateLimit-ToWait-Sec": "7"}):
        verdict = classify_gateway_response(429, b"{}", headers)
        assert (verdict.kind, verdict.wait) == (Kind.RATE_LIMIT, 7.0)


def test_controls_view_normalizes_postures(world: SimulatorProcess) -> None:
    """The documented controls query: one row per control and technology, texts filled."""
    postures = run_tap(gateway_config(world), PCRS_STREAMS)[0]["pcrs_posture_info"]
    columns = sorted({key for record in postures for key in record})
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE pcrs_posture_info ({', '.join(columns)})")
    db.executemany(
        f"INSERT INTO pcrs_posture_info VALUES ({', '.join('?' * len(columns))})",
        [
            [
                json.dumps(value) if isinstance(value, (dict, list)) else value
                for value in (record.get(column) for column in columns)
            ]
            for record in postures
        ],
    )
    db.execute(CONTROLS_VIEW_SQL)
    rows = db.execute(
        "SELECT control_id, technology_id, technology_name, control_statement, remediation, "
        "criticality_label, postures, failed_postures FROM pcrs_posture_controls"
    ).fetchall()
    expected = {(p["control_id"], p["technology_id"]) for p in postures}
    assert {(row[0], row[1]) for row in rows} == expected
    assert sum(row[6] for row in rows) == len(postures)
    assert sum(row[7] for row in rows) == sum(p["status"] == "Failed" for p in postures)
    assert all(row[2] and row[3] and row[4] and row[5] for row in rows)


def test_refused_parameters_fail_with_qualys_text(world: SimulatorProcess) -> None:
    """400 with a Qualys code and 404 for a bad flag are not retried, and say what was wrong."""
    tap = TapQualys(config=gateway_config(world))
    stream = t.cast("PcrsPolicyHostIdsStream", tap.streams["pcrs_policy_host_ids"])
    world.reset_stats()
    with pytest.raises(QualysAPIError) as bad_id:
        stream.gateway_call(stream.path, read_host_ids, method="GET", params={"policyId": "x1"})
    assert str(bad_id.value) == (
        "pcrs_policy_host_ids: GET /pcrs/5.0/posture/hostids failed: "
        "HTTP 400 CODE 1905: parameter policy_ids has invalid value: x1"
    )
    postures = t.cast("PcrsPostureInfoStream", tap.streams["pcrs_posture_info"])
    with pytest.raises(QualysAPIError, match=r"HTTP 404: Invalid input Parameter\.$"):
        postures.gateway_call(postures.path, read_postures, params={"evidenceRequired": 2}, body=[])
    assert world.stats()["requests"]["pcrs_hostids"] == 1  # fatal: asked once


def test_every_gateway_stream_through_a_fault_storm() -> None:
    """Every fault at once on every gateway data endpoint: the result is still exact."""
    storm = {
        "http_503": 0.06,
        "conflict_1965": 0.1,  # the gateway answers these as 429 with Retry-After
        "drop": 0.06,
        "error_200": 0.06,
        "truncated_200": 0.06,
        "slow_first_byte": 0.06,
    }
    endpoints = ["csam_search", "pcrs_policy_list", "pcrs_hostids", "pcrs_posture_info"]
    with SimulatorProcess(hosts=40, seed=3) as sim:
        sim.configure(
            faults=storm,
            fault_endpoints=endpoints,
            fault_budget={"conflict_1965": 2},
            slow_first_byte_sec=0.2,
        )
        config = gateway_config(sim, csam_page_size=5, pcrs_batch_size=4)
        records, _ = run_tap(config, ["csam_assets", *PCRS_STREAMS])
        injected = sim.stats()["faults"]
        assert_matches_truth(records, sim)
        assert keyed(records["csam_assets"], "asset_id").keys() == {
            (a["assetId"],) for a in sim.ground_truth("csam_assets")
        }
    assert {"drop", "error_200", "http_503", "slow_first_byte"} <= set(injected), injected
    assert sum(injected.values()) >= 10, injected


def test_gunzip_bounded_reads_every_member_and_refuses_bombs() -> None:
    """postureInfo's gzip (§11) decoded with a cap: a bomb is refused before it is in memory."""
    posture = json.dumps([{"id": n, "status": "Passed", "evidence": "x" * 200} for n in range(500)])
    packed = gzip.compress(posture.encode())
    assert 20 < len(posture) / len(packed) < GUNZIP_MAX_RATIO  # repetitive, like real evidence
    assert decode_gateway_body(packed) == json.loads(posture)
    # Two gzip members one after the other decode as one body, as gzip.decompress does.
    assert gunzip_bounded(gzip.compress(b"[1,") + gzip.compress(b"2]")) == b"[1,2]"
    with pytest.raises(ValueError, match="ends before its last block"):
        gunzip_bounded(packed[: len(packed) // 2])
    bomb = gzip.compress(b" " * (GUNZIP_MIN_LIMIT + 2**20) + b"[]", compresslevel=9)
    with pytest.raises(ValueError, match="decompression bomb"):
        gunzip_bounded(bomb)


def test_posture_array_cut_short_mid_element_is_retried_whole(world: SimulatorProcess) -> None:
    """A batch's answer that stops inside its second posture emits none of it: the first,
    complete posture (an id Qualys never had) would be an extra record if it went out."""
    cut = b'[{"id": 424242, "policyId": 1, "hostId": 1, "status": "Passed"}, {"id": 4243'
    inject(world, "pcrs_posture_info", cut, times=1)
    records, _ = run_tap(gateway_config(world, pcrs_batch_size=8), PCRS_STREAMS)
    assert_matches_truth(records, world)
    # One batch at a time: both cut answers go to the same batch, its one retry included.
    inject(world, "pcrs_posture_info", cut, times=2)
    config = gateway_config(world, pcrs_batch_size=8, pcrs_max_concurrency=1, max_retries=1)
    with pytest.raises(QualysAPIError, match=r"invalid JSON from the gateway .*truncated"):
        run_tap(config, PCRS_STREAMS)


def spooled_postures(body: bytes) -> RecordSpool:
    """``body`` read as postureInfo's answer is read: decoded as POSTURES_BODY, then spooled."""
    return read_postures(decode_gateway_body(gzip.compress(body), POSTURES_BODY))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'[{"id": 1}, {"id": "\xff"}]', "item 1: Invalid UTF-8"),
        (b'[{"id": 1}, {"id": 1e999}]', "item 1: Number out of range"),
        (b'[{"id": 1}, 7]', "item 1: Expected `object`, got `int`"),
        (b'[{"response": {"code": 1999, "text": "try later"}}]', "error 1999: try later"),
        (b'{"response": {"code": 1999, "text": "try later"}}', "error 1999: try later"),
        (b'{"postures": []}', "not a JSON array"),
    ],
)
def test_a_batch_with_one_bad_posture_is_retried_whole(body: bytes, says: str) -> None:
    """What the decoder left undecoded is checked before the batch is handed over, so a bad
    element late in a batch never fails the sync after its first postures were emitted."""
    with pytest.raises(FailedAttempt, match=re.escape(says)) as caught:
        spooled_postures(body)
    assert caught.value.verdict.kind is Kind.BACKOFF


def test_posture_batches_wait_on_disk_not_in_memory() -> None:
    """A big batch is spooled as JSON, beyond POSTURE_SPOOL_MEMORY_BYTES in a temporary file;
    the postures come back exactly, in order."""
    postures = [
        {"id": n, "status": "Passed", "controlStatement": f"control {n} " * 20, "big": 2**70}
        for n in range(20_000)
    ]
    spool = spooled_postures(json.dumps(postures, indent=1).encode())
    assert spool.count == len(postures)
    assert spool._file._rolled  # type: ignore[attr-defined]  # past the memory bound: on disk
    assert list(spool) == postures


OFFLINE_CONFIG = {
    "username": "u",
    "password": "p",
    "api_server": "http://127.0.0.1:9",
    "gateway_url": "http://127.0.0.1:9",
}


def sweep_stream(
    monkeypatch: pytest.MonkeyPatch, answers: list[t.Any], **config: t.Any
) -> PcrsPolicyHostIdsStream:
    """The host-id stream, its full-list calls answered from ``answers`` in order (no HTTP)."""
    tap = TapQualys(config={**OFFLINE_CONFIG, **config})
    stream = t.cast("PcrsPolicyHostIdsStream", tap.streams["pcrs_policy_host_ids"])

    def answer(_self: t.Any, _path: str, parse: t.Any, **kwargs: t.Any) -> t.Any:
        assert kwargs["params"] == {"policyId": 7}  # the full list: no lastScanDate
        item = answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return parse(item)

    monkeypatch.setattr(PcrsPolicyHostIdsStream, "gateway_call", answer)
    return stream


def hostids(*ids: int, policy: str = "7", **extra: t.Any) -> list[dict[str, t.Any]]:
    return [{"policyId": policy, "subscriptionId": "1", "hostIds": [str(i) for i in ids], **extra}]


def test_member_sweep_records_then_tombstones_the_hosts_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = sweep_stream(monkeypatch, [hostids(*range(100, 110)), hostids(*range(100, 108), 120)])
    assert list(stream.member_sweep(7)) == []  # the first run only records
    kept = stream.stream_state["policy_members"]["7"]
    assert (kept["count"], decode_ids(kept["ids"])) == (10, list(range(100, 110)))
    gone = list(stream.member_sweep(7))
    assert [(r["policy_id"], r["host_id"]) for r in gone] == [(7, 108), (7, 109)]
    assert all(set(r) == {"policy_id", "host_id", "_sdc_deleted_at"} for r in gone)
    assert all(r["_sdc_deleted_at"].endswith("Z") for r in gone)
    kept = stream.stream_state["policy_members"]["7"]
    assert decode_ids(kept["ids"]) == [*range(100, 108), 120]


@pytest.mark.parametrize(
    ("answer", "logged"),
    [
        (hostids(100, error="Policy ID 7 does not exist or is not accessible."), "does not exist"),
        (hostids(100, policy="8"), "for policy '8'"),
        (QualysAPIError("pcrs_policy_host_ids: GET failed: HTTP 503"), "HTTP 503"),
        (hostids(), "more than purge_sweep_max_fraction"),  # an empty list where there were 10
    ],
)
def test_member_sweep_fails_closed(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    answer: t.Any,
    logged: str,
) -> None:
    stream = sweep_stream(monkeypatch, [hostids(*range(100, 110)), answer])
    list(stream.member_sweep(7))
    before = copy.deepcopy(stream.stream_state["policy_members"])
    with caplog.at_level(logging.WARNING):
        assert list(stream.member_sweep(7)) == []
    assert stream.stream_state["policy_members"] == before  # the previous list is kept
    assert logged in caplog.text


def test_member_sweep_guard_yields_to_a_raised_fraction(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = sweep_stream(
        monkeypatch, [hostids(*range(100, 110)), hostids()], purge_sweep_max_fraction=1
    )
    list(stream.member_sweep(7))
    assert len(list(stream.member_sweep(7))) == 10


def test_member_sweep_off_makes_no_call(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = sweep_stream(monkeypatch, [], purge_sweep=False)
    assert list(stream.member_sweep(7)) == []
    assert "policy_members" not in stream.stream_state
