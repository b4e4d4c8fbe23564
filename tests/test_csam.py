"""csam_assets against the simulator: complete, exact, incremental, resumable, robust."""

from __future__ import annotations

import copy
import json
import subprocess
import typing as t
from datetime import datetime, timedelta, timezone

import pytest
import requests

from qualys_simulator.testing import SimulatorProcess
from tap_qualys.auth import GatewayTokenAuthenticator
from tap_qualys.casting import parse_utc, qualys_filter_datetime
from tap_qualys.client import decode_gateway_body
from tap_qualys.errors import QualysAPIError
from tap_qualys.naming import snake_case
from tap_qualys.retries import FailedAttempt
from tap_qualys.streams.csam import (
    DEFAULT_OVERLAP_MINUTES,
    CsamAssetPaginator,
    CsamPage,
    read_csam_page,
)
from tests.gateway_support import (
    JWT_PATTERN,
    epoch_ms_to_iso,
    gateway_config,
    inject,
    keyed,
    merged,
    parse_messages,
    run_cli,
    run_tap,
    tap_command,
)

if t.TYPE_CHECKING:
    from pathlib import Path

SEARCH = "/rest/2.0/search/am/asset"


# --- the envelope and the paginator ------------------------------------------------------------


def _envelope(**fields: t.Any) -> dict[str, t.Any]:
    return {
        "responseCode": "SUCCESS",
        "count": 1,
        "hasMore": 0,
        "lastSeenAssetId": 5,
        "assetListData": {"asset": [{"assetId": 5}]},
        **fields,
    }


@pytest.mark.parametrize(
    ("has_more", "expected"), [(1, True), ("1", True), (0, False), ("0", False)]
)
def test_has_more_as_int_or_string(has_more: t.Any, expected: bool) -> None:
    assert read_csam_page(_envelope(hasMore=has_more)).has_more is expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_envelope(responseCode="FAILED", responseMessage="Internal error"), "FAILED"),
        ({k: v for k, v in _envelope().items() if k != "hasMore"}, "no hasMore"),
        (_envelope(hasMore=1, lastSeenAssetId=None), "without lastSeenAssetId"),
        ([], "not an object"),
    ],
)
def test_unusable_envelopes_are_transient(body: t.Any, reason: str) -> None:
    with pytest.raises(FailedAttempt, match=reason) as caught:
        read_csam_page(body)
    assert caught.value.verdict.kind.value == "backoff"


def test_paginator_follows_last_seen_asset_id_and_refuses_to_loop() -> None:
    paginator = CsamAssetPaginator(0)
    paginator.advance(CsamPage([], has_more=True, last_seen_asset_id=40))
    assert (paginator.current_value, paginator.finished) == (40, False)
    with pytest.raises(QualysAPIError, match="went from 40 to 40"):
        paginator.advance(CsamPage([], has_more=True, last_seen_asset_id=40))
    paginator.advance(CsamPage([], has_more=False, last_seen_asset_id=90))
    assert paginator.finished


# --- against the simulator ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def world() -> t.Iterator[SimulatorProcess]:
    """This module's simulator (its clock is moved): 30 hosts, 45 assets."""
    with SimulatorProcess(hosts=30, seed=7) as sim:
        yield sim


def raw_assets(
    sim: SimulatorProcess, body: dict[str, t.Any] | None = None
) -> list[dict[str, t.Any]]:
    """Every asset as the API sends it, fetched without the tap's streams."""
    token = GatewayTokenAuthenticator(
        gateway_url=sim.url, username=sim.username, password=sim.password
    ).token()
    assets: list[dict[str, t.Any]] = []
    last_seen = 0
    while True:
        response = requests.post(
            sim.url + SEARCH,
            params={"pageSize": 300, "lastSeenAssetId": last_seen},
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        page = read_csam_page(decode_gateway_body(response.content))
        assets += page.assets
        if not page.has_more:
            return assets
        last_seen = t.cast("int", page.last_seen_asset_id)


def assert_matches_truth(records: list[dict[str, t.Any]], truth: list[dict[str, t.Any]]) -> None:
    """Every ground-truth asset once, with its values (epoch dates rendered as ISO), no extras."""
    got = keyed(records, "asset_id")
    want = keyed(truth, "assetId")
    assert got.keys() == want.keys()
    for key, expected in want.items():
        record = got[key]
        agent = expected["agent"]
        assert {
            "assetId": record["asset_id"],
            "hostId": record["host_id"],
            "assetName": record["asset_name"],
            "lastModifiedDate": record["last_modified_date"],
            "agent": None
            if record["agent"] is None
            else {
                "version": record["agent"]["version"],
                "lastCheckedIn": record["agent"]["lastCheckedIn"],
            },
        } == {
            **expected,
            "agent": None
            if agent is None
            else {**agent, "lastCheckedIn": epoch_ms_to_iso(agent["lastCheckedIn"])},
        }, key


def test_full_sync_matches_ground_truth(world: SimulatorProcess) -> None:
    records, states = run_tap(gateway_config(world, csam_page_size=7), ["csam_assets"])
    assets = records["csam_assets"]
    assert_matches_truth(assets, world.ground_truth("csam_assets"))
    # Some assets are VM hosts (hostId joins to hosts.id), some are CSAM-only.
    host_ids = {a["host_id"] for a in assets}
    assert None in host_ids
    assert {h["ID"] for h in world.ground_truth("hosts")} <= host_ids
    # The resume point is gone once the stream finished; the bookmark is the newest asset.
    final = states[-1]["bookmarks"]["csam_assets"]
    assert "resume" not in final
    assert final["replication_key"] == "last_modified_date"
    assert final["replication_key_value"] == max(a["last_modified_date"] for a in assets)


def test_nothing_is_lost_or_altered(world: SimulatorProcess) -> None:
    """Each record holds every field of the API's asset, at every depth, with the same value;
    epoch-millisecond dates are the same instants in ISO form; big ids are exact."""
    records = keyed(run_tap(gateway_config(world), ["csam_assets"])[0]["csam_assets"], "asset_id")
    big_ids = 0
    for raw in raw_assets(world):
        record = records[(raw["assetId"],)]
        # Columns are snake_case (``naming``); the values inside them keep the API's keys.
        top = {snake_case(key): value for key, value in raw.items()}
        _assert_same(top, record, path=str(raw["assetId"]))
        for software in raw["softwareListData"]["software"]:
            big_ids += software["id"] > 2**53
    assert big_ids > 0


def _assert_same(raw: t.Any, emitted: t.Any, path: str) -> None:
    if isinstance(raw, dict):
        assert isinstance(emitted, dict), path
        assert raw.keys() == emitted.keys(), (path, raw.keys() ^ emitted.keys())
        for key, value in raw.items():
            _assert_same(value, emitted[key], f"{path}.{key}")
    elif isinstance(raw, list):
        assert isinstance(emitted, list), path
        assert len(raw) == len(emitted), path
        for index, (a, b) in enumerate(zip(raw, emitted, strict=True)):
            _assert_same(a, b, f"{path}[{index}]")
    elif isinstance(raw, int) and not isinstance(raw, bool) and isinstance(emitted, str):
        assert emitted == epoch_ms_to_iso(raw), path  # an epoch-ms date, normalised
    else:
        assert raw == emitted, path
        assert type(raw) is type(emitted), path


def test_dates_are_iso_utc(world: SimulatorProcess) -> None:
    asset = next(
        a for a in run_tap(gateway_config(world), ["csam_assets"])[0]["csam_assets"] if a["agent"]
    )
    for value in (
        asset["last_modified_date"],
        asset["agent"]["lastCheckedIn"],
        asset["sensor"]["lastVMScan"],
        asset["inventory"]["lastUpdated"],
    ):
        assert isinstance(value, str)
        assert value.endswith("Z")
        assert len(value) == len("2026-11-01T00:00:00.000Z")


def test_incremental_after_changes(world: SimulatorProcess) -> None:
    config = gateway_config(world)
    first, states = run_tap(config, ["csam_assets"])
    bookmark = states[-1]["bookmarks"]["csam_assets"]["replication_key_value"]
    world.advance(86400)
    second, _ = run_tap(config, ["csam_assets"], state=states[-1])
    truth = world.ground_truth("csam_assets")
    changed = {a["assetId"] for a in truth if a["lastModifiedDate"] > bookmark}
    emitted = {a["asset_id"] for a in second["csam_assets"]}
    assert changed
    assert changed <= emitted
    assert len(emitted) < len(truth)  # really incremental
    table = merged(first["csam_assets"], second["csam_assets"], keys=("asset_id",))
    assert_matches_truth(list(table.values()), truth)


@pytest.mark.parametrize("field", ["host_id", "hostId"])  # the column's name or Qualys'
def test_include_fields_and_tag_filter(world: SimulatorProcess, field: str) -> None:
    tag = raw_assets(world)[0]["tagList"]["tag"][0]["tagName"]
    config = gateway_config(world, csam_include_fields=[field], csam_tag_filter=tag)
    assets = run_tap(config, ["csam_assets"])[0]["csam_assets"]
    expected = raw_assets(
        world, {"filters": [{"field": "tags.name", "operator": "EQUALS", "value": tag}]}
    )
    assert {a["asset_id"] for a in assets} == {a["assetId"] for a in expected}
    with_host = {a["assetId"] for a in expected if a["hostId"] is not None}
    assert with_host  # host_id is really asked for, not just present as null
    for asset in assets:
        # The keys the tap needs are always requested; everything not listed comes as null.
        assert asset["last_modified_date"]
        assert asset["host_id"] is not None or asset["asset_id"] not in with_host
        assert asset["software_list_data"] is None
        assert asset["asset_name"] is None


@pytest.mark.parametrize("spelling", ["inventoryListData", "inventory_list_data"])
def test_inventory_key_spellings(spelling: str) -> None:
    with SimulatorProcess(hosts=6, seed=3, csam_inventory_key=spelling) as sim:
        assets = run_tap(gateway_config(sim), ["csam_assets"])[0]["csam_assets"]
    assert assets
    for asset in assets:
        assert spelling not in asset
        assert set(asset["inventory"]) == {"source", "created", "lastUpdated"}
        assert asset["inventory"]["lastUpdated"].endswith("Z")


def test_crash_mid_paging_resumes_at_the_last_full_page(
    world: SimulatorProcess, tmp_path: Path
) -> None:
    """Kill the tap after its second page; the next run starts after that page, not at 0."""
    config = gateway_config(world, csam_page_size=5)
    world.configure(record_delay_sec=0.05)  # about 0.25 s per page: time to kill it mid-way
    command = tap_command(tmp_path, config, ["csam_assets"])
    before: list[str] = []
    resume_state: dict[str, t.Any] | None = None
    resume_points = 0
    try:
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                before.append(line)
                message = json.loads(line)
                if message["type"] != "STATE":
                    continue
                if message["value"]["bookmarks"].get("csam_assets", {}).get("resume"):
                    resume_state = message["value"]
                    resume_points += 1
                    if resume_points == 2:
                        process.kill()
                        break
            process.wait(timeout=60)
    finally:
        world.configure(record_delay_sec=0)
    assert resume_state is not None
    resume_after = resume_state["bookmarks"]["csam_assets"]["resume"]["last_seen_asset_id"]
    crashed, _ = parse_messages("".join(before))
    emitted_before = {a["asset_id"] for a in crashed["csam_assets"]}
    # Every asset up to the resume point was emitted before the crash.
    truth = world.ground_truth("csam_assets")
    assert {a["assetId"] for a in truth if a["assetId"] <= resume_after} <= emitted_before

    world.reset_stats()
    rerun, states = run_tap(config, ["csam_assets"], state=resume_state)
    resumed = [a["asset_id"] for a in rerun["csam_assets"]]
    assert resumed == sorted(a["assetId"] for a in truth if a["assetId"] > resume_after)
    assert world.stats()["requests"]["csam_search"] == -(-len(resumed) // 5)
    assert "resume" not in states[-1]["bookmarks"]["csam_assets"]
    table = merged(crashed["csam_assets"], rerun["csam_assets"], keys=("asset_id",))
    assert_matches_truth(list(table.values()), truth)
    assert not JWT_PATTERN.search("".join(before))


def test_resume_point_of_another_query_is_ignored(world: SimulatorProcess) -> None:
    state = {
        "bookmarks": {
            "csam_assets": {"resume": {"lastSeenAssetId": 10**12, "query": {"filters": "old"}}}
        }
    }
    records, _ = run_tap(gateway_config(world), ["csam_assets"], state=state)
    assert len(records["csam_assets"]) == len(world.ground_truth("csam_assets"))


def test_state_from_before_snake_case_keeps_bookmark_and_resume_point(
    world: SimulatorProcess,
) -> None:
    """A state written with the API's names (``lastModifiedDate``, ``lastSeenAssetId``) by an
    older tap-qualys: the bookmark and the resume point still hold, and are rewritten."""
    config = gateway_config(world, csam_page_size=5)
    _, states = run_tap(config, ["csam_assets"])
    bookmark = states[-1]["bookmarks"]["csam_assets"]["replication_key_value"]
    world.advance(86400)
    new_state = {"bookmarks": {"csam_assets": {
        "replication_key": "last_modified_date", "replication_key_value": bookmark}}}
    incremental = [a["asset_id"] for a in run_tap(config, ["csam_assets"], new_state)[0]
                   ["csam_assets"]]
    assert 2 <= len(incremental) < len(world.ground_truth("csam_assets"))
    resume_after = incremental[len(incremental) // 2 - 1]
    # The query that run asked for: a resume point belongs to its query.
    since = parse_utc(bookmark) - timedelta(minutes=DEFAULT_OVERLAP_MINUTES)
    query = {
        "filters": [
            {"field": "asset.lastUpdated", "operator": "GREATER",
             "value": qualys_filter_datetime(since)}
        ],
        "pageSize": 5,
        "includeFields": None,
    }
    old_state = {"bookmarks": {"csam_assets": {
        "replication_key": "lastModifiedDate",
        "replication_key_value": bookmark,
        "resume": {"lastSeenAssetId": resume_after, "query": query, "started": bookmark},
    }}}
    records, states = run_tap(config, ["csam_assets"], old_state)
    assert [a["asset_id"] for a in records["csam_assets"]] == [
        i for i in incremental if i > resume_after
    ]
    final = states[-1]["bookmarks"]["csam_assets"]
    assert final["replication_key"] == "last_modified_date"
    assert "resume" not in final


def sim_now(sim: SimulatorProcess) -> datetime:
    now = sim.admin_get("/admin/clock")["now"]
    return datetime.fromisoformat(now.replace("Z", "+00:00"))


def as_moment(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def test_resumed_csam_run_rereads_changes_below_its_resume_point() -> None:
    """Crash after page 2, assets change, the run resumes: the next run still sees every change.

    Before the fix the resumed run's bookmark moved to the newest change it read (above the
    resume point), so changes made to assets below the resume point were never read.
    """
    with SimulatorProcess(hosts=100, seed=5) as sim:
        config = gateway_config(sim, csam_page_size=50)
        # The crash: the state a run leaves after its second page.
        _, states = run_tap(config, ["csam_assets"])
        crash = copy.deepcopy(
            [s for s in states if s["bookmarks"].get("csam_assets", {}).get("resume")][1]
        )
        resume = crash["bookmarks"]["csam_assets"]["resume"]
        assert resume["started"]  # the interrupted run's start is kept with the resume point
        # The simulated clock runs weeks behind this machine's; in production the run's start
        # and Qualys' dates share one clock. Put the crash on the simulated clock.
        crashed_at = sim_now(sim)
        resume["started"] = crashed_at.isoformat()
        resume_after = resume["last_seen_asset_id"]

        sim.advance(86400)
        changed = {
            a["assetId"]
            for a in sim.ground_truth("csam_assets")
            if as_moment(a["lastModifiedDate"]) > crashed_at
        }
        below = {a for a in changed if a <= resume_after}
        assert below, "the advance should change assets below the resume point"

        resumed, states = run_tap(config, ["csam_assets"], state=crash)
        assert min(a["asset_id"] for a in resumed["csam_assets"]) > resume_after
        final = states[-1]
        bookmark = final["bookmarks"]["csam_assets"]["replication_key_value"]
        assert "resume" not in final["bookmarks"]["csam_assets"]
        assert as_moment(bookmark) <= crashed_at

        after, _ = run_tap(config, ["csam_assets"], state=final)
        assert below <= {a["asset_id"] for a in after["csam_assets"]}


def test_repeated_resumes_keep_the_first_runs_start() -> None:
    with SimulatorProcess(hosts=20, seed=3) as sim:
        config = gateway_config(sim, csam_page_size=5)
        _, states = run_tap(config, ["csam_assets"])
        crash = copy.deepcopy(
            next(s for s in states if s["bookmarks"].get("csam_assets", {}).get("resume"))
        )
        crash["bookmarks"]["csam_assets"]["resume"]["started"] = "2026-10-01T00:00:00+00:00"
        _, states = run_tap(config, ["csam_assets"], state=crash)
        points = [
            s["bookmarks"]["csam_assets"]["resume"]
            for s in states
            if s["bookmarks"].get("csam_assets", {}).get("resume")
        ]
        assert points
        assert {p["started"] for p in points} == {"2026-10-01T00:00:00+00:00"}


@pytest.mark.parametrize("fault", ["error_200", "truncated_200", "drop", "http_503"])
def test_transient_failures_are_retried(world: SimulatorProcess, fault: str) -> None:
    world.configure(faults={fault: 1.0}, fault_budget={fault: 2}, fault_endpoints=["csam_search"])
    world.reset_stats()
    try:
        records, _ = run_tap(gateway_config(world, csam_page_size=10), ["csam_assets"])
    finally:
        world.configure(faults={}, fault_budget={}, fault_endpoints=[])
    injected = world.stats()["faults"]
    assert sum(injected.values()) == 2, injected
    assert_matches_truth(records["csam_assets"], world.ground_truth("csam_assets"))


def test_persistent_invalid_json_is_one_clear_error(world: SimulatorProcess) -> None:
    world.configure(faults={"truncated_200": 1.0}, fault_endpoints=["csam_search"])
    try:
        with pytest.raises(QualysAPIError) as caught:
            run_tap(gateway_config(world, max_retries=1), ["csam_assets"])
    finally:
        # An empty ``faults`` changes no probability: set this one back to 0 for the next tests.
        world.configure(faults={"truncated_200": 0}, fault_endpoints=[])
    message = str(caught.value)
    assert message.startswith("csam_assets: POST /rest/2.0/search/am/asset failed after 2 attempts")
    assert "invalid JSON from the gateway" in message
    assert "\n" not in message
    assert not JWT_PATTERN.search(message)


def test_non_numeric_last_seen_asset_id_is_retried_then_one_line(
    world: SimulatorProcess, tmp_path: Path
) -> None:
    page = {
        "responseCode": "SUCCESS",
        "count": 0,
        "hasMore": 1,
        "lastSeenAssetId": "12x",
        "assetListData": {"asset": []},
    }
    config = gateway_config(world, max_retries=1)
    inject(world, "csam_search", page, times=2)
    with pytest.raises(QualysAPIError) as caught:
        run_tap(config, ["csam_assets"])
    message = str(caught.value)
    assert "csam_assets" in message
    assert "failed after 2 attempts: lastSeenAssetId '12x' is not a number" in message
    assert "\n" not in message
    # Retried once, then the one line, no traceback, exit code 1.
    inject(world, "csam_search", page, times=2)
    result = run_cli(tmp_path, config, ["csam_assets"])
    assert result.returncode == 1
    assert "lastSeenAssetId '12x' is not a number" in result.stderr
    assert "Traceback" not in result.stderr


def _spend_gateway_window(sim: SimulatorProcess, calls: int) -> None:
    """Another client of the subscription uses up the gateway's rate window."""
    session = requests.Session()
    token = session.post(sim.url + "/auth", data={
        "username": sim.username, "password": sim.password, "token": "true"}).text
    for _ in range(calls):
        session.post(sim.url + "/rest/2.0/count/am/asset",
                     headers={"Authorization": f"Bearer {token}"})


def test_gateway_429_waits_as_told() -> None:
    with SimulatorProcess(hosts=20, seed=2, gateway_rate_limit=3, gateway_rate_window=2) as sim:
        _spend_gateway_window(sim, 3)
        records, _ = run_tap(gateway_config(sim, csam_page_size=5), ["csam_assets"])
        truth = sim.ground_truth("csam_assets")
        stats = sim.stats()
    assert_matches_truth(records["csam_assets"], truth)
    assert sum(int(s.get("429", 0)) for s in stats["responses"].values()) >= 1
    assert stats["towait"].get("violated", 0) == 0
    assert stats["towait"]["honoured"] >= 1


def test_gateway_calls_are_paced_by_the_rate_headers(caplog: pytest.LogCaptureFixture) -> None:
    """Few calls left in the window: the tap spreads its calls instead of running into 429."""
    with SimulatorProcess(hosts=20, seed=2, gateway_rate_limit=4, gateway_rate_window=2) as sim:
        with caplog.at_level("INFO"):
            records, _ = run_tap(gateway_config(sim, csam_page_size=3), ["csam_assets"])
        truth = sim.ground_truth("csam_assets")
        stats = sim.stats()
    assert_matches_truth(records["csam_assets"], truth)
    assert stats["responses"]["csam_search"]["200"] >= 8  # more calls than one window allows
    assert "429" not in stats["responses"]["csam_search"]
    assert "few gateway calls left in the window" in caplog.text
