"""Numbers are numbers and lists are lists: the tap's records from what the simulator sends.

Qualys sends every value as XML text; ``casting`` types it from the stream's schema. A value that
reads as a number but stays a string (``"9.0"``) sorts and compares wrongly downstream; a list
sent as comma-separated text cannot be joined on. Only codes and labels stay text on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from qualys_simulator.testing import SimulatorProcess
from tap_qualys import qualys_xml
from tests.simulator.helpers import HL, HLD, KB, call

#: Keys whose numeric-looking text is a code or a label, not a quantity.
TEXT_ON_PURPOSE = {
    "cvss3_version",
    "cvss4_version",  # "3.1", "4.0": versions
    # CVSS v2 sub-values: numeric codes in some answers, names in others (doc §5)
    "vector",
    "complexity",
    "confidentiality",
    "integrity",
    "availability",
    "authentication",
    "exploitability",
    "remediation_level",
    "report_confidence",
    # CVSS v3 sub-values, same
    "privileges_required",
    "user_interaction",
    "scope",
    "exploit_code_maturity",
    "section",  # a compliance section number, "6.2"
    "value",  # QDS factors: a score, a version ("v3.x"), a vector, a list, by factor name
}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def numeric_strings(value: Any, key: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for name, item in value.items():
            yield from numeric_strings(item, name)
    elif isinstance(value, list):
        for item in value:
            yield from numeric_strings(item, key)
    elif isinstance(value, str) and NUMBER.fullmatch(value) and key not in TEXT_ON_PURPOSE:
        yield key


@pytest.fixture(scope="module")
def records() -> dict[str, list[dict[str, Any]]]:
    with SimulatorProcess(
        hosts=30, seed=11, detections_per_host=6, kb_size=120, kb_extra=10
    ) as sim:
        kb = call(
            sim,
            KB,
            {
                "details": "All",
                "show_disabled_flag": "1",
                "show_qid_change_log": "1",
                "show_supported_modules_info": "1",
                "show_pci_reasons": "1",
            },
        ).content
        hosts = call(
            sim,
            HL,
            {
                "details": "All",
                "truncation_limit": "0",
                "show_asset_id": "1",
                "show_tags": "1",
                "show_cloud_tags": "1",
                "host_metadata": "all",
                "show_trurisk": "1",
                "show_trurisk_factors": "1",
            },
        ).content
        detections = call(
            sim,
            HLD,
            {
                "truncation_limit": "0",
                "show_results": "1",
                "status": "New,Active,Re-Opened,Fixed",
                "show_qds": "1",
                "show_qds_factors": "1",
                "show_igs": "1",
                "show_tags": "1",
            },
        ).content
    return {
        "knowledge_base": list(qualys_xml.parse_knowledge_base(iter([kb]))),
        "hosts": list(qualys_xml.parse_host_list(iter([hosts]))),
        "host_detections": list(qualys_xml.parse_host_list_detection(iter([detections]))),
    }


@pytest.mark.parametrize("stream", ["knowledge_base", "hosts", "host_detections"])
def test_no_number_is_left_as_text(records: dict[str, list[dict[str, Any]]], stream: str) -> None:
    assert records[stream]
    found = sorted({key for record in records[stream] for key in numeric_strings(record)})
    assert not found, f"{stream}: numbers left as strings in {found}"


def test_list_like_values_are_arrays(records: dict[str, list[dict[str, Any]]]) -> None:
    modules = [r["supported_modules"] for r in records["knowledge_base"] if r["supported_modules"]]
    assert modules
    assert all(isinstance(m, list) and all(isinstance(x, str) for x in m) for m in modules)
    assert ["CA-Windows Agent", "CA-Linux Agent"] in modules
    scores = [r["cvss_v4"]["base"] for r in records["knowledge_base"] if r["cvss_v4"]]
    assert scores
    assert all(isinstance(score, float) for score in scores)
