"""The VM streams against the simulator: complete, incremental, and robust to Qualys' failures."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import re
import subprocess
import sys
import time
import typing as t
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib import RecordMessage

from qualys_simulator.testing import SimulatorProcess
from tap_qualys.client import FetchedPage, TruncationPaginator
from tap_qualys.emit import RecordSpool, record_line_parts
from tap_qualys.errors import QualysAPIError
from tap_qualys.streams.vm import HostDetectionsStream, HostsStream
from tap_qualys.tap import TapQualys
from tests.conftest import tap_config
from tests.gateway_support import inject, run_cli

Records = dict[str, list[dict[str, t.Any]]]

HLD_PATH = "/api/5.0/fo/asset/host/vm/detection/"
HOST_LIST_PATH = "/api/5.0/fo/asset/host/"


VM_STREAMS = ("knowledge_base", "hosts", "host_detections")


def vm_tap(
    config: dict[str, t.Any],
    state: dict[str, t.Any] | None = None,
    streams: t.Collection[str] = VM_STREAMS,
) -> TapQualys:
    """The tap with only ``streams`` selected."""
    tap = TapQualys(config=config, state=state or {})
    for name, stream in tap.streams.items():
        stream.selected = name in streams
    return tap


def run_tap(
    config: dict[str, t.Any],
    state: dict[str, t.Any] | None = None,
    streams: t.Collection[str] = VM_STREAMS,
) -> tuple[Records, list[dict]]:
    """Run a sync in-process; return records per stream and the STATE messages."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        vm_tap(config, state, streams).sync_all()
    return parse_messages(out.getvalue())


def parse_messages(output: str) -> tuple[Records, list[dict]]:
    """Records per stream and STATE values from Singer output."""
    records: Records = {}
    states: list[dict] = []
    for line in output.splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            records.setdefault(message["stream"], []).append(message["record"])
        elif message["type"] == "STATE":
            states.append(message["value"])
    return records, states


def keyed(records: t.Iterable[dict[str, t.Any]], *keys: str) -> dict[tuple, dict[str, t.Any]]:
    """Index records by key; fail on duplicates, which a retry must never produce."""
    index: dict[tuple, dict[str, t.Any]] = {}
    for record in records:
        key = tuple(record[k] for k in keys)
        assert key not in index, f"duplicate record {key}"
        index[key] = record
    return index


def assert_matches_truth(emitted: list[dict], truth: list[dict], *keys: str) -> None:
    """Every ground-truth record was emitted once, with the same field values, and no extras."""
    got = keyed(emitted, *keys)
    want = keyed(({k.lower(): v for k, v in r.items()} for r in truth), *keys)
    assert got.keys() == want.keys()
    for key, expected in want.items():
        actual = {field: got[key].get(field) for field in expected}
        assert actual == expected, key


def assert_complete(records: Records, sim: SimulatorProcess) -> None:
    assert_matches_truth(records.get("hosts", []), sim.ground_truth("hosts"), "id")
    assert_matches_truth(
        records.get("host_detections", []),
        sim.ground_truth("host_detections"),
        "host_id",
        "unique_vuln_id",
    )


@pytest.fixture(scope="module")
def world() -> t.Iterator[SimulatorProcess]:
    """A simulator of this module's own, since its clock is moved."""
    with SimulatorProcess(hosts=40, seed=11) as sim:
        yield sim


def test_full_then_incremental_sync(world: SimulatorProcess) -> None:
    config = tap_config(world, host_batch_size=7, hosts_overlap_minutes=0, kb_overlap_days=0)
    first, states = run_tap(config)

    assert_complete(first, world)
    assert_matches_truth(first["knowledge_base"], world.ground_truth("knowledge_base"), "qid")
    statuses = Counter(d["status"] for d in first["host_detections"])
    assert statuses["Fixed"] > 0  # Fixed is fetched by default
    state = states[-1]
    run_start = world.admin_get("/admin/clock")["now"]
    assert state["bookmarks"]["hosts"]["vm_processed_after"] == run_start
    assert state["bookmarks"]["hosts"]["purge_sweep"]["count"] == len(first["hosts"])
    kb_bookmark = state["bookmarks"]["knowledge_base"]["replication_key_value"]

    change = world.advance(86400)
    second, _ = run_tap(config, state)

    hosts_now = {r["ID"]: r for r in world.ground_truth("hosts")}
    rescanned = {
        host_id for host_id, r in hosts_now.items() if r["LAST_VM_SCANNED_DATE"] > run_start
    }
    assert rescanned  # the advance rescanned some hosts
    assert len(rescanned) < len(hosts_now)
    live = [r for r in second["hosts"] if not r["_sdc_deleted_at"]]
    assert {r["id"] for r in live} == rescanned
    assert set(change["purged_host_ids"]).isdisjoint(r["id"] for r in live)
    # The purged hosts come as tombstones (tests/test_purges.py has the details).
    deleted = [r for r in second["hosts"] if r["_sdc_deleted_at"]]
    assert sorted(r["id"] for r in deleted) == change["purged_host_ids"]
    # Each rescanned host comes with all its detections, including the ones just fixed.
    assert_matches_truth(
        second["host_detections"],
        [d for d in world.ground_truth("host_detections") if d["HOST_ID"] in rescanned],
        "host_id",
        "unique_vuln_id",
    )
    newly_fixed = {
        (d["HOST_ID"], d["UNIQUE_VULN_ID"])
        for d in world.ground_truth("host_detections")
        if d["STATUS"] == "Fixed" and (d["LAST_FIXED_DATETIME"] or "") > run_start
    }
    assert newly_fixed
    assert newly_fixed <= {(d["host_id"], d["unique_vuln_id"]) for d in second["host_detections"]}
    # The KnowledgeBase returns only what changed since its bookmark (the bookmark's own
    # second may come again: last_modified_after is inclusive on some servers).
    changed = {
        r["QID"]
        for r in world.ground_truth("knowledge_base")
        if r["LAST_SERVICE_MODIFICATION_DATETIME"] > kb_bookmark
    }
    at_bookmark = {
        r["QID"]
        for r in world.ground_truth("knowledge_base")
        if r["LAST_SERVICE_MODIFICATION_DATETIME"] == kb_bookmark
    }
    got = {r["qid"] for r in second["knowledge_base"]}
    assert changed <= got <= changed | at_bookmark
    assert len(got - {r["qid"] for r in first["knowledge_base"]}) == change["new_qids"]


def test_bookmark_moves_only_after_every_detection_batch(world: SimulatorProcess) -> None:
    # More faults than one batch's retries: an error document that keeps coming is fatal.
    config = tap_config(world, host_batch_size=5, max_retries=1)
    world.configure(fault_budget={"error_200": 20}, fault_endpoints=["host_detection"])
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(Exception, match="CODE 999"):
            vm_tap(config, streams=("hosts", "host_detections")).sync_all()
    finally:
        world.configure(faults={"error_200": 0}, fault_endpoints=[])
    records, states = parse_messages(out.getvalue())
    assert records["hosts"]  # the hosts were emitted before the failure ...
    assert all("vm_processed_after" not in s.get("bookmarks", {}).get("hosts", {}) for s in states)


@pytest.fixture
def fresh() -> t.Iterator[SimulatorProcess]:
    """A small simulator per test, for fault and limit scenarios."""
    with SimulatorProcess(hosts=25, seed=5, kb_size=200, kb_extra=20) as sim:
        yield sim


HOSTS = ("hosts", "host_detections")


def test_concurrency_and_rate_409s_are_waited_out(fresh: SimulatorProcess) -> None:
    fresh.configure(
        fault_budget={"conflict_1960": 2, "conflict_1965": 1}, fault_endpoints=["host_detection"]
    )
    started = time.monotonic()
    records, _ = run_tap(tap_config(fresh, host_batch_size=5), streams=HOSTS)
    assert_complete(records, fresh)
    stats = fresh.stats()
    assert stats["faults"] == {"conflict_1960": 2, "conflict_1965": 1}
    assert stats["towait"].get("violated", 0) == 0
    assert stats["towait"].get("honoured", 0) >= 1
    assert time.monotonic() - started >= 5  # the simulator's ToWait for an injected 1965


def test_another_tool_holding_a_slot_costs_at_most_one_409(fresh: SimulatorProcess) -> None:
    fresh.configure(held_slots={"host_detection": 1})
    records, _ = run_tap(tap_config(fresh, host_batch_size=3), streams=HOSTS)
    assert_complete(records, fresh)
    responses = fresh.stats()["responses"]["host_detection"]
    assert responses.get("409/1960", 0) <= 1


def test_dropped_and_truncated_bodies_are_refetched_without_duplicates(
    fresh: SimulatorProcess,
) -> None:
    fresh.configure(
        fault_budget={"drop": 2, "truncated_200": 2},
        fault_endpoints=["host_detection", "host_list"],
    )
    records, _ = run_tap(tap_config(fresh, host_batch_size=4, truncation_limit=10), streams=HOSTS)
    assert fresh.stats()["faults"] == {"drop": 2, "truncated_200": 2}
    assert_complete(records, fresh)  # keyed() fails on any duplicate


def test_detection_batches_use_every_allowed_slot(fresh: SimulatorProcess) -> None:
    # The simulator sleeps per host it writes (a slow Qualys), so batches overlap only if the
    # tap really runs them in parallel. The speedup itself is measured by `python -m benchmarks`.
    fresh.configure(record_delay_sec=0.05)
    config = tap_config(fresh, host_batch_size=2)
    for slots in (1, 2):
        fresh.reset_stats()
        fresh.configure(concurrency_limit={"host_detection": slots})
        records, _ = run_tap(config, streams=HOSTS)
        assert_complete(records, fresh)
        stats = fresh.stats()
        assert stats["peak_concurrency"]["host_detection"] == slots
        assert stats["responses"].get("host_detection", {}).get("409", 0) == 0, stats


def test_a_probe_learns_the_limit_so_the_first_batches_already_run_in_parallel(
    fresh: SimulatorProcess,
) -> None:
    # Four batches, four slots. Without the probe the limit is 1 until the first batch answers,
    # the window of batches in flight is sized from that, and the first round runs 3 at most.
    fresh.configure(record_delay_sec=0.05, concurrency_limit={"host_detection": 4})
    fresh.reset_stats()
    records, _ = run_tap(tap_config(fresh, host_batch_size=7), streams=HOSTS)
    assert_complete(records, fresh)
    stats = fresh.stats()
    assert stats["peak_concurrency"]["host_detection"] == 4, stats["peak_concurrency"]
    assert stats["requests"]["host_detection"] == 1 + 4  # the probe, then the batches
    assert stats["responses"].get("host_detection", {}).get("409", 0) == 0, stats


def test_simple_return_on_200_fails_in_one_line_without_secrets(
    fresh: SimulatorProcess, tmp_path: t.Any
) -> None:
    fresh.configure(fault_budget={"error_200": 20}, fault_endpoints=["host_detection"])
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(tap_config(fresh, max_retries=1)))
    catalog = vm_tap(tap_config(fresh), streams=HOSTS).catalog_dict
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tap_qualys",
            "--config",
            str(config_file),
            "--catalog",
            str(tmp_path / "catalog.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    expected = (
        f"host_detections: {HLD_PATH} failed after 2 attempts: HTTP 200 CODE 999: "
        "Internal error. Please contact customer support."
    )
    assert expected in result.stderr
    assert fresh.password not in result.stderr + result.stdout
    assert "Authorization" not in result.stderr
    # Nothing of the failed batch reached stdout.
    assert '"stream": "host_detections", "record"' not in result.stdout


def test_malformed_xml_is_not_emitted(fresh: SimulatorProcess) -> None:
    fresh.configure(fault_budget={"malformed_xml": 1}, fault_endpoints=["host_detection"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(Exception, match="host_detections"):
        vm_tap(tap_config(fresh, host_batch_size=100), streams=HOSTS).sync_all()
    assert '"host_detections"' not in "".join(
        line for line in out.getvalue().splitlines() if '"RECORD"' in line
    )


def test_second_run_without_changes_fetches_no_hosts(fresh: SimulatorProcess) -> None:
    config = tap_config(fresh, hosts_overlap_minutes=0)
    first, states = run_tap(config, streams=HOSTS)
    assert len(first["hosts"]) == 25
    fresh.reset_stats()
    second, second_states = run_tap(config, states[-1], streams=HOSTS)
    assert "hosts" not in second
    assert "host_detections" not in second
    assert fresh.stats()["requests"].get("host_detection", 0) == 0
    assert second_states[-1]["bookmarks"]["hosts"] == states[-1]["bookmarks"]["hosts"]


def host_ids(sim: SimulatorProcess) -> list[int]:
    return sorted(h["ID"] for h in sim.ground_truth("hosts"))


@pytest.mark.parametrize(
    ("case", "keep"),
    [
        # The 5th host closes the first batch of 5: before the fix, that batch was dropped.
        ("batch boundary", lambda ids: [i for i in ids if i != ids[4]]),
        # The last host flushes the final batch: filtered, the final batch was dropped.
        ("last host", lambda ids: ids[:-1]),
        # Every host after the 7th filtered: the final partial batch has to flush anyway.
        ("tail filtered", lambda ids: ids[:7]),
        ("first host", lambda ids: ids[1:]),
        ("one host kept", lambda ids: ids[9:10]),
    ],
)
def test_filtered_hosts_never_lose_other_hosts_detections(
    world: SimulatorProcess, case: str, keep: t.Callable[[list[int]], list[int]]
) -> None:
    """Reviewer's case: batches of 5, a __filter__ on hosts."""
    ids = host_ids(world)
    kept = keep(ids)
    dropped = sorted(set(ids) - set(kept))
    expression = " and ".join(f"id != {i}" for i in dropped)
    config = tap_config(world, host_batch_size=5, stream_maps={"hosts": {"__filter__": expression}})
    records, states = run_tap(config, streams=HOSTS)
    assert sorted(h["id"] for h in records["hosts"]) == kept, case
    # A filtered host's detections are not wanted; every other host's are all there.
    wanted = [d for d in world.ground_truth("host_detections") if d["HOST_ID"] in kept]
    assert_matches_truth(records.get("host_detections", []), wanted, "host_id", "unique_vuln_id")
    assert states[-1]["bookmarks"]["hosts"]["vm_processed_after"]


def first_call_params(config: dict[str, t.Any], name: str) -> dict[str, t.Any]:
    """The parameters VM stream ``name`` sends on its first call."""
    stream = t.cast("HostsStream | HostDetectionsStream", vm_tap(config).streams[name])
    return stream.qualys_params(None)


def test_detections_include_ignored_and_disabled_by_default(world: SimulatorProcess) -> None:
    params = first_call_params(tap_config(world), "host_detections")
    assert params["include_ignored"] == 1
    assert params["include_disabled"] == 1
    off = tap_config(world, include_ignored=False, include_disabled=False)
    params = first_call_params(off, "host_detections")
    assert params["include_ignored"] == 0
    assert params["include_disabled"] == 0
    # The simulator (like Qualys) accepts both: a sync with them sent is complete.
    world.reset_stats()
    records, _ = run_tap(tap_config(world, host_batch_size=7), streams=HOSTS)
    assert_complete(records, world)
    assert not [k for k in world.stats()["responses"].get("host_detection", {}) if k != "200"]


def test_hosts_carry_trurisk_by_default(world: SimulatorProcess) -> None:
    params = first_call_params(tap_config(world), "hosts")
    assert params["show_trurisk"] == 1
    assert params["show_trurisk_factors"] == 1
    records, _ = run_tap(tap_config(world), streams=["hosts"])
    hosts = records["hosts"]
    assert len(hosts) == len(host_ids(world))
    assert all(isinstance(h["trurisk_score"], int) for h in hosts)
    assert any(h["trurisk_score_factors"] for h in hosts)


def test_show_trurisk_off_for_consultant_subscriptions() -> None:
    with SimulatorProcess(hosts=5, seed=2, consultant=True) as sim:
        config = tap_config(sim, show_qds=False, show_qds_factors=False, max_retries=0)
        with pytest.raises(QualysAPIError, match="1901"):
            run_tap(config, streams=["hosts"])
        records, _ = run_tap({**config, "show_trurisk": False}, streams=["hosts"])
        assert len(records["hosts"]) == 5
        assert all(h["trurisk_score"] is None for h in records["hosts"])


def test_truncation_paginator_follows_id_min_and_fails_when_it_cannot() -> None:
    paginator = TruncationPaginator(logging.getLogger("test"))
    base = "https://qualysapi.qualys.com/api/5.0/fo/asset/host/?action=list&details=None"

    def page(url: str | None) -> FetchedPage:
        return FetchedPage(
            records=RecordSpool(),
            next_url=url,
            response_datetime=None,
            elapsed=0,
            extracted=datetime.now(timezone.utc),
        )

    paginator.advance(page(f"{base}&truncation_limit=2&id_min=1200"))
    assert (paginator.current_value, paginator.finished) == (1200, False)
    # A URL that cannot be followed fails the stream: ending quietly would count the sync as
    # complete and move the bookmark past hosts never read.
    with pytest.raises(QualysAPIError, match="id_min 1200 does not advance past 1200"):
        paginator.advance(page(f"{base}&id_min=1200"))  # a server repeating itself
    paginator = TruncationPaginator(logging.getLogger("test"))
    with pytest.raises(QualysAPIError, match="has no id_min"):
        paginator.advance(page(base))  # no id_min to follow
    paginator = TruncationPaginator(logging.getLogger("test"))
    paginator.advance(page(None))  # no WARNING: the last page
    assert paginator.finished


def host_list_page(sim: SimulatorProcess) -> str:
    """A real truncated Host List page (2 hosts and a WARNING 1980) from the simulator."""
    response = requests.post(
        sim.url + HOST_LIST_PATH,
        data={"action": "list", "truncation_limit": 2, "details": "Basic"},
        auth=(sim.username, sim.password),
        headers={"X-Requested-With": "test"},
        timeout=30,
    )
    response.raise_for_status()
    assert "<WARNING>" in response.text
    assert re.search(r"id_min=\d+", response.text)
    return response.text


def test_truncation_url_without_id_min_fails_the_stream(
    world: SimulatorProcess, tmp_path: Path
) -> None:
    page = re.sub(r"&id_min=\d+", "&marker_param=zzz", host_list_page(world))
    config = tap_config(world, max_retries=0)
    inject(world, "host_list", page.encode(), times=1, content_type="text/xml")
    with pytest.raises(QualysAPIError, match="next-page URL has no id_min") as caught:
        run_tap(config, streams=HOSTS)
    assert str(caught.value).startswith(f"hosts: {HOST_LIST_PATH} failed")

    inject(world, "host_list", page.encode(), times=1, content_type="text/xml")
    result = run_cli(tmp_path, config, HOSTS)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "marker_param" not in result.stderr  # the URL is not logged
    _, states = parse_messages(result.stdout)
    assert not any(s["bookmarks"].get("hosts", {}).get("vm_processed_after") for s in states)


def test_truncation_id_min_that_does_not_advance_fails_the_stream(world: SimulatorProcess) -> None:
    page = host_list_page(world)
    id_min = re.search(r"id_min=(\d+)", page)
    assert id_min
    inject(world, "host_list", page.encode(), times=2, content_type="text/xml")
    with pytest.raises(QualysAPIError, match=f"id_min {id_min[1]} does not advance"):
        run_tap(tap_config(world, max_retries=0), streams=["hosts"])


def test_a_day_long_towait_on_a_good_answer_is_not_slept(
    world: SimulatorProcess, tmp_path: Path
) -> None:
    """A 200 carrying ToWait above the limit: keep the page, do not sleep for a day."""
    last_page = re.sub(r"<WARNING>.*?</WARNING>", "", host_list_page(world), flags=re.S)
    inject(
        world,
        "host_list",
        last_page.encode(),
        times=1,
        content_type="text/xml",
        headers={"X-RateLimit-ToWait-Sec": "86340"},
    )
    result = run_cli(tmp_path, tap_config(world), ["hosts"])
    assert result.returncode == 0, result.stderr[-2000:]
    records, _ = parse_messages(result.stdout)
    assert len(records["hosts"]) == 2
    assert "above max_rate_limit_wait" in result.stderr


def test_record_spool_keeps_order_and_moves_to_disk_when_large() -> None:
    spool = RecordSpool()
    records = [
        {"id": n, "results": "x" * 1000, "nested": [{"a": n}], "none": None} for n in range(10_000)
    ]
    for record in records:
        spool.append(record)
    assert spool.count == 10_000
    assert list(spool) == records
    assert spool._file._rolled  # type: ignore[attr-defined]  # over SPOOL_MEMORY_BYTES: on disk


def test_record_spool_round_trips_awkward_values_as_json_lines() -> None:
    # Newlines, CR, tabs, NUL's replacement, non-BMP text, quotes, ints past 2**53 and floats:
    # the spool separates records with a newline, so none may leak out of a value unescaped.
    records = [
        {"results": 'a\nb\r\n\tc\ufffd \U0001f600 "q" \\', "id": 2**62 + 1, "f": 0.1},
        {"results": "\n", "nested": [{"x": None}, {"y": [1, "\n"]}], "b": True},
        {},
    ]
    spool = RecordSpool()
    for record in records:
        spool.append(record)
    lines = list(spool.encoded())
    assert [json.loads(line) for line in lines] == records
    assert all(b"\n" not in line for line in lines)
    spool = RecordSpool()
    for record in records:
        spool.append(record)
    assert list(spool) == records


@pytest.mark.parametrize("version", [None, 1763900000])
def test_record_line_parts_write_what_the_sdk_writes(version: int | None) -> None:
    record = {"host_id": 1, "results": "x\ny", "qds": None, "factors": [{"name": "CVSS"}]}
    extracted = datetime(2026, 11, 23, 19, 0, 1, 123456, tzinfo=timezone(timedelta(hours=2)))
    prefix, suffix = record_line_parts("host_detections", version, extracted)
    ours = prefix + json.dumps(record, separators=(",", ":")).encode() + suffix
    sdk = MsgSpecWriter().format_message(
        RecordMessage(
            stream="host_detections", record=record, version=version, time_extracted=extracted
        )
    )
    assert ours == bytes(sdk)


def test_detections_written_as_encoded_lines_equal_the_sdk_path(
    world: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path (spooled JSON written as it is) emits exactly what the SDK's path does."""
    config = tap_config(world, host_batch_size=7)
    fast, _ = run_tap(config, streams=("hosts", "host_detections"))
    monkeypatch.setattr(HostDetectionsStream, "emits_encoded", property(lambda _self: False))
    slow, _ = run_tap(config, streams=("hosts", "host_detections"))
    assert fast["host_detections"] == slow["host_detections"]
    assert len(fast["host_detections"]) == len(world.ground_truth("host_detections"))


def test_batch_messages_hold_every_detection(world: SimulatorProcess, tmp_path: Path) -> None:
    """With batch_config the SDK writes BATCH files from the records: never the fast path."""
    config = tap_config(
        world,
        host_batch_size=7,
        batch_config={
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": tmp_path.as_uri(), "prefix": "batch-"},
        },
    )
    tap = vm_tap(config, streams=("hosts", "host_detections"))
    assert not tap.streams["host_detections"].emits_encoded  # type: ignore[attr-defined]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tap.sync_all()
    manifests = [
        json.loads(line)["manifest"]
        for line in out.getvalue().splitlines()
        if '"BATCH"' in line and '"host_detections"' in line
    ]
    files = [Path(uri.removeprefix("file://")) for manifest in manifests for uri in manifest]
    assert files
    detections = [
        json.loads(line)
        for path in files
        for line in gzip.decompress(path.read_bytes()).splitlines()
    ]
    assert_matches_truth(
        detections, world.ground_truth("host_detections"), "host_id", "unique_vuln_id"
    )


def test_a_stream_map_on_detections_takes_the_sdk_path(world: SimulatorProcess) -> None:
    config = tap_config(
        world,
        host_batch_size=7,
        stream_maps={"host_detections": {"results": "__NULL__", "qid_text": "str(qid)"}},
    )
    tap = vm_tap(config, streams=("hosts", "host_detections"))
    assert not tap.streams["host_detections"].emits_encoded  # type: ignore[attr-defined]
    records, _ = run_tap(config, streams=("hosts", "host_detections"))
    detections = records["host_detections"]
    assert len(detections) == len(world.ground_truth("host_detections"))
    assert all("results" not in r and r["qid_text"] == str(r["qid"]) for r in detections)
    assert vm_tap(tap_config(world), streams=VM_STREAMS).streams["host_detections"].emits_encoded  # type: ignore[attr-defined]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_needs_the_ca_bundle_unless_verification_is_off(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    with SimulatorProcess(hosts=5, seed=2, tls_cert=str(cert), tls_key=str(key)) as tls:
        assert tls.url.startswith("https://")
        with pytest.raises(Exception, match="SSL"):
            run_tap(tap_config(tls, max_retries=0), streams=("hosts",))
        records, _ = run_tap(tap_config(tls, ca_bundle=str(cert)), streams=HOSTS)
        assert_complete(records, tls)
        records, _ = run_tap(tap_config(tls, verify_ssl=False), streams=("hosts",))
        assert len(records["hosts"]) == 5
