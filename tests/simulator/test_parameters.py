"""Every documented parameter of every endpoint version is accepted; unknown ones get 1901.

The cases come from the simulator's own parameter tables (qualys_simulator/vm_params.py), so a
parameter added there is tested here without further edits.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from qualys_simulator import vm_params
from qualys_simulator.testing import SimulatorProcess
from tests.simulator.helpers import ALL_STATUSES, HL, HLD, KB, call, dtd, simple_return, xml

PATHS = {
    "knowledge_base": "/api/{v}/fo/knowledge_base/vuln/",
    "host_list": "/api/{v}/fo/asset/host/",
    "host_detection": "/api/{v}/fo/asset/host/vm/detection/",
}
ACCEPTED = [
    pytest.param(endpoint, version, param, id=f"{endpoint}-{version}-{param.name}")
    for endpoint, (versions, table) in vm_params.ENDPOINTS.items()
    for version in versions
    for param in table.values()
    if param.name in vm_params.accepted(endpoint, version)
]
TOO_NEW = [
    pytest.param(endpoint, version, param, id=f"{endpoint}-{version}-{param.name}")
    for endpoint, (versions, table) in vm_params.ENDPOINTS.items()
    for version in versions
    for param in table.values()
    if param.name not in vm_params.accepted(endpoint, version)
]


@pytest.mark.parametrize(("endpoint", "version", "param"), ACCEPTED)
def test_documented_parameter_is_accepted(
    sim: SimulatorProcess, endpoint: str, version: str, param: vm_params.Param
) -> None:
    params = {param.name: param.sample, **param.needs}
    if endpoint != "knowledge_base" and param.name != "truncation_limit":
        params.setdefault("truncation_limit", "2")  # keep each answer small
    response = call(sim, PATHS[endpoint].format(v=version), params)
    assert response.status_code == 200, response.text[:500]
    assert xml(response).find("RESPONSE") is not None


@pytest.mark.parametrize(("endpoint", "version", "param"), TOO_NEW)
def test_parameter_of_a_later_version_is_unrecognized(
    sim: SimulatorProcess, endpoint: str, version: str, param: vm_params.Param
) -> None:
    response = call(sim, PATHS[endpoint].format(v=version), {param.name: param.sample})
    assert response.status_code == 400
    assert simple_return(response) == ("1901", f"Unrecognized parameter(s): {param.name}")


@pytest.mark.parametrize("endpoint", list(vm_params.ENDPOINTS))
def test_unknown_parameter_is_1901_with_the_real_text(sim: SimulatorProcess, endpoint: str) -> None:
    versions, _ = vm_params.ENDPOINTS[endpoint]
    response = call(sim, PATHS[endpoint].format(v=versions[-1]), {"show_everything": "1"})
    assert response.status_code == 400
    assert simple_return(response) == ("1901", "Unrecognized parameter(s): show_everything")


def test_the_parameters_qualysetl_sends_are_accepted(sim: SimulatorProcess) -> None:
    """The v5 defaults Qualys' own ETL sends (the bug report: 1901 for each of these)."""
    host_list = {"details": "All", "show_tags": "1", "show_cloud_tags": "1", "show_asset_id": "1",
                 "host_metadata": "all", "show_trurisk": "1", "show_trurisk_factors": "1",
                 "cloud_agent_activationkey": "0", "truncation_limit": "5"}
    assert call(sim, HL, host_list).status_code == 200
    detections = {"show_asset_id": "1", "show_reopened_info": "1", "show_tags": "1",
                  "show_results": "1", "show_igs": "1", "status": ALL_STATUSES,
                  "include_ignored": "1", "include_disabled": "1", "show_qds": "1",
                  "show_qds_factors": "1", "show_arf_data": "1",
                  "arf_filter_keys": "non-running-kernel", "mitre_attack_details": "1",
                  "truncation_limit": "5"}
    assert call(sim, HLD, detections).status_code == 200


def _detections(sim: SimulatorProcess, **params: str) -> list:
    base = {"truncation_limit": "0", "status": ALL_STATUSES, "show_results": "0"}
    return xml(call(sim, HLD, {**base, **params})).findall(".//DETECTION")


def test_show_arf_data_and_mitre_attack_details_add_their_elements(sim: SimulatorProcess) -> None:
    plain = _detections(sim)
    assert plain
    assert not any(d.find("AFFECT_RUNNING_KERNEL") is not None for d in plain)
    assert not any(d.find("MITRE_TACTIC_ID") is not None for d in plain)
    rich = _detections(sim, show_arf_data="1", mitre_attack_details="1")
    assert len(rich) == len(plain)
    for tag in ("AFFECT_RUNNING_KERNEL", "AFFECT_RUNNING_SERVICE", "AFFECT_EXPLOITABLE_CONFIG",
                "MITRE_TACTIC_NAME", "MITRE_TECHNIQUE_NAME", "MITRE_TACTIC_ID",
                "MITRE_TECHNIQUE_ID"):
        assert any(d.find(tag) is not None for d in rich), tag
    assert dtd("host_list_detection.dtd").validate(
        xml(call(sim, HLD, {"truncation_limit": "0", "status": ALL_STATUSES,
                            "show_arf_data": "1", "mitre_attack_details": "1"}))
    )


@pytest.mark.parametrize(("key", "tag"), [
    ("non-running-kernel", "AFFECT_RUNNING_KERNEL"),
    ("non-running-service", "AFFECT_RUNNING_SERVICE"),
    ("config-not-exploitable", "AFFECT_EXPLOITABLE_CONFIG"),
])
def test_arf_filter_keys_leave_out_the_harmless(sim: SimulatorProcess, key: str, tag: str) -> None:
    every = _detections(sim, show_arf_data="1")
    harmless = [d for d in every if d.findtext(tag) == "0"]
    assert harmless, f"the world has no detection with {tag}=0: the test proves nothing"
    kept = _detections(sim, show_arf_data="1", arf_filter_keys=key)
    assert len(kept) == len(every) - len(harmless)
    assert all(d.findtext(tag) != "0" for d in kept)


def test_show_ars_adds_the_asset_risk_score(sim: SimulatorProcess) -> None:
    plain = xml(call(sim, HL, {"details": "All", "truncation_limit": "0"}))
    assert plain.find(".//ASSET_RISK_SCORE") is None
    root = xml(call(sim, HL, {"details": "All", "truncation_limit": "0", "show_ars": "1",
                              "show_ars_factors": "1"}))
    hosts = root.findall(".//HOST")
    assert all(h.findtext("ASSET_RISK_SCORE", "").isdigit() for h in hosts)
    assert all(len(h.findall("ARS_FACTORS/VULN_COUNT")) == 4 for h in hosts)
    assert dtd("host_list.dtd").validate(root)
    scores = sorted(int(h.findtext("ASSET_RISK_SCORE", "")) for h in hosts)
    middle = scores[len(scores) // 2]
    high = xml(call(sim, HL, {"truncation_limit": "0", "show_ars": "1", "ars_min": str(middle)}))
    assert len(high.findall(".//HOST")) == sum(s >= middle for s in scores)


def test_detection_last_tested_days_split_the_detections(sim: SimulatorProcess) -> None:
    every = _detections(sim)
    now = datetime.fromisoformat(sim.admin_get("/admin/clock")["now"].replace("Z", "+00:00"))
    ages = sorted((now - datetime.fromisoformat(
        (d.findtext("LAST_TEST_DATETIME") or "").replace("Z", "+00:00"))).days for d in every)
    days = str(ages[len(ages) // 2] + 1)
    recent = _detections(sim, detection_last_tested_since_days=days)
    older = _detections(sim, detection_last_tested_before_days=days)
    assert recent
    assert older
    assert len(recent) + len(older) == len(every)


def test_no_qid_has_a_user_customization(sim: SimulatorProcess) -> None:
    root = xml(call(sim, KB, {"last_modified_by_user_after": "2000-01-01"}))
    assert root.find("RESPONSE/VULN_LIST") is None
    assert xml(call(sim, KB)).find("RESPONSE/VULN_LIST") is not None
