"""Filters and output switches of KB, Host List and Host List Detection; parameter errors."""

from __future__ import annotations

import pytest
import requests

from qualys_simulator.testing import SimulatorProcess
from tests.simulator.helpers import (
    ALL_STATUSES,
    HL,
    HLD,
    KB,
    TRUTH_FIELDS,
    call,
    detection_records,
    host_ids,
    simple_return,
    xml,
)


def _ids(sim: SimulatorProcess) -> list[int]:
    return [h["ID"] for h in sim.ground_truth("hosts")]


def test_ids_list_and_ranges(sim: SimulatorProcess) -> None:
    ids = _ids(sim)
    wanted = f"{ids[0]},{ids[5]}-{ids[8]},{ids[-1]}"
    got = host_ids([xml(call(sim, HL, {"ids": wanted}))])
    assert got == [ids[0], *ids[5:9], ids[-1]]
    got = host_ids([xml(call(sim, HLD, {"ids": wanted, "status": ALL_STATUSES,
                                        "show_igs": "1", "truncation_limit": "0"}))])
    assert set(got) <= {ids[0], *ids[5:9], ids[-1]}
    assert got


def test_id_min_id_max(sim: SimulatorProcess) -> None:
    ids = _ids(sim)
    got = host_ids([xml(call(sim, HL, {"id_min": str(ids[3]), "id_max": str(ids[10])}))])
    assert got == ids[3:11]


def test_status_filter_and_default(sim: SimulatorProcess) -> None:
    truth = sim.ground_truth("host_detections")
    for status in ("New", "Active", "Fixed", "Re-Opened"):
        got = detection_records([xml(call(sim, HLD, {"status": status, "show_igs": "1",
                                                     "truncation_limit": "0", **TRUTH_FIELDS}))])
        assert got == [d for d in truth if d["STATUS"] == status], status
    default = detection_records([xml(call(sim, HLD, {"show_igs": "1", "truncation_limit": "0"}))])
    assert {d["STATUS"] for d in default} == {"New", "Active", "Re-Opened"}


def test_information_gathered_only_with_show_igs(sim: SimulatorProcess) -> None:
    base = {"status": ALL_STATUSES, "truncation_limit": "0"}
    without = detection_records([xml(call(sim, HLD, base))])
    with_igs = detection_records([xml(call(sim, HLD, {**base, "show_igs": "1"}))])
    assert "Info" not in {d["TYPE"] for d in without}
    assert {d["TYPE"] for d in with_igs} == {"Confirmed", "Potential", "Info"}
    assert [d for d in with_igs if d["TYPE"] != "Info"] == without


def test_qids_and_severities(sim: SimulatorProcess) -> None:
    base = {"status": ALL_STATUSES, "truncation_limit": "0", "show_igs": "1"}
    everything = xml(call(sim, HLD, base))
    qid = int(everything.findtext(".//DETECTION/QID") or 0)
    got = detection_records([xml(call(sim, HLD, {**base, "qids": str(qid)}))])
    assert got
    assert {d["QID"] for d in got} == {qid}
    high = xml(call(sim, HLD, {**base, "severities": "4-5"}))
    severities = {int(s.text or 0) for s in high.iterfind(".//DETECTION/SEVERITY")}
    assert severities == {4, 5}


def test_tag_filters(sim: SimulatorProcess) -> None:
    tag = "7100002"
    params = {"show_tags": "1", "truncation_limit": "0", "use_tags": "1"}
    included = xml(call(sim, HL, {**params, "tag_set_include": tag}))
    hosts = included.findall(".//HOST")
    assert hosts
    assert all(tag in [t.text for t in h.iterfind("TAGS/TAG/TAG_ID")] for h in hosts)
    excluded = xml(call(sim, HL, {**params, "tag_set_exclude": tag}))
    assert len(hosts) + len(excluded.findall(".//HOST")) == len(_ids(sim))
    by_name = xml(call(sim, HL, {**params, "tag_set_by": "name", "tag_set_include": "Production"}))
    assert host_ids([by_name]) == host_ids([included])


def test_vm_processed_after_selects_rescanned_hosts() -> None:
    with SimulatorProcess(hosts=60, seed=4, detections_per_host=3) as s:
        before = s.admin_get("/admin/clock")["now"]
        s.advance(86400, rescan_fraction=0.3, purge=0, new_hosts=0)
        changed = xml(call(s, HL, {"vm_processed_after": before, "truncation_limit": "0"}))
        everything = {h["ID"]: h for h in s.ground_truth("hosts")}
        got = host_ids([changed])
        assert 0 < len(got) < len(everything)
        for host_id, host in everything.items():
            assert (host["LAST_VM_SCANNED_DATE"] >= before) == (host_id in got)
        # The same filter on detections returns only those hosts, with fresh processed dates.
        detections = detection_records([xml(call(s, HLD, {
            "vm_processed_after": before, "status": ALL_STATUSES, "show_igs": "1",
            "truncation_limit": "0"}))])
        assert {d["HOST_ID"] for d in detections} <= set(got)
        assert all(d["LAST_PROCESSED_DATETIME"] >= before for d in detections)
        # Date-only form is accepted too.
        day = xml(call(s, HL, {"vm_processed_after": before[:10], "truncation_limit": "0"}))
        assert set(got) <= set(host_ids([day]))


def test_knowledge_base_last_modified_after(sim: SimulatorProcess) -> None:
    truth = sim.ground_truth("knowledge_base")
    dates = sorted(r["LAST_SERVICE_MODIFICATION_DATETIME"] for r in truth)
    cut = dates[len(dates) // 2]
    root = xml(call(sim, KB, {"last_modified_after": cut}))
    got = [int(q.text or 0) for q in root.iterfind(".//VULN/QID")]
    assert got == [r["QID"] for r in truth if r["LAST_SERVICE_MODIFICATION_DATETIME"] >= cut]
    before = xml(call(sim, KB, {"last_modified_before": cut}))
    assert len(got) + len(before.findall(".//VULN")) >= len(truth)


def test_knowledge_base_ids(sim: SimulatorProcess) -> None:
    qids = [r["QID"] for r in sim.ground_truth("knowledge_base")]
    root = xml(call(sim, KB, {"ids": f"{qids[2]},{qids[10]}-{qids[12]}"}))
    assert [int(q.text or 0) for q in root.iterfind(".//VULN/QID")] == [qids[2], *qids[10:13]]
    root = xml(call(sim, KB, {"id_min": str(qids[-3])}))
    assert [int(q.text or 0) for q in root.iterfind(".//VULN/QID")] == qids[-3:]


@pytest.mark.parametrize(("param", "element"), [
    ("show_asset_id", "ASSET_ID"), ("show_tags", "TAGS"), ("show_qds", "DETECTION_LIST//QDS"),
    ("show_qds_factors", "DETECTION_LIST//QDS_FACTORS"), ("show_cloud_tags", "CLOUD_PROVIDER_TAGS"),
])
def test_detection_show_flags(sim: SimulatorProcess, param: str, element: str) -> None:
    base = {"truncation_limit": "0", "status": ALL_STATUSES}
    assert xml(call(sim, HLD, base)).find(f".//HOST/{element}") is None
    assert xml(call(sim, HLD, {**base, param: "1"})).find(f".//HOST/{element}") is not None


def test_show_results_and_metadata(sim: SimulatorProcess) -> None:
    base = {"truncation_limit": "0", "status": ALL_STATUSES}
    assert xml(call(sim, HLD, base)).find(".//RESULTS") is not None  # on by default
    assert xml(call(sim, HLD, {**base, "show_results": "0"})).find(".//RESULTS") is None
    assert xml(call(sim, HLD, {**base, "host_metadata": "all"})).find(".//METADATA") is not None


def test_get_and_post_give_the_same_document(sim: SimulatorProcess) -> None:
    params = {"truncation_limit": "5", "show_tags": "1"}
    assert call(sim, HLD, params, method="GET").content == call(sim, HLD, params).content


@pytest.mark.parametrize(("params", "code"), [
    ({"bogus": "1"}, "1901"),
    ({"show_tags": "yes"}, "1905"),
    ({"vm_processed_after": "yesterday"}, "1905"),
    ({"status": "Open"}, "1905"),
    ({"truncation_limit": "-1"}, "1905"),
    ({"ids": "1-"}, "1905"),
    ({"action": "delete"}, "1905"),
    ({"tag_set_include": "1"}, "1907"),
    ({"use_tags": "1"}, "1922"),
])
def test_parameter_errors(sim: SimulatorProcess, params: dict[str, str], code: str) -> None:
    response = call(sim, HLD, params)
    assert response.status_code == 400
    assert simple_return(response)[0] == code
    assert "X-RateLimit-Limit" in response.headers


def test_missing_action_is_1903(sim: SimulatorProcess) -> None:
    response = requests.post(sim.url + HL, data={}, auth=(sim.username, sim.password),
                             headers={"X-Requested-With": "t"}, timeout=30)
    assert response.status_code == 400
    assert simple_return(response)[0] == "1903"


def test_consultant_rejects_trurisk() -> None:
    with SimulatorProcess(hosts=5, consultant=True) as s:
        response = call(s, HL, {"show_trurisk": "1"})
        assert response.status_code == 400
        assert simple_return(response)[0] == "1901"
        assert call(s, HL).status_code == 200
