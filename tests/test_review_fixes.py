"""Review findings: each test fails on the code before its fix.

1. stream-map filters never lose other hosts' detection batches (nor other hosts' postures);
2. Host List Detection sends include_ignored / include_disabled;
3. Host List sends show_trurisk / show_trurisk_factors (off with show_trurisk=false);
4. the PCRS window overlaps the previous one by pcrs_overlap_hours;
5. a resumed CSAM run does not move its bookmark past the interrupted run's start;
6. non-numeric ids from the gateway are a retried, then one-line, failure;
7. a truncation WARNING URL that cannot be followed fails the stream;
8. rate-limit waits above max_rate_limit_wait fail at once.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import sys
import typing as t
from datetime import datetime, timedelta, timezone

import pytest
import requests

from qualys_simulator.testing import Simulator
from tap_qualys.client import TruncationPaginator
from tap_qualys.errors import QualysAPIError
from tap_qualys.retries import FailedAttempt, Kind, RequestStats, RetryPolicy, classify_response
from tap_qualys.streams import pcrs
from tap_qualys.tap import TapQualys
from tests.gateway_support import PCRS_STREAMS, catalog, gateway_config, parse_messages, run_tap
from tests.test_retries import Script

if t.TYPE_CHECKING:
    from pathlib import Path

HOSTS = ("hosts", "host_detections")
HOST_LIST_PATH = "/api/5.0/fo/asset/host/"


@pytest.fixture(scope="module")
def world() -> t.Iterator[Simulator]:
    """This module's simulator (its clock is moved): 20 hosts, 30 assets, 8 policies."""
    with Simulator(hosts=20, seed=11) as sim:
        yield sim


def detection_keys(records: list[dict[str, t.Any]]) -> set[tuple[int, int]]:
    return {(r["host_id"], r["unique_vuln_id"]) for r in records}


def truth_detection_keys(sim: Simulator, host_ids: set[int]) -> set[tuple[int, int]]:
    return {
        (d["HOST_ID"], d["UNIQUE_VULN_ID"])
        for d in sim.ground_truth("host_detections")
        if d["HOST_ID"] in host_ids
    }


def run_cli(
    tmp_path: Path, config: dict[str, t.Any], streams: t.Iterable[str], state: t.Any = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog(config, streams)))
    command = [
        sys.executable,
        "-m",
        "tap_qualys",
        "--config",
        str(tmp_path / "config.json"),
        "--catalog",
        str(tmp_path / "catalog.json"),
    ]
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
        command += ["--state", str(tmp_path / "state.json")]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


# --- 1. stream-map filters ----------------------------------------------------------------------


def host_ids(sim: Simulator) -> list[int]:
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
    world: Simulator, case: str, keep: t.Callable[[list[int]], list[int]]
) -> None:
    """Reviewer's case: 20 hosts, batches of 5, a __filter__ on hosts."""
    ids = host_ids(world)
    kept = keep(ids)
    dropped = sorted(set(ids) - set(kept))
    expression = " and ".join(f"id != {i}" for i in dropped)
    config = gateway_config(
        world, host_batch_size=5, stream_maps={"hosts": {"__filter__": expression}}
    )
    records, states = run_tap(config, HOSTS)
    assert sorted(h["id"] for h in records["hosts"]) == kept, case
    # A filtered host's detections are not wanted; every other host's are all there.
    assert detection_keys(records["host_detections"]) == truth_detection_keys(world, set(kept))
    assert states[-1]["bookmarks"]["hosts"]["vm_processed_after"]


def test_filtered_host_ids_never_lose_other_hosts_postures(world: Simulator) -> None:
    config = gateway_config(world)
    full, _ = run_tap(config, PCRS_STREAMS)
    per_policy: dict[int, list[int]] = {}
    for row in full["pcrs_policy_host_ids"]:
        per_policy.setdefault(row["policyId"], []).append(row["hostId"])
    # Filter out each policy's *last* host: it carried the policy's postures before the fix.
    last_hosts = {hosts[-1] for hosts in per_policy.values()}
    expression = " and ".join(f"hostId != {h}" for h in sorted(last_hosts))
    filtered, _ = run_tap(
        {**config, "stream_maps": {"pcrs_policy_host_ids": {"__filter__": expression}}},
        PCRS_STREAMS,
    )
    expected = {p["id"] for p in full["pcrs_posture_info"] if p["hostId"] not in last_hosts}
    assert expected
    assert {p["id"] for p in filtered.get("pcrs_posture_info", [])} == expected


# --- 2. and 3. request switches ----------------------------------------------------------------


def stream(config: dict[str, t.Any], name: str) -> t.Any:
    return TapQualys(config=config, validate_config=False).streams[name]


def test_detections_include_ignored_and_disabled_by_default(world: Simulator) -> None:
    params = stream(gateway_config(world), "host_detections").qualys_params(None)
    assert params["include_ignored"] == 1
    assert params["include_disabled"] == 1
    off = gateway_config(world, include_ignored=False, include_disabled=False)
    params = stream(off, "host_detections").qualys_params(None)
    assert params["include_ignored"] == 0
    assert params["include_disabled"] == 0
    # The simulator (like Qualys) accepts both: a sync with them sent is complete.
    world.reset_stats()
    records, _ = run_tap(gateway_config(world, host_batch_size=7), HOSTS)
    assert detection_keys(records["host_detections"]) == truth_detection_keys(
        world, set(host_ids(world))
    )
    assert not [k for k in world.stats()["responses"].get("host_detection", {}) if k != "200"]


def test_hosts_carry_trurisk_by_default(world: Simulator) -> None:
    params = stream(gateway_config(world), "hosts").qualys_params(None)
    assert params["show_trurisk"] == 1
    assert params["show_trurisk_factors"] == 1
    records, _ = run_tap(gateway_config(world), ["hosts"])
    hosts = records["hosts"]
    assert len(hosts) == len(host_ids(world))
    assert all(isinstance(h["trurisk_score"], int) for h in hosts)
    assert any(h["trurisk_score_factors"] for h in hosts)


def test_show_trurisk_off_for_consultant_subscriptions() -> None:
    with Simulator(hosts=5, seed=2, consultant=True) as sim:
        config = gateway_config(sim, show_qds=False, show_qds_factors=False, max_retries=0)
        with pytest.raises(QualysAPIError, match="1901"):
            run_tap(config, ["hosts"])
        records, _ = run_tap({**config, "show_trurisk": False}, ["hosts"])
        assert len(records["hosts"]) == 5
        assert all(h["trurisk_score"] is None for h in records["hosts"])


# --- 4. PCRS window overlap ---------------------------------------------------------------------


def test_pcrs_window_overlaps_the_previous_one(
    world: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, dict[str, t.Any]]] = []
    real = pcrs.PcrsPoliciesStream.gateway_call

    def spy(self: t.Any, path: str, parse: t.Any, **kwargs: t.Any) -> t.Any:
        sent.append((path, dict(kwargs.get("params") or {})))
        return real(self, path, parse, **kwargs)

    monkeypatch.setattr(pcrs.PcrsPoliciesStream, "gateway_call", spy)
    monkeypatch.setattr(pcrs.PcrsPolicyHostIdsStream, "gateway_call", spy)
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
    windows = {p.get("lastEvaluationDate") or p.get("lastScanDate") for _, p in sent}
    assert windows == {overlapped}  # 24 hours before the bookmark
    assert any(path == pcrs.PcrsPolicyHostIdsStream.path for path, _ in sent)

    sent.clear()
    run_tap(gateway_config(world, pcrs_overlap_hours=0), PCRS_STREAMS, state=state)
    assert {p.get("lastEvaluationDate") or p.get("lastScanDate") for _, p in sent} == {bookmark}


# --- 5. CSAM resume -----------------------------------------------------------------------------


def sim_now(sim: Simulator) -> datetime:
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
    with Simulator(hosts=100, seed=5) as sim:
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
        resume_after = resume["lastSeenAssetId"]

        sim.advance(86400)
        changed = {
            a["assetId"]
            for a in sim.ground_truth("csam_assets")
            if as_moment(a["lastModifiedDate"]) > crashed_at
        }
        below = {a for a in changed if a <= resume_after}
        assert below, "the advance should change assets below the resume point"

        resumed, states = run_tap(config, ["csam_assets"], state=crash)
        assert min(a["assetId"] for a in resumed["csam_assets"]) > resume_after
        final = states[-1]
        bookmark = final["bookmarks"]["csam_assets"]["replication_key_value"]
        assert "resume" not in final["bookmarks"]["csam_assets"]
        assert as_moment(bookmark) <= crashed_at

        after, _ = run_tap(config, ["csam_assets"], state=final)
        assert below <= {a["assetId"] for a in after["csam_assets"]}


def test_repeated_resumes_keep_the_first_runs_start() -> None:
    with Simulator(hosts=20, seed=3) as sim:
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


# --- 6. non-numeric ids from the gateway --------------------------------------------------------


def inject(sim: Simulator, endpoint: str, body: t.Any, times: int, **extra: t.Any) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sim.admin_post(
        "/admin/inject",
        {
            "endpoint": endpoint,
            "status": 200,
            "content_type": extra.pop("content_type", "application/json"),
            "body_b64": base64.b64encode(raw).decode(),
            "times": times,
            **extra,
        },
    )


def test_non_numeric_last_seen_asset_id_is_retried_then_one_line(
    world: Simulator, tmp_path: Path
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


def test_non_numeric_host_id_is_retried_then_one_line(world: Simulator) -> None:
    answer = [{"policyId": "1", "subscriptionId": "1", "hostIds": ["123", "12a"]}]
    inject(world, "pcrs_hostids", answer, times=2)
    with pytest.raises(QualysAPIError) as caught:
        run_tap(gateway_config(world, max_retries=1), PCRS_STREAMS)
    message = str(caught.value)
    assert message.startswith("pcrs_policy_host_ids: GET /pcrs/5.0/posture/hostids failed")
    assert "host id '12a' is not a number" in message
    assert "\n" not in message


# --- 7. truncation URLs that cannot be followed -------------------------------------------------


def host_list_page(sim: Simulator) -> str:
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


def test_truncation_url_without_id_min_fails_the_stream(world: Simulator, tmp_path: Path) -> None:
    page = re.sub(r"&id_min=\d+", "&marker_param=zzz", host_list_page(world))
    config = gateway_config(world, max_retries=0)
    inject(world, "host_list", page.encode(), times=1, content_type="text/xml")
    with pytest.raises(QualysAPIError, match="next-page URL has no id_min") as caught:
        run_tap(config, HOSTS)
    assert str(caught.value).startswith(f"hosts: {HOST_LIST_PATH} failed")

    inject(world, "host_list", page.encode(), times=1, content_type="text/xml")
    result = run_cli(tmp_path, config, HOSTS)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "marker_param" not in result.stderr  # the URL is not logged
    _, states = parse_messages(result.stdout)
    assert not any(s["bookmarks"].get("hosts", {}).get("vm_processed_after") for s in states)


def test_truncation_id_min_that_does_not_advance_fails_the_stream(world: Simulator) -> None:
    page = host_list_page(world)
    id_min = re.search(r"id_min=(\d+)", page)
    assert id_min
    inject(world, "host_list", page.encode(), times=2, content_type="text/xml")
    with pytest.raises(QualysAPIError, match=f"id_min {id_min[1]} does not advance"):
        run_tap(gateway_config(world, max_retries=0), ["hosts"])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://x/api/5.0/fo/asset/host/?action=list&ids=1", "has no id_min"),
        ("https://x/?action=list&id_min=abc", "has id_min='abc'"),
    ],
)
def test_truncation_paginator_refuses_unusable_urls(url: str, message: str) -> None:
    paginator = TruncationPaginator(logger=t.cast("t.Any", None), label="hosts: /p")
    page = type("Page", (), {"next_url": url})()
    with pytest.raises(QualysAPIError, match=re.escape(message)):
        paginator.advance(page)
    assert "action=list" not in message


# --- 8. rate-limit waits above max_rate_limit_wait ---------------------------------------------


def rate_limited(wait: float) -> FailedAttempt:
    verdict = classify_response(
        409,
        1965,
        "This API cannot be run again for another 23 hours, 59 minutes and 0 seconds.",
        {"X-RateLimit-ToWait-Sec": str(wait)},
    )
    assert verdict.kind is Kind.RATE_LIMIT
    return FailedAttempt(verdict)


def test_a_day_long_rate_limit_wait_fails_at_once() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(max_retries=5, sleep=sleeps.append)
    attempt = Script(rate_limited(86340))
    with pytest.raises(QualysAPIError) as caught:
        policy.run(attempt, label="host_detections: /api/5.0/x", stats=RequestStats())
    message = str(caught.value)
    assert sleeps == []
    assert attempt.calls == 1
    assert message.startswith("host_detections: /api/5.0/x failed: Qualys asked to wait 86340 s")
    assert "(23 h 59 min)" in message
    assert "max_rate_limit_wait" in message
    assert "\n" not in message


def test_rate_limit_waits_up_to_the_limit_are_waited_out() -> None:
    sleeps: list[float] = []
    paused: list[float] = []
    policy = RetryPolicy(max_retries=5, sleep=sleeps.append, max_rate_limit_wait=60)
    attempt = Script(rate_limited(60), rate_limited(5))
    stats = RequestStats()
    assert policy.run(attempt, label="l", stats=stats, on_rate_limit=paused.append) == "ok"
    assert sleeps == [60, 5]
    assert paused == [60, 5]
    assert stats.rate_409s == 2
    # None: no limit, whatever Qualys says.
    unlimited = RetryPolicy(max_retries=1, sleep=sleeps.append, max_rate_limit_wait=None)
    assert unlimited.run(Script(rate_limited(86340)), label="l", stats=RequestStats()) == "ok"
    assert sleeps[-1] == 86340


def test_max_rate_limit_wait_setting_reaches_every_stream(world: Simulator) -> None:
    default = TapQualys(config=gateway_config(world), validate_config=False).streams
    assert {s.retry_policy.max_rate_limit_wait for s in default.values()} == {3600}
    raised = TapQualys(
        config=gateway_config(world, max_rate_limit_wait=90000), validate_config=False
    ).streams
    assert {s.retry_policy.max_rate_limit_wait for s in raised.values()} == {90000}
    assert TapQualys.config_jsonschema["properties"]["max_rate_limit_wait"]["default"] == 3600


def test_a_day_long_towait_on_a_good_answer_is_not_slept(world: Simulator, tmp_path: Path) -> None:
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
    result = run_cli(tmp_path, gateway_config(world), ["hosts"])
    assert result.returncode == 0, result.stderr[-2000:]
    records, _ = parse_messages(result.stdout)
    assert len(records["hosts"]) == 2
    assert "above max_rate_limit_wait" in result.stderr


def test_documented_envelope_quirks_lose_nothing() -> None:
    # §4: truncation URLs that carry parameters we never sent; §8: hasMore as the strings "1"/"0",
    # and SUCCESS pages with hasMore=1 but no lastSeenAssetId (retried, never taken as the end).
    with Simulator(hosts=30, seed=3, kb_page_size=200) as sim:
        sim.configure(
            csam_has_more_as_string=True,
            warning_url_extra_params=True,
            faults={"csam_no_cursor": 0.3},
        )
        config = gateway_config(sim, truncation_limit=7, csam_page_size=10)
        records, _ = run_tap(config, ["csam_assets", "hosts", "knowledge_base"])
        assert sim.stats()["faults"].get("csam_no_cursor", 0) > 0
        for stream, key, truth_key in (
            ("csam_assets", "assetId", "assetId"),
            ("hosts", "id", "ID"),
            ("knowledge_base", "qid", "QID"),
        ):
            loaded = [record[key] for record in records[stream]]
            assert sorted(loaded) == sorted(r[truth_key] for r in sim.ground_truth(stream)), stream
        # Following the URL verbatim would have sent details=None: hosts without their OS.
        assert all(record["os"] for record in records["hosts"])
