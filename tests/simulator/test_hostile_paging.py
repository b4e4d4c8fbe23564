"""Servers that page badly: detection answers truncated although no limit was asked for, and
the `stalled_pager` fault (no record, yet "more" with a cursor one past the one sent)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from qualys_simulator.testing import SimulatorProcess
from tests.simulator.helpers import ALL_STATUSES, HL, HLD, call, detection_records, follow, xml


@pytest.fixture(scope="module")
def truncating() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(hosts=20, seed=5, detections_per_host=3,
                          detection_truncation_limit=4) as s:
        yield s


def test_detections_truncated_despite_truncation_limit_0(truncating: SimulatorProcess) -> None:
    ids = [h["ID"] for h in truncating.ground_truth("hosts")][:10]
    params = {"ids": ",".join(map(str, ids)), "truncation_limit": "0", "status": ALL_STATUSES,
              "include_ignored": "1", "include_disabled": "1", "show_igs": "1"}
    root = xml(call(truncating, HLD, params))
    assert len(root.findall("RESPONSE/HOST_LIST/HOST")) == 4
    warning = root.find("RESPONSE/WARNING")
    assert warning is not None
    assert warning.findtext("CODE") == "1980"
    pairs = parse_qsl(urlsplit(warning.findtext("URL") or "").query)
    assert ("truncation_limit", "0") in pairs  # the URL repeats what was asked
    assert pairs[-1][0] == "id_min"
    # Following the URLs gives every detection of the batch, once.
    pages = follow(truncating, HLD, params)
    assert len(pages) > 1
    wanted = set(ids)
    truth = [d for d in truncating.ground_truth("host_detections") if d["HOST_ID"] in wanted]
    assert len(detection_records(pages)) == len(truth)


def test_host_list_is_not_truncated_by_the_detection_setting(truncating: SimulatorProcess) -> None:
    root = xml(call(truncating, HL, {"truncation_limit": "0", "details": "Basic"}))
    assert len(root.findall("RESPONSE/HOST_LIST/HOST")) == 20
    assert root.find("RESPONSE/WARNING") is None


@pytest.fixture
def stalled() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(hosts=5, seed=5, detections_per_host=1) as s:
        s.configure(faults={"stalled_pager": 1.0})
        yield s


def test_stalled_pager_on_the_vm_api(stalled: SimulatorProcess) -> None:
    root = xml(call(stalled, HL, {"truncation_limit": "10", "id_min": "41"}))
    assert root.find("RESPONSE/HOST_LIST") is None
    url = root.findtext("RESPONSE/WARNING/URL") or ""
    assert url.endswith("id_min=42")


def test_stalled_pager_on_csam(stalled: SimulatorProcess) -> None:
    token = requests.post(stalled.url + "/auth", data={
        "username": stalled.username, "password": stalled.password, "token": "true"},
        timeout=30).text
    answer = requests.post(stalled.url + "/rest/2.0/search/am/asset",
                           params={"pageSize": 5, "lastSeenAssetId": 77},
                           headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    assert answer["responseCode"] == "SUCCESS"
    assert answer["hasMore"] in (1, "1")
    assert answer["lastSeenAssetId"] == 78
    assert answer["assetListData"]["asset"] == []
