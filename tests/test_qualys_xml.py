"""Streaming Qualys XML parsing: records, paging info, and every way a body can be wrong."""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import psutil
import pytest
from singer_sdk.helpers._typing import conform_record_data_types
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_qualys.errors import QualysTruncatedResponseError, QualysXMLError, SimpleReturnError
from tap_qualys.qualys_xml import (
    MAX_TEXT_BYTES,
    XMLPage,
    parse_host_list,
    parse_host_list_detection,
    parse_knowledge_base,
    parse_simple_return,
)

FIXTURES = Path(__file__).parent / "fixtures" / "xml"
Parser = Callable[[Any], XMLPage]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def chunks_of(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    return (body[i : i + size] for i in range(0, len(body), size))


def validator(stream: str) -> jsonschema.Draft7Validator:
    text = resources.files("tap_qualys.schemas").joinpath(f"{stream}.json").read_text()
    schema = json.loads(text)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def parse_all(parser: Parser, body: bytes, chunk_size: int = 64 * 1024) -> tuple[list, XMLPage]:
    page = parser(chunks_of(body, chunk_size))
    return list(page), page


# --- Host List Detection -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detections() -> tuple[list[dict[str, Any]], XMLPage]:
    return parse_all(parse_host_list_detection, fixture("host_list_detection.xml"))


def test_detections_one_record_per_detection_with_host_id(detections):
    records, _ = detections
    assert [(r["host_id"], r["unique_vuln_id"]) for r in records] == [
        (1001, 700001),
        (1001, 700002),
        (1003, 700003),  # host 1002 has no DETECTION_LIST and yields nothing
    ]


def test_detection_values_are_typed(detections):
    first = detections[0][0]
    assert first["qid"] == 38173
    assert first["severity"] == 4
    assert first["port"] == 443
    assert first["ssl"] is True
    assert first["is_ignored"] is False
    assert first["affect_running_kernel"] is True
    assert first["status"] == "Re-Opened"
    assert first["first_found_datetime"] == "2025-03-01T10:00:00Z"
    assert first["times_reopened"] == 1
    assert first["qds"] == 87
    assert first["qds_severity"] == "HIGH"
    assert first["qds_factors"] == [
        {"name": "CVSS", "value": "7.5"},
        {"name": "epss", "value": "0.97"},
    ]


def test_detection_lists_forced_and_empties_null(detections):
    second = detections[0][1]
    assert second["qds_factors"] == [{"name": "trending", "value": "1"}]  # one item: still a list
    assert second["fqdn"] is None  # <FQDN />
    assert second["qds"] is None
    assert second["qds_severity"] is None
    assert second["port"] is None  # absent element: key present, null
    assert "brand_new_element" not in detections[0][0]


def test_results_keep_their_whitespace_and_lose_only_the_padding(detections):
    records, _ = detections
    # Padding outside the CDATA section goes; tabs, newlines, indentation inside stay.
    assert records[0]["results"] == (
        "Certificate #0 CN=web01\n\texpires\t2026-01-01\n  indented line\n"
    )
    assert records[1]["results"] == "web01.example.com"  # plain text
    assert records[2]["results"] == "  leading spaces are data\tand a tab\n"  # unpadded CDATA


def test_detection_paging_info(detections):
    _, page = detections
    assert page.next_url == (
        "https://qualysapi.qualys.com/api/5.0/fo/asset/host/vm/detection/"
        "?action=list&truncation_limit=3&id_min=1004"
    )
    assert page.warning_code == 1980
    assert page.response_datetime is not None
    assert page.response_datetime.isoformat() == "2026-11-23T10:15:00+00:00"


def test_one_byte_chunks_give_the_same_records(detections):
    records, page = parse_all(
        parse_host_list_detection, fixture("host_list_detection.xml"), chunk_size=1
    )
    assert records == detections[0]
    assert page.next_url == detections[1].next_url


def test_detection_records_match_schema(detections):
    check = validator("host_detections")
    for record in detections[0]:
        check.validate(record)


def test_last_page_has_no_next_url():
    body = fixture("host_list_detection.xml")
    start, end = body.index(b"<WARNING>"), body.index(b"</WARNING>") + len(b"</WARNING>")
    records, page = parse_all(parse_host_list_detection, body[:start] + body[end:])
    assert len(records) == 3
    assert page.next_url is None


def test_response_without_host_list_yields_nothing():
    body = (
        b"<HOST_LIST_VM_DETECTION_OUTPUT><RESPONSE><DATETIME>2026-11-23T10:15:00Z</DATETIME>"
        b"</RESPONSE></HOST_LIST_VM_DETECTION_OUTPUT>"
    )
    records, page = parse_all(parse_host_list_detection, body)
    assert records == []
    assert page.next_url is None


# --- Host List -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hosts() -> tuple[list[dict[str, Any]], XMLPage]:
    return parse_all(parse_host_list, fixture("host_list.xml"))


def test_hosts_nested_fields(hosts):
    records, _ = hosts
    host = records[0]
    assert host["id"] == 1001
    assert host["asset_id"] == 5001
    assert host["network_id"] == 0
    assert host["asset_group_ids"] == [12, 34]  # comma-separated in the XML
    assert host["os"] == "Windows Server 2019"  # padded CDATA
    assert host["dns_data"] == {
        "hostname": "web01",
        "domain": "example.com",
        "fqdn": "web01.example.com",
    }
    assert host["tags"] == [
        {"tag_id": 77, "name": "Production", "color": "#FFFFFF", "background_color": "#FF0000"}
    ]
    assert host["metadata"] == {
        "ec2": [
            {
                "name": "latest/meta-data/instance-type",
                "last_status": "Success",
                "value": "t3.large",
                "last_success_date": "2026-11-20T03:12:45Z",
                "last_error_date": None,
                "last_error": None,
            }
        ],
        "azure": None,
        "google": None,
    }
    assert host["cloud_provider_tags"] == [
        {"name": "env", "value": "prod", "last_success_date": "2026-11-20T03:12:45Z"}
    ]
    assert host["trurisk_score_factors"] == {
        "trurisk_score_formula": "ACS * (wc * Avg(QDS(c)) ...)",
        "vuln_count": [
            {"qds_severity": "CRITICAL", "count": 2},
            {"qds_severity": "HIGH", "count": 5},
        ],
    }
    assert host["user_def"]["label_1"] == "Rack"
    assert host["user_def"]["value_2"] is None
    assert host["last_vm_auth_scanned_date"] == "2026-11-20T00:00:00Z"  # date-only accepted
    assert host["last_compliance_scan_datetime"] is None  # self-closed
    assert host["comments"] is None  # empty CDATA
    assert host["trurisk_score"] == 612
    assert "something_new" not in host


def test_hosts_multiple_tags_and_paging(hosts):
    records, page = hosts
    assert [tag["tag_id"] for tag in records[1]["tags"]] == [77, 78]
    # URL inside padded CDATA; GLOSSARY after WARNING is ignored.
    assert page.next_url == (
        "https://qualysapi.qualys.com/api/5.0/fo/asset/host/?action=list"
        "&truncation_limit=2&id_min=1003"
    )


def test_host_records_match_schema(hosts):
    check = validator("hosts")
    for record in hosts[0]:
        check.validate(record)


# --- KnowledgeBase -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vulns() -> tuple[list[dict[str, Any]], XMLPage]:
    return parse_all(parse_knowledge_base, fixture("knowledge_base.xml"))


def test_kb_record(vulns):
    vuln = vulns[0][0]
    assert vuln["qid"] == 38173
    assert vuln["severity_level"] == 4
    assert vuln["patchable"] is True
    assert vuln["last_customization"] == {
        "datetime": "2025-01-01T00:00:00Z",
        "user_login": "alice",
    }
    assert vuln["cve_list"] == [
        {"id": "CVE-2024-0001", "url": "https://nvd.nist.gov/vuln/detail/CVE-2024-0001"}
    ]
    assert [ref["id"] for ref in vuln["vendor_reference_list"]] == ["MS24-001", "MS24-002"]
    assert vuln["bugtraq_list"] == [
        {"id": 12345, "url": "http://www.securityfocus.com/bid/12345"}
    ]
    assert vuln["software_list"] == [{"product": "openssl", "vendor": "openssl"}]
    assert vuln["diagnosis"] == "The certificate <b>signature</b> could not be verified."
    assert vuln["solution"] == "Install a certificate signed by a trusted CA."
    assert vuln["cvss"]["base"] == 7.5
    assert vuln["cvss"]["base_source"] == "service"
    assert vuln["cvss"]["access"] == {"vector": "1", "complexity": "2"}
    assert vuln["cvss_v3"]["base"] == 9.8
    assert vuln["cvss_v3"]["attack"] == {"vector": "Network", "complexity": "Low"}
    # CVSS_V4's declared scores are numbers like CVSS_V3's; undeclared elements stay as text.
    assert vuln["cvss_v4"] == {
        "base": 9.3,
        "vector_string": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        "metric": ["N", "L"],
    }
    assert vuln["supported_modules"] == ["VM", "PC"]
    assert vuln["pci_reasons"] == ["CVSS score is 4.0 or higher"]
    assert vuln["threat_intelligence"] == [
        {"id": 1, "text": "Zero_Day"},
        {"id": 3, "text": "Public_Exploit"},
    ]
    assert vuln["discovery"] == {
        "remote": True,
        "auth_type_list": ["Windows"],
        "additional_info": "Patch Available",
    }
    assert vuln["correlation"]["exploits"][0]["explt_list"][0]["link"] == (
        "https://example.com/poc"
    )
    assert vuln["change_log_list"] == [
        {"change_date": "2026-10-01T00:00:00Z", "comments": "Updated CVSS"}
    ]


def test_kb_other_change_log_spelling_and_empty_list(vulns):
    records, page = vulns
    vuln = records[1]
    assert vuln["change_log_list"] == [
        {"change_date": "2026-09-01T00:00:00Z", "comments": "Other spelling"}
    ]
    assert vuln["cve_list"] is None
    # LAST_CUSTOMIZATION/DATETIME must not be taken for RESPONSE/DATETIME.
    assert page.response_datetime is not None
    assert page.response_datetime.isoformat() == "2026-11-23T08:00:00+00:00"


def test_kb_records_match_schema(vulns):
    check = validator("knowledge_base")
    for record in vulns[0]:
        check.validate(record)


# --- what the SDK may skip -----------------------------------------------------------------------


def _json_native(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(key, str) and _json_native(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_json_native(item) for item in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, int, bool))


@pytest.mark.parametrize(
    ("stream", "parser", "name"),
    [
        ("knowledge_base", parse_knowledge_base, "knowledge_base.xml"),
        ("hosts", parse_host_list, "host_list.xml"),
        ("host_detections", parse_host_list_detection, "host_list_detection.xml"),
    ],
)
def test_records_need_no_sdk_type_conformance(stream, parser, name, caplog):
    # The VM streams set TYPE_CONFORMANCE_LEVEL = NONE: parsed records must already be what the
    # SDK's recursive conformance would make of them, with exactly the schema's keys.
    schema = validator(stream).schema
    level = TypeConformanceLevel.RECURSIVE
    records, _ = parse_all(parser, fixture(name))
    assert records
    for record in records:
        assert set(record) == set(schema["properties"])
        assert _json_native(record)
        conformed = conform_record_data_types(
            stream, copy.deepcopy(record), schema, level, logging.getLogger(__name__)
        )
        assert conformed == record
    assert "not found in catalog schema" not in caplog.text


# --- SIMPLE_RETURN -------------------------------------------------------------------------------


def test_simple_return_with_http_200_raises_while_iterating():
    page = parse_host_list_detection(chunks_of(fixture("simple_return_1965.xml"), 7))
    with pytest.raises(SimpleReturnError) as caught:
        list(page)
    assert caught.value.code == 1965
    assert caught.value.text.startswith("This API cannot be run again for another 23 hours")
    assert caught.value.items == {"SECONDS_TO_WAIT": "86274"}


def test_parse_simple_return():
    error = parse_simple_return(fixture("simple_return_1965.xml"))
    assert isinstance(error, SimpleReturnError)
    assert error.code == 1965
    assert "1965" in str(error)
    no_code = parse_simple_return(
        b"<SIMPLE_RETURN><RESPONSE><DATETIME>2026-11-23T10:00:00Z</DATETIME>"
        b"<TEXT>Logged out</TEXT></RESPONSE></SIMPLE_RETURN>"
    )
    assert no_code is not None
    assert no_code.code is None
    assert no_code.text == "Logged out"
    assert no_code.items == {}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        b'{"status": 401}',
        b"<HOST_LIST_OUTPUT><RESPONSE/></HOST_LIST_OUTPUT>",
        b"<SIMPLE_RETURN><RESPONSE><TEXT>cut",
    ],
)
def test_parse_simple_return_none_for_other_bodies(body):
    assert parse_simple_return(body) is None


# --- truncation ----------------------------------------------------------------------------------


def test_incident_signature_is_a_truncation():
    page = parse_host_list_detection(chunks_of(fixture("incident_signature.xml"), 100))
    records: list[dict[str, Any]] = []
    with pytest.raises(QualysTruncatedResponseError, match="incident signature"):
        records.extend(page)
    assert [r["unique_vuln_id"] for r in records] == [700001]  # yielded before the error


def test_incident_note_after_the_records():
    body = fixture("host_list_detection.xml")
    cut = body.index(b"</HOST_LIST>")
    note = b"\nInternal error. Please quote incident signature 12ab-34cd to support.\n"
    with pytest.raises(QualysTruncatedResponseError, match="incident signature"):
        list(parse_host_list_detection([body[:cut] + note]))


@pytest.mark.parametrize(
    "marker",
    [b"<QDS severity=", b"</DETECTION_LIST>", b"</HOST_LIST>", b"</RESPONSE>", b"</HOST_LIST_VM"],
)
def test_cut_off_body_is_a_truncation(marker):
    body = fixture("host_list_detection.xml")
    cut = body.index(marker) + 3
    with pytest.raises(QualysTruncatedResponseError, match="cut off"):
        list(parse_host_list_detection(chunks_of(body[:cut], 50)))


def test_empty_body_is_a_truncation():
    with pytest.raises(QualysTruncatedResponseError, match="empty"):
        list(parse_host_list_detection([]))
    with pytest.raises(QualysTruncatedResponseError, match="empty"):
        list(parse_knowledge_base([b"", b"  \n"]))


def test_body_ending_in_the_prolog_is_a_truncation():
    with pytest.raises(QualysTruncatedResponseError):
        list(parse_host_list([b'<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE HOST']))


# --- malformed and unsafe bodies -----------------------------------------------------------------


def test_errors_surface_while_iterating_not_when_called():
    page = parse_host_list([b"<html><body>login</body></html>"])
    with pytest.raises(QualysXMLError):
        next(page)


def test_html_body():
    with pytest.raises(QualysXMLError, match="HTML"):
        list(parse_host_list([fixture("proxy_login.html")]))
    with pytest.raises(QualysXMLError, match="HTML"):
        list(parse_host_list([b"<HTML><BODY>Service unavailable</BODY></HTML>"]))


def test_not_xml_body():
    with pytest.raises(QualysXMLError, match="not XML"):
        list(parse_host_list([b"Service Unavailable"]))


def test_unexpected_root():
    with pytest.raises(QualysXMLError, match="unexpected root element <HOST_LIST_OUTPUT>"):
        list(parse_knowledge_base([fixture("host_list.xml")]))


def test_malformed_xml():
    body = fixture("host_list.xml").replace(b"</IPV6>", b"</IPV7>")
    with pytest.raises(QualysXMLError, match="malformed XML"):
        list(parse_host_list(chunks_of(body, 512)))


@pytest.mark.parametrize("name", ["xxe.xml", "billion_laughs.xml"])
def test_internal_dtd_is_refused(name):
    with pytest.raises(QualysXMLError, match="internal DTD subset"):
        list(parse_host_list(chunks_of(fixture(name), 16)))


@pytest.mark.parametrize("doctype", [True, False])
def test_undeclared_entity_reference(doctype):
    body = fixture("host_list.xml").replace(
        b"<OWNER><![CDATA[alice]]></OWNER>", b"<OWNER>&xxe;</OWNER>"
    )
    if not doctype:  # without a DOCTYPE libxml2 reports it as fatal, with one as a warning
        body = body[: body.index(b"<!DOCTYPE")] + body[body.index(b"<HOST_LIST_OUTPUT>") :]
    with pytest.raises(QualysXMLError, match="entity"):
        list(parse_host_list(chunks_of(body, 1000)))


def test_external_doctype_line_is_accepted_and_never_fetched():
    # An unroutable address: fetching it would hang or fail the test, parsing must not.
    body = fixture("host_list.xml").replace(
        b"https://qualysapi.qualys.com/api/5.0/fo/asset/host/host_list_output.dtd",
        b"http://192.0.2.1:9/never-fetched.dtd",
    )
    records, _ = parse_all(parse_host_list, body)
    assert len(records) == 2


def test_invalid_utf8():
    body = fixture("host_list.xml").replace(b"<![CDATA[alice]]>", b"<![CDATA[al\xc3\x28ice]]>")
    with pytest.raises(QualysXMLError, match="invalid UTF-8"):
        list(parse_host_list([body]))


def test_invalid_xml_character():
    body = fixture("host_list.xml").replace(b"<![CDATA[alice]]>", b"<![CDATA[al\x01ice]]>")
    with pytest.raises(QualysXMLError, match="invalid XML character"):
        list(parse_host_list([body]))


def test_nul_in_results_becomes_replacement_character():
    body = fixture("host_list_detection.xml").replace(
        b"<RESULTS>web01.example.com</RESULTS>", b"<RESULTS>web01\x00.example.com\x00</RESULTS>"
    )
    records, _ = parse_all(parse_host_list_detection, body, chunk_size=3)
    assert records[1]["results"] == "web01\ufffd.example.com\ufffd"


def _with_results(content: Iterator[bytes]) -> Iterator[bytes]:
    """The detection fixture with the RESULTS of host 1001, QID 6 made of ``content``."""
    body = fixture("host_list_detection.xml")
    start = body.index(b"<RESULTS>web01.example.com</RESULTS>") + len(b"<RESULTS>")
    yield body[:start]
    yield from content
    yield body[start + len(b"web01.example.com") :]


CUT_MARK = "[... cut by tap-qualys: "


def _peak_rss_growth(run: Callable[[], Any]) -> int:
    process = psutil.Process()
    before = process.memory_info().rss
    peak = before
    run()
    peak = max(peak, process.memory_info().rss)
    return peak - before


def test_results_split_into_cdata_sections_are_cut_at_the_limit(caplog):
    """12 CDATA sections of 1 MB: one 12 MB field, cut at 10 MB with a marker."""
    section = b"<![CDATA[" + b"R" * 1_000_000 + b"]]>"
    with caplog.at_level(logging.WARNING, logger="tap_qualys.qualys_xml"):
        page = parse_host_list_detection(_with_results(iter([section] * 12)))
        records = list(page)
    cut = next(r for r in records if r["qid"] == 6)
    text, marker = cut["results"].split("[... ", 1)
    assert text == "R" * MAX_TEXT_BYTES
    assert "[... " + marker == CUT_MARK + "2,000,000 bytes over the 10 MB limit]"
    assert page.cut_fields == 1
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1
    assert "host 1001" in warning[0], warning
    assert "QID 6" in warning[0], warning
    assert "RRRR" not in warning[0]
    # Every other record is whole.
    assert [r["unique_vuln_id"] for r in records] == [
        r["unique_vuln_id"] for r in parse_host_list_detection([fixture("host_list_detection.xml")])
    ]


@pytest.mark.parametrize("chunk_size", [1_000_003, 64 * 1024 + 5, 4099])
def test_the_cut_does_not_depend_on_chunk_boundaries(chunk_size):
    section = b"<![CDATA[" + "é".encode() * 700_001 + b"]]>"  # 1.4 MB, odd: cuts move
    body = b"".join(_with_results(iter([section] * 8)))
    records = list(parse_host_list_detection(chunks_of(body, chunk_size)))
    results = next(r for r in records if r["qid"] == 6)["results"]
    text, _, marker = results.partition("[... ")
    assert text == "é" * (MAX_TEXT_BYTES // 2)  # cut at a character, never inside one
    assert marker.startswith("cut by tap-qualys: ")


def test_plain_text_results_over_the_limit_are_cut():
    blob = b"A" * (1024 * 1024)
    records = list(parse_host_list_detection(_with_results(iter([blob] * 50))))
    results = next(r for r in records if r["qid"] == 6)["results"]
    assert results.startswith("A" * 1000)
    assert results.endswith(f"{50 * 1024 * 1024 - MAX_TEXT_BYTES:,} bytes over the 10 MB limit]")
    assert len(results) < MAX_TEXT_BYTES + 100


def test_results_cut_never_holds_more_than_the_limit_in_memory():
    """120 MB of RESULTS in 12 sections: the parser's memory grows by the limit, not by 120."""
    section = b"<![CDATA[" + b"M" * 9_999_000 + b"]]>"

    def run() -> None:
        for record in parse_host_list_detection(_with_results(iter([section] * 12))):
            if record["qid"] == 6:
                assert CUT_MARK in record["results"]

    assert _peak_rss_growth(run) < 80 * 2**20


def test_a_huge_text_node_elsewhere_is_a_clean_error():
    body = fixture("host_list_detection.xml")
    cut = body.index(b"</OS>")
    blob = b"A" * (1024 * 1024)

    def chunks() -> Iterator[bytes]:
        yield body[:cut]
        for _ in range(50):  # 50 MB in one text node
            yield blob
        yield body[cut:]

    with pytest.raises(QualysXMLError, match="text of <OS> is over the 10 MB limit"):
        list(parse_host_list_detection(chunks()))


def test_other_text_split_into_cdata_sections_is_refused():
    kb = fixture("knowledge_base.xml")
    start = kb.index(b"<DIAGNOSIS>") + len(b"<DIAGNOSIS>")
    end = kb.index(b"</DIAGNOSIS>")
    sections = [b"<![CDATA[" + b"D" * 900_000 + b"]]>"] * 12
    with pytest.raises(QualysXMLError, match="text of <DIAGNOSIS> is over the 10 MB limit"):
        list(parse_knowledge_base(iter([kb[:start], *sections, kb[end:]])))


def test_deep_nesting_is_named_as_such():
    body = fixture("host_list_detection.xml")
    at = body.index(b"<OS>")
    deep = b"<X>" * 10_000 + b"</X>" * 10_000
    with pytest.raises(QualysXMLError, match="nested deeper") as error:
        list(parse_host_list_detection([body[:at] + deep + body[at:]]))
    assert "10 MB" not in str(error.value)


def test_non_numeric_integer_names_the_field():
    body = fixture("host_list_detection.xml").replace(b"<QID>6</QID>", b"<QID>abc</QID>")
    with pytest.raises(QualysXMLError, match=r"<QID>.*'abc'"):
        list(parse_host_list_detection([body]))


def test_bad_boolean_and_datetime_are_errors():
    body = fixture("host_list_detection.xml").replace(b"<SSL>1</SSL>", b"<SSL>yes</SSL>")
    with pytest.raises(QualysXMLError, match="SSL"):
        list(parse_host_list_detection([body]))
    body = fixture("host_list.xml").replace(
        b"<FIRST_FOUND_DATE>2024-01-02T03:04:05Z", b"<FIRST_FOUND_DATE>2024-13-02T03:04:05Z"
    )
    with pytest.raises(QualysXMLError, match="FIRST_FOUND_DATE"):
        list(parse_host_list([body]))


def test_scalar_with_child_elements_is_an_error():
    body = fixture("host_list.xml").replace(b"<IPV6>fe80::1</IPV6>", b"<IPV6><A>x</A></IPV6>")
    with pytest.raises(QualysXMLError, match="IPV6"):
        list(parse_host_list([body]))


@pytest.mark.parametrize(
    ("parser", "name", "old", "message"),
    [
        (parse_host_list, "host_list.xml", b"<ID>1002</ID>", "required element <ID>"),
        (
            parse_host_list_detection,
            "host_list_detection.xml",
            b"<QID>105484</QID>",
            "required element <QID>",
        ),
        (parse_host_list_detection, "host_list_detection.xml", b"<ID>1003</ID>", "without an <ID>"),
        (parse_host_list_detection, "host_list_detection.xml", b"<ID>1002</ID>", "without an <ID>"),
        (parse_knowledge_base, "knowledge_base.xml", b"<QID>6</QID>", "required element <QID>"),
    ],
)
def test_missing_required_element(parser, name, old, message):
    body = fixture(name)
    assert old in body
    with pytest.raises(QualysXMLError, match=message):
        list(parser([body.replace(old, b"")]))


def test_missing_response_element():
    with pytest.raises(QualysXMLError, match="without a <RESPONSE>"):
        list(parse_host_list([b"<HOST_LIST_OUTPUT></HOST_LIST_OUTPUT>"]))


# --- memory --------------------------------------------------------------------------------------


def test_large_detection_stream_in_flat_memory():
    body = fixture("host_list_detection.xml")
    head = body[: body.index(b"<HOST>")]
    host = body[body.index(b"<HOST>") : body.index(b"</HOST>") + len(b"</HOST>")]
    tail = b"</HOST_LIST></RESPONSE></HOST_LIST_VM_DETECTION_OUTPUT>"
    hosts = 30_000  # about 150 MB, far more than the growth allowed

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(hosts):
            yield host
        yield tail

    # Current RSS sampled while parsing: a high-water mark could be set by an earlier test.
    process = psutil.Process()
    before = process.memory_info().rss
    peak = before
    count = 0
    for count, _ in enumerate(parse_host_list_detection(chunks()), start=1):
        if count % 5000 == 0:
            peak = max(peak, process.memory_info().rss)
    assert count == 2 * hosts
    assert (peak - before) / 2**20 < 100


@pytest.mark.parametrize(
    ("parser", "name"),
    [
        (parse_knowledge_base, "knowledge_base.xml"),
        (parse_host_list, "host_list.xml"),
        (parse_host_list_detection, "host_list_detection.xml"),
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_chunk_boundaries_do_not_matter(parser, name, chunk_size):
    whole, whole_page = parse_all(parser, fixture(name), chunk_size=10**9)
    split, split_page = parse_all(parser, fixture(name), chunk_size=chunk_size)
    assert split == whole
    assert len(whole) >= 2
    assert (split_page.next_url, split_page.response_datetime) == (
        whole_page.next_url,
        whole_page.response_datetime,
    )


def test_any_warning_with_a_url_pages():
    body = fixture("host_list.xml").replace(b"<CODE>1980</CODE>", b"<CODE>1999</CODE>")
    _, page = parse_all(parse_host_list, body)
    assert page.warning_code == 1999
    assert page.next_url is not None
    assert page.next_url.endswith("id_min=1003")


class CountingLock:
    """A lock that records how it was used, for the parser's cpu_lock."""

    def __init__(self) -> None:
        self.held = False
        self.acquired = 0

    def __enter__(self) -> None:
        assert not self.held
        self.held = True
        self.acquired += 1

    def __exit__(self, *exc_info: object) -> None:
        self.held = False


def test_cpu_lock_is_held_per_chunk_parsed_and_never_while_reading() -> None:
    body = fixture("host_list_detection.xml")
    lock = CountingLock()
    reads_under_lock = 0

    def chunks() -> Iterator[bytes]:
        nonlocal reads_under_lock
        for chunk in chunks_of(body, 512):
            reads_under_lock += lock.held
            yield chunk

    records = list(parse_host_list_detection(chunks(), cpu_lock=lock))
    assert records == list(parse_host_list_detection(chunks_of(body)))
    assert reads_under_lock == 0
    # One turn per chunk, and one for the bytes the size-limit scan holds back to the end.
    assert lock.acquired == len(list(chunks_of(body, 512))) + 1
    assert not lock.held


def test_cpu_lock_is_released_when_a_page_fails_or_is_abandoned() -> None:
    lock = CountingLock()
    cut = fixture("host_list_detection.xml")[:-200] + b"<<broken"
    with pytest.raises((QualysXMLError, QualysTruncatedResponseError)):
        list(parse_host_list_detection(chunks_of(cut, 512), cpu_lock=lock))
    assert not lock.held
    page = parse_host_list_detection(chunks_of(fixture("host_list_detection.xml"), 512), lock)
    next(page)
    assert lock.held  # a record is handed over while its chunk is being parsed
    page._records.close()  # type: ignore[attr-defined]  # what dropping the iterator does
    assert not lock.held
