"""Fields Qualys' own ETL gets, from the tap too: ARF, MITRE ATT&CK, OS_CPE and tags of the
detection hosts, the Asset Risk Score. Each is asked for (the parameters sent), served by the
simulator, parsed and emitted (compared with the simulator's ground truth)."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from qualys_simulator import vm_params
from qualys_simulator.testing import SimulatorProcess
from tap_qualys.tap import TapQualys
from tests.gateway_support import gateway_config, run_tap

HOSTS = ("hosts", "host_detections")
ARF = ("affect_running_kernel", "affect_running_service", "affect_exploitable_config")
MITRE = ("mitre_tactic_name", "mitre_technique_name", "mitre_tactic_id", "mitre_technique_id")


@pytest.fixture(scope="module")
def world() -> t.Iterator[SimulatorProcess]:
    with SimulatorProcess(hosts=20, seed=5, detections_per_host=8) as sim:
        yield sim


def _params(config: dict[str, t.Any], name: str) -> dict[str, t.Any]:
    params = TapQualys(config=config, validate_config=False).streams[name].qualys_params(None)
    return {k: v for k, v in params.items() if v is not None}


def _lower(record: dict[str, t.Any]) -> dict[str, t.Any]:
    return {k.lower(): v for k, v in record.items()}


def test_the_tap_asks_for_arf_mitre_and_ars_by_default(world: SimulatorProcess) -> None:
    detections = _params(gateway_config(world), "host_detections")
    assert detections["show_arf_data"] == 1
    assert detections["mitre_attack_details"] == 1
    # Tags come with the hosts stream; repeated per detection only when asked for.
    assert detections["show_tags"] == 0
    hosts = _params(gateway_config(world), "hosts")
    assert hosts["show_ars"] == 1
    assert hosts["show_ars_factors"] == 1


def test_every_parameter_the_tap_sends_is_a_documented_one(world: SimulatorProcess) -> None:
    config = gateway_config(world, tag_set_include=[1], detection_host_tags=True)
    for stream, endpoint in (("hosts", "host_list"), ("host_detections", "host_detection"),
                             ("knowledge_base", "knowledge_base")):
        table = vm_params.accepted(endpoint, "5.0" if endpoint != "knowledge_base" else "4.0")
        sent = set(_params(config, stream))
        assert sent <= set(table), f"{stream}: {sorted(sent - set(table))} not documented"


def test_new_fields_match_the_ground_truth(world: SimulatorProcess) -> None:
    records, _ = run_tap(gateway_config(world), HOSTS)
    truth = {(r["HOST_ID"], r["UNIQUE_VULN_ID"]): _lower(r)
             for r in world.ground_truth("host_detections")}
    detections = records["host_detections"]
    assert len(detections) == len(truth)
    for record in detections:
        expected = truth[(record["host_id"], record["unique_vuln_id"])]
        for name in ("host_os_cpe", *ARF, *MITRE):
            assert record[name] == expected[name], name
        assert record["host_tags"] is None  # not asked for by default
    assert all(r["host_os_cpe"] for r in detections)
    for name in (*ARF, *MITRE):
        assert any(r[name] is not None for r in detections), f"{name} never filled"
    assert any(r["affect_running_kernel"] is False for r in detections)
    hosts = {h["ID"]: _lower(h) for h in world.ground_truth("hosts")}
    for record in records["hosts"]:
        expected = hosts[record["id"]]
        assert record["asset_risk_score"] == expected["asset_risk_score"]
        assert record["ars_factors"] == expected["ars_factors"]
        assert len(record["ars_factors"]["vuln_count"]) == 4


def test_detection_host_tags_setting_puts_tags_on_each_detection(world: SimulatorProcess) -> None:
    records, _ = run_tap(gateway_config(world, detection_host_tags=True), HOSTS)
    tags_by_host = {h["id"]: h["tags"] for h in records["hosts"]}
    detections = records["host_detections"]
    assert any(r["host_tags"] for r in detections)
    for record in detections:
        assert record["host_tags"] == tags_by_host[record["host_id"]]


def test_settings_turn_the_new_fields_off(world: SimulatorProcess) -> None:
    config = gateway_config(world, show_arf_data=False, mitre_attack_details=False,
                            show_trurisk=False)
    assert "show_arf_data" not in _params(config, "host_detections") or not _params(
        config, "host_detections")["show_arf_data"]
    records, _ = run_tap(config, HOSTS)
    assert all(r[name] is None for r in records["host_detections"] for name in (*ARF, *MITRE))
    assert all(r["host_os_cpe"] for r in records["host_detections"])  # always sent by Qualys
    assert all(h["asset_risk_score"] is None for h in records["hosts"])


DOC = Path(__file__).parents[1] / "docs" / "api-parameters.md"
SECTIONS = {"knowledge_base/vuln/": ("knowledge_base", "knowledge_base"),
            "asset/host/vm/detection/": ("host_detection", "host_detections"),
            "asset/host/": ("host_list", "hosts")}


def _doc_tables() -> dict[str, dict[str, str]]:
    """endpoint -> {parameter: "yes" | "setting" | "paging" | "no"} from the page's tables."""
    tables: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            endpoint = next((e for path, (e, _) in SECTIONS.items() if path in line), None)
            current = None if endpoint is None else tables.setdefault(endpoint, {})
        elif current is not None and line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            current[cells[0].strip("`")] = cells[3]
    return tables


def _sent(config: dict[str, t.Any], stream_name: str) -> set[str]:
    stream = TapQualys(config=config, validate_config=False).streams[stream_name]
    context = None
    if stream_name == "host_detections":
        context = stream.queue_batch([1, 2], last=True)
    return set(stream.prepare_request_payload(context, None))


def test_the_parameter_page_lists_every_parameter_and_what_the_tap_sends(
    world: SimulatorProcess,
) -> None:
    tables = _doc_tables()
    everything = gateway_config(world, start_date="2020-01-01T00:00:00Z", id_min=1, id_max=9,
                                tag_set_include=[1], tag_set_exclude=[2],
                                detection_host_tags=True)
    for path, (endpoint, stream_name) in SECTIONS.items():
        documented = tables[endpoint]
        assert set(documented) == set(vm_params.ENDPOINTS[endpoint][1]), path
        sent = _sent(gateway_config(world), stream_name) | _sent(everything, stream_name)
        said = {name for name, how in documented.items() if how in ("yes", "setting")}
        # id_min is also a paging parameter; the KB window needs a running sync's state.
        unseen = {"id_min", "last_modified_after"}
        assert sent - unseen == said - unseen, endpoint
        assert all(documented[name] != "no" for name in sent), endpoint
