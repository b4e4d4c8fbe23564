"""The XML documents: DTD-valid element trees, escaping, CDATA styles, document ends."""

from __future__ import annotations

from lxml import etree

from qualys_simulator.testing import SimulatorProcess
from tests.simulator.helpers import ALL_STATUSES, HL, HLD, KB, call, dtd, xml

FULL_HOST = {"details": "All", "show_asset_id": "1", "show_tags": "1", "show_cloud_tags": "1",
             "host_metadata": "all", "show_trurisk": "1", "show_trurisk_factors": "1",
             "truncation_limit": "0", "echo_request": "1"}
FULL_DETECTION = {"status": ALL_STATUSES, "show_igs": "1", "show_asset_id": "1", "show_tags": "1",
                  "show_cloud_tags": "1", "host_metadata": "all", "show_qds": "1",
                  "show_qds_factors": "1", "show_reopened_info": "1", "show_results": "1",
                  "truncation_limit": "0", "echo_request": "1"}
FULL_KB = {"details": "All", "show_disabled_flag": "1", "show_qid_change_log": "1",
           "show_supported_modules_info": "1", "show_pci_reasons": "1", "echo_request": "1"}


def test_knowledge_base_is_valid_against_dtd(sim: SimulatorProcess) -> None:
    sim.advance(86400, kb_modified_fraction=0.5)  # so CHANGE_LOG_LIST appears
    response = call(sim, KB, FULL_KB)
    root = xml(response)
    assert dtd("knowledge_base.dtd").validate(root), dtd("knowledge_base.dtd").error_log
    vulns = root.findall("RESPONSE/VULN_LIST/VULN")
    assert len(vulns) == 300 + 40 + 5
    for element in ("CVE_LIST", "DIAGNOSIS", "CVSS", "CVSS_V3", "PCI_REASONS",
                    "THREAT_INTELLIGENCE", "CHANGE_LOG_LIST", "IS_DISABLED", "CORRELATION"):
        assert root.find(f".//VULN/{element}") is not None, element
    # HTML inside CDATA survives with its markup and the split "]]>" (generated QIDs; the first
    # ones are real QIDs with their own, plain text).
    diagnosis = "".join(root.xpath("(//VULN[QID > 800000]/DIAGNOSIS)[1]/text()"))
    assert "]]&gt;" in diagnosis
    assert "<p>" in diagnosis


def test_host_list_is_valid_against_dtd(sim: SimulatorProcess) -> None:
    root = xml(call(sim, HL, FULL_HOST))
    assert dtd("host_list.dtd").validate(root), dtd("host_list.dtd").error_log
    assert root.find("REQUEST/PARAM_LIST/PARAM") is not None
    for element in ("ASSET_ID", "TAGS/TAG/TAG_ID", "METADATA", "CLOUD_PROVIDER_TAGS",
                    "TRURISK_SCORE", "TRURISK_SCORE_FACTORS/VULN_COUNT", "LAST_VM_SCANNED_DATE"):
        assert root.find(f".//HOST/{element}") is not None, element


def test_host_list_detection_is_valid_against_dtd(sim: SimulatorProcess) -> None:
    root = xml(call(sim, HLD, FULL_DETECTION))
    assert dtd("host_list_detection.dtd").validate(root), dtd("host_list_detection.dtd").error_log
    types = {d.findtext("TYPE") for d in root.iterfind(".//DETECTION")}
    statuses = {d.findtext("STATUS") for d in root.iterfind(".//DETECTION")}
    assert types == {"Confirmed", "Potential", "Info"}
    assert statuses == {"New", "Active", "Fixed", "Re-Opened"}
    for element in ("QDS", "QDS_FACTORS/QDS_FACTOR", "RESULTS", "PORT", "SSL", "METADATA/EC2",
                    "TAGS", "LAST_FIXED_DATETIME", "TIMES_REOPENED", "FIRST_REOPENED_DATETIME"):
        assert root.find(f".//HOST//{element}") is not None, element


def test_simple_return_is_valid_against_dtd(sim: SimulatorProcess) -> None:
    for response in (call(sim, HLD, {"bogus": "1"}), call(sim, HL, auth=("x", "y"))):
        assert dtd("simple_return.dtd").validate(xml(response))


def test_results_escaping_round_trips(sim: SimulatorProcess) -> None:
    response = call(sim, HLD, FULL_DETECTION)
    results = [r.text or "" for r in xml(response).iterfind(".//RESULTS")]
    joined = "\n".join(results)
    # The generator's hostile lines come back intact after parsing.
    assert "CDATA terminator inside text: ]]> and again ]]]]>" in joined
    assert "a<b && c>d" in joined
    assert "漏洞 検出" in joined
    assert "Überprüfung" in joined
    assert "\t" in joined
    # ... and on the wire "]]>" only ever closes a CDATA section.
    assert b"]]]]><![CDATA[>" in response.content


def test_text_styles_and_self_closed_elements(sim: SimulatorProcess) -> None:
    raw = call(sim, HLD, FULL_DETECTION).content
    assert b"<OS>\n  <![CDATA[" in raw  # padded CDATA
    assert b"<OS><![CDATA[" in raw  # bare CDATA
    assert b"<ASSET_GROUP_LIST />" in raw
    assert b"&amp;" in raw  # escaped plain text style (a tag name with "&")
    assert raw.startswith(b'<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE ')


def test_document_ends_with_response_then_root(sim: SimulatorProcess) -> None:
    for path, root_name in ((HLD, "HOST_LIST_VM_DETECTION_OUTPUT"), (HL, "HOST_LIST_OUTPUT"),
                            (KB, "KNOWLEDGE_BASE_VULN_LIST_OUTPUT")):
        body = call(sim, path).content
        assert body.rstrip().endswith(f"</RESPONSE>\n</{root_name}>".encode())


def test_doctype_can_be_switched_off(sim: SimulatorProcess) -> None:
    sim.configure(doctype=False)
    try:
        assert b"<!DOCTYPE" not in call(sim, HL).content
    finally:
        sim.configure(doctype=True)
    assert b"<!DOCTYPE HOST_LIST_OUTPUT" in call(sim, HL).content


def test_details_levels(sim: SimulatorProcess) -> None:
    # details=None: ids only, as one ID_SET (test_purge.py checks its contents).
    none = xml(call(sim, HL, {"details": "None"}))
    assert none.find(".//HOST") is None
    assert none.find(".//ID_SET/ID") is not None
    basic = xml(call(sim, HL, {"details": "Basic"})).find(".//HOST")
    assert basic is not None
    assert basic.find("OS") is not None
    assert basic.find("OWNER") is None
    kb_none = xml(call(sim, KB, {"details": "None"})).find(".//VULN")
    assert kb_none is not None
    assert kb_none.find("CVE_LIST") is None
    assert kb_none.find("TITLE") is not None


def test_non_ascii_is_utf8_on_the_wire(sim: SimulatorProcess) -> None:
    response = call(sim, HL, {"show_tags": "1", "truncation_limit": "0"})
    assert "Müller".encode() in response.content  # raw UTF-8, not character references
    assert "Müller &amp; Söhne &lt;EU&gt;".encode() in response.content  # escaped text style
    names = {t.text for t in xml(response).iterfind(".//TAG/NAME")}
    assert "Owner: Müller & Söhne <EU>" in names
    assert response.headers["Content-Type"] == "text/xml; charset=UTF-8"


def test_lxml_parse_of_streamed_body_is_incremental(sim: SimulatorProcess) -> None:
    response = call(sim, HLD, FULL_DETECTION, stream=True)
    assert response.headers.get("Transfer-Encoding") == "chunked"
    hosts = sum(1 for _ in etree.iterparse(response.raw, tag="HOST"))
    assert hosts > 0


def test_knowledge_base_cvss_v4_varies(sim: SimulatorProcess) -> None:
    """Doc §5: CVSS_V4 (new in 2026, shape unsure) on some QIDs, with varying sub-elements."""
    root = xml(call(sim, KB, {"details": "All"}))
    assert dtd("knowledge_base.dtd").validate(root), dtd("knowledge_base.dtd").error_log
    vulns = root.findall("RESPONSE/VULN_LIST/VULN")
    blocks = [v.find("CVSS_V4") for v in vulns]
    present = [b for b in blocks if b is not None]
    assert 0 < len(present) < len(vulns)  # some QIDs only
    shapes = set()
    for block in present:
        assert block.findtext("BASE")
        assert (block.findtext("VECTOR_STRING") or "").startswith("CVSS:4.0/")
        shapes.add(tuple(child.tag for child in block))
        # It comes right after CVSS_V3, where the DTD places it.
        previous = block.getprevious()
        assert previous is not None
        assert previous.tag == "CVSS_V3"
    assert len(shapes) >= 3  # plain, extra scalars, nested groups
    nested = [b for b in present if b.find("SUPPLEMENTAL_METRICS/AUTOMATABLE") is not None]
    assert nested
    # details=None has no CVSS blocks at all.
    none = xml(call(sim, KB, {"details": "None"}))
    assert none.find(".//CVSS_V4") is None
