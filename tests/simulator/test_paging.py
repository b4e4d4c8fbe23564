"""Truncation paging (doc §4 and §11): WARNING 1980, the URL, the last page."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from qualys_simulator.testing import SimulatorProcess
from tests.simulator.helpers import (
    ALL_STATUSES,
    HL,
    HLD,
    KB,
    TRUTH_FIELDS,
    call,
    detection_records,
    follow,
    host_ids,
    id_set_ids,
    xml,
)


def test_host_list_pages_cover_every_host_once(sim: SimulatorProcess) -> None:
    pages = follow(sim, HL, {"truncation_limit": "7", "details": "Basic"})
    truth = [h["ID"] for h in sim.ground_truth("hosts")]
    assert host_ids(pages) == truth
    assert len(pages) == -(-len(truth) // 7)
    assert all(len(p.findall("RESPONSE/HOST_LIST/HOST")) == 7 for p in pages[:-1])
    assert pages[-1].find("RESPONSE/WARNING") is None


def test_warning_url_repeats_params_with_id_min_last(sim: SimulatorProcess) -> None:
    params = {"truncation_limit": "5", "show_tags": "1", "status": ALL_STATUSES, "id_min": "1"}
    root = xml(call(sim, HLD, params))
    warning = root.find("RESPONSE/WARNING")
    assert warning is not None
    assert warning.findtext("TEXT") == ("5 record limit exceeded. Use URL to get next batch of "
                                        "results.")
    url = urlsplit(warning.findtext("URL") or "")
    assert url.path == HLD
    pairs = parse_qsl(url.query)
    assert pairs[0] == ("action", "list")
    assert pairs[-1][0] == "id_min"
    sent = dict(pairs)
    assert sent["show_tags"] == "1"
    assert sent["status"] == ALL_STATUSES
    assert sent["truncation_limit"] == "5"
    last_id = int(root.findall("RESPONSE/HOST_LIST/HOST")[-1].findtext("ID") or 0)
    assert int(sent["id_min"]) > last_id


def test_warning_url_adds_default_truncation_limit() -> None:
    with SimulatorProcess(hosts=1003, seed=2, detections_per_host=0.5) as big:
        root = xml(call(big, HL, {"details": "None"}))
        assert len(id_set_ids(root)) == 1000
        url = root.findtext("RESPONSE/WARNING/URL") or ""
        assert "truncation_limit=1000" in url
        assert url.split("&")[-1].startswith("id_min=")
        rest = xml(call(big, HL, {"details": "None", "id_min": url.rsplit("=", 1)[1]}))
        assert len(id_set_ids(rest)) == 3
        assert rest.find("RESPONSE/WARNING") is None


def test_detection_pages_match_ground_truth(sim: SimulatorProcess) -> None:
    pages = follow(sim, HLD, {"truncation_limit": "4", "status": ALL_STATUSES, "show_igs": "1",
                              **TRUTH_FIELDS})
    assert len(pages) > 2
    got = detection_records(pages)
    assert got == sim.ground_truth("host_detections")


def test_truncation_limit_counts_hosts_not_detections(sim: SimulatorProcess) -> None:
    root = xml(call(sim, HLD, {"truncation_limit": "3"}))
    assert len(root.findall("RESPONSE/HOST_LIST/HOST")) == 3
    assert len(root.findall(".//DETECTION")) > 3


def test_truncation_limit_zero_returns_everything(sim: SimulatorProcess) -> None:
    root = xml(call(sim, HL, {"truncation_limit": "0"}))
    assert root.find("RESPONSE/WARNING") is None
    assert len(root.findall("RESPONSE/HOST_LIST/HOST")) == len(sim.ground_truth("hosts"))


def test_exact_multiple_has_no_warning_on_last_page(sim: SimulatorProcess) -> None:
    count = len(sim.ground_truth("hosts"))
    root = xml(call(sim, HL, {"truncation_limit": str(count)}))
    assert root.find("RESPONSE/WARNING") is None


def test_empty_result_has_no_host_list(sim: SimulatorProcess) -> None:
    root = xml(call(sim, HL, {"id_min": "999999999"}))
    assert root.find("RESPONSE/HOST_LIST") is None
    assert root.find("RESPONSE/DATETIME") is not None


def test_knowledge_base_server_side_paging(sim: SimulatorProcess) -> None:
    sim.configure(kb_page_size=100)
    try:
        pages = follow(sim, KB, {"details": "Basic"})
    finally:
        sim.configure(kb_page_size=0)
    qids = [int(q.text or 0) for p in pages for q in p.iterfind(".//VULN/QID")]
    assert qids == [r["QID"] for r in sim.ground_truth("knowledge_base")]
    assert len(pages) == -(-len(qids) // 100)


def test_warning_url_extra_params_off_by_default(sim: SimulatorProcess) -> None:
    assert sim.admin_get("/admin/config")["warning_url_extra_params"] is False
    url = xml(call(sim, HL, {"truncation_limit": "5"})).findtext("RESPONSE/WARNING/URL") or ""
    assert "details" not in dict(parse_qsl(urlsplit(url).query))


def test_warning_url_extra_params_adds_unsent_parameters(sim: SimulatorProcess) -> None:
    """Doc §4: the URL can carry parameters the caller never sent (details=None)."""
    sim.configure(warning_url_extra_params=True)
    try:
        hl = xml(call(sim, HL, {"truncation_limit": "5"})).findtext("RESPONSE/WARNING/URL")
        pairs = parse_qsl(urlsplit(hl or "").query)
        assert ("details", "None") in pairs
        assert pairs[-1][0] == "id_min"  # still last (doc §11)
        # A parameter the caller did send keeps the caller's value and is not repeated.
        sent = xml(call(sim, HL, {"truncation_limit": "5", "details": "All"}))
        pairs = parse_qsl(urlsplit(sent.findtext("RESPONSE/WARNING/URL") or "").query)
        assert [v for k, v in pairs if k == "details"] == ["All"]
        hld = xml(call(sim, HLD, {"truncation_limit": "2"})).findtext("RESPONSE/WARNING/URL")
        pairs = parse_qsl(urlsplit(hld or "").query)
        assert ("show_results", "0") in pairs
        # Following the URL verbatim works but silently drops what the caller wanted.
        verbatim = call(sim, HLD, dict(pairs))
        assert verbatim.status_code == 200
        assert xml(verbatim).find(".//DETECTION/RESULTS") is None
        # Re-sending our own parameters with the new id_min pages correctly.
        pages = follow(sim, HLD, {"truncation_limit": "4", "status": ALL_STATUSES,
                                  "show_igs": "1", **TRUTH_FIELDS})
        assert detection_records(pages) == sim.ground_truth("host_detections")
        sim.configure(kb_page_size=50)
        kb = xml(call(sim, KB, {"details": "All"}))
        pairs = parse_qsl(urlsplit(kb.findtext("RESPONSE/WARNING/URL") or "").query)
        assert [v for k, v in pairs if k == "details"] == ["All"]
        kb = xml(call(sim, KB))
        pairs = parse_qsl(urlsplit(kb.findtext("RESPONSE/WARNING/URL") or "").query)
        assert ("details", "None") in pairs
    finally:
        sim.configure(warning_url_extra_params=False, kb_page_size=0)


def test_warning_url_extra_params_flag() -> None:
    with SimulatorProcess(hosts=6, seed=4, detections_per_host=1, kb_size=20, kb_extra=0,
                          warning_url_extra_params=True) as small:
        url = xml(call(small, HL, {"truncation_limit": "2"})).findtext("RESPONSE/WARNING/URL")
        assert ("details", "None") in parse_qsl(urlsplit(url or "").query)
