"""Scenario 4: hostile and broken answers, served by the simulator's `/admin/inject`.

Every case starts from a loaded target and its state (one baseline sync per module, copied per
test), injects a crafted answer for the endpoint under test, and runs the affected stream again
from that state. A broken answer must end the run with one clear error line naming the stream,
without a secret, and leave the target database and the state exactly as they were. An unknown
new element is not broken: that run must succeed. NUL characters are not broken either (real
Qualys data has them, docs/qualys-api.md section 4): the tap replaces them, by design.

The payloads are real simulator answers, edited, or small hand-written documents.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from qualys_simulator.testing import SimulatorProcess
from tests.reliability.errors import assert_one_clear_line, has_traceback
from tests.reliability.harness import (
    SMALL_TAP,
    SMALL_WORLD,
    Pipeline,
    RunResult,
    run_files,
    secret_hits,
    simulator,
)

HOST_LIST = "/api/5.0/fo/asset/host/"
DETECTIONS = "/api/5.0/fo/asset/host/vm/detection/"
KNOWLEDGE_BASE = "/api/4.0/fo/knowledge_base/vuln/"
XML = "text/xml; charset=UTF-8"


@dataclass
class Baseline:
    sim: SimulatorProcess
    database: Path
    state: dict[str, Any]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baseline]:
    directory = tmp_path_factory.mktemp("hostile-baseline")
    with simulator(**SMALL_WORLD) as sim:
        pipeline = Pipeline(sim, directory)
        result = pipeline.sync()
        assert result.last_state, result.describe()
        yield Baseline(sim, pipeline.database, result.last_state)
    hits = secret_hits(run_files(directory))
    assert not hits, "secrets found in the baseline run's output:\n" + "\n".join(hits)


# --- payloads ----------------------------------------------------------------------------------


def vm_document(sim: SimulatorProcess, path: str, **params: str) -> bytes:
    """A real answer of the simulator, to edit."""
    response = requests.post(sim.url + path, data={"action": "list", **params},
                             auth=(sim.username, sim.password),
                             headers={"X-Requested-With": "reliability tests"}, timeout=60)
    response.raise_for_status()
    return response.content


def host_list(sim: SimulatorProcess) -> bytes:
    # Every host in one answer, with the fields the tap asks for.
    return vm_document(sim, HOST_LIST, details="All", truncation_limit="0", show_asset_id="1",
                       show_tags="1", show_cloud_tags="1", host_metadata="all",
                       show_trurisk="1", show_trurisk_factors="1", show_ars="1",
                       show_ars_factors="1")


def first_batch_detections(sim: SimulatorProcess) -> bytes:
    """The answer to the tap's first detection batch: its first host_batch_size hosts."""
    ids = sorted(record["ID"] for record in sim.ground_truth("hosts"))
    batch = ",".join(str(i) for i in ids[: SMALL_TAP["host_batch_size"]])
    return vm_document(sim, DETECTIONS, ids=batch, truncation_limit="0", show_asset_id="1",
                       show_results="1", show_reopened_info="1", show_igs="1", show_qds="1",
                       show_qds_factors="1", show_arf_data="1", mitre_attack_details="1",
                       status="New,Active,Re-Opened,Fixed")


def edit_first(document: bytes, element: str, content: bytes) -> bytes:
    """Replace the content of the first ``<element>``."""
    pattern = re.compile(rb"<%s>.*?</%s>" % (element.encode(), element.encode()), re.DOTALL)
    edited, count = pattern.subn(b"<%s>%s</%s>" % (element.encode(), content, element.encode()),
                                 document, count=1)
    assert count == 1, f"no <{element}> in the document"
    return edited


def remove_first(document: bytes, element: str) -> bytes:
    pattern = re.compile(rb"<%s>.*?</%s>" % (element.encode(), element.encode()), re.DOTALL)
    edited, count = pattern.subn(b"", document, count=1)
    assert count == 1, f"no <{element}> in the document"
    return edited


def kb_document(doctype: str, title: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n' + doctype +
        "<KNOWLEDGE_BASE_VULN_LIST_OUTPUT>\n  <RESPONSE>\n"
        "    <DATETIME>2026-11-01T00:00:00Z</DATETIME>\n    <VULN_LIST>\n      <VULN>"
        "<QID>990001</QID><VULN_TYPE>Vulnerability</VULN_TYPE><SEVERITY_LEVEL>3</SEVERITY_LEVEL>"
        f"<TITLE>{title}</TITLE><PUBLISHED_DATETIME>2026-01-01T00:00:00Z</PUBLISHED_DATETIME>"
        "<LAST_SERVICE_MODIFICATION_DATETIME>2026-10-30T00:00:00Z"
        "</LAST_SERVICE_MODIFICATION_DATETIME><PATCHABLE>0</PATCHABLE>"
        "<DISCOVERY><REMOTE>1</REMOTE></DISCOVERY></VULN>\n"
        "    </VULN_LIST>\n  </RESPONSE>\n</KNOWLEDGE_BASE_VULN_LIST_OUTPUT>\n"
    ).encode()


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE HOST_LIST_OUTPUT [\n <!ENTITY lol "lol">\n'
    + "".join(f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
              for i in range(1, 10))
    + "]>\n<HOST_LIST_OUTPUT><RESPONSE><DATETIME>2026-11-01T00:00:00Z</DATETIME><HOST_LIST>"
    "<HOST><ID>1</ID><DNS>&lol9;</DNS></HOST></HOST_LIST></RESPONSE></HOST_LIST_OUTPUT>\n"
).encode()

PROXY_LOGIN_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in - Corporate Web Gateway</title></head>"
    b"<body><h1>Authentication required</h1><form method='post' action='/login'>"
    b"<input name='user'><input type='password' name='pass'></form></body></html>\n"
)


# --- the run -------------------------------------------------------------------------------


@dataclass
class HostileRun:
    pipeline: Pipeline
    result: RunResult
    state_in: dict[str, Any]
    database_before: dict[str, Any]
    stats: dict[str, Any]


def run_with_injected(baseline: Baseline, tmp_path: Path, *, endpoint: str, body: bytes = b"",
                      streams: tuple[str, ...], content_type: str = XML, status: int = 200,
                      forget: tuple[str, ...] = (), repeat: bytes = b"", repeat_count: int = 0,
                      tail: bytes = b"", headers: dict[str, str] | None = None) -> HostileRun:
    """Run ``streams`` from the baseline's database and state with ``endpoint`` answering
    the crafted payload (every time: a retry gets it again). ``forget`` drops bookmarks, e.g.
    the hosts window, so that every host gets its detections fetched again."""
    shutil.copy(baseline.database, tmp_path / "target.db")
    pipeline = Pipeline(baseline.sim, tmp_path, max_retries=2)
    state = copy.deepcopy(baseline.state)
    for stream in forget:
        state["bookmarks"].pop(stream, None)
    before = pipeline.snapshot()
    sim = baseline.sim
    sim.reset_stats()
    sim.admin_post("/admin/inject", {
        "endpoint": endpoint, "status": status, "content_type": content_type,
        "body_b64": base64.b64encode(body).decode(), "times": 50,
        "repeat_b64": base64.b64encode(repeat).decode(), "repeat_count": repeat_count,
        "tail_b64": base64.b64encode(tail).decode(), "headers": headers or {},
    })
    try:
        result = pipeline.run(state=state, streams=streams, timeout=240)
    finally:
        sim.admin_post("/admin/inject", {"clear": True})
    return HostileRun(pipeline, result, state, before, sim.stats())


def _bookmarks(state: dict[str, Any] | None) -> dict[str, Any]:
    return {stream: value for stream, value in (state or {}).get("bookmarks", {}).items()
            if value}


def assert_refused(run: HostileRun, *, stream: str, says: tuple[str, ...] = ()) -> str:
    """One clear line naming the stream; the database and the state exactly as they were."""
    line = assert_one_clear_line(run.result, names=(stream,), says=says)
    assert run.stats["faults"].get("inject"), "the crafted answer was never requested"
    assert run.pipeline.snapshot() == run.database_before, (
        f"the failed run changed the target database\n{run.result.describe()}")
    if run.result.last_state is not None:
        assert _bookmarks(run.result.last_state) == _bookmarks(run.state_in), (
            f"the failed run moved the state:\nbefore {json.dumps(run.state_in)}\n"
            f"after  {json.dumps(run.result.last_state)}")
    return line


# --- the cases ---------------------------------------------------------------------------------


@pytest.mark.parametrize("doctype", [
    '<!DOCTYPE KNOWLEDGE_BASE_VULN_LIST_OUTPUT [\n <!ENTITY file SYSTEM "file:///etc/passwd">\n'
    ' <!ENTITY probe SYSTEM "{url}/msp/about.php">\n]>\n',
    '<!DOCTYPE KNOWLEDGE_BASE_VULN_LIST_OUTPUT [\n <!ENTITY % remote SYSTEM '
    '"{url}/qps/rest/portal/version">\n %remote;\n]>\n',
], ids=["external-entities", "parameter-entity"])
def test_xxe_is_refused_and_nothing_is_fetched(baseline: Baseline, tmp_path: Path,
                                               doctype: str) -> None:
    document = kb_document(doctype.replace("{url}", baseline.sim.url),
                           "&file;&probe;" if "file" in doctype else "x")
    run = run_with_injected(baseline, tmp_path, endpoint="knowledge_base", body=document,
                            streams=("knowledge_base",))
    assert_refused(run, stream="knowledge_base", says=("entit", "DTD", "DOCTYPE"))
    assert not {"about", "portal_version"} & set(run.stats["requests"]), (
        f"the tap fetched an external entity: {run.stats['requests']}")
    for path in run_files(tmp_path):
        assert b"root:x:0:0" not in path.read_bytes(), f"/etc/passwd leaked into {path}"


def test_an_external_dtd_line_is_never_fetched(baseline: Baseline, tmp_path: Path) -> None:
    """Qualys' own `<!DOCTYPE ... SYSTEM "https://...dtd">` lines are fine, and never fetched."""
    document = kb_document(f'<!DOCTYPE KNOWLEDGE_BASE_VULN_LIST_OUTPUT SYSTEM '
                           f'"{baseline.sim.url}/msp/about.php">\n', "External DTD line")
    run = run_with_injected(baseline, tmp_path, endpoint="knowledge_base", body=document,
                            streams=("knowledge_base",))
    assert run.result.tap_rc == 0, run.result.describe()
    assert "about" not in run.stats["requests"], run.stats["requests"]
    titles = [r["title"] for r in run.result.records("knowledge_base")]
    assert titles == ["External DTD line"], titles


def test_billion_laughs_is_refused_quickly(baseline: Baseline, tmp_path: Path) -> None:
    run = run_with_injected(baseline, tmp_path, endpoint="host_list", body=BILLION_LAUGHS,
                            streams=("hosts",))
    assert_refused(run, stream="hosts", says=("entit", "DTD", "DOCTYPE"))
    assert run.result.peak_rss["tap"] < 400 * 2**20, run.result.peak_rss


def test_invalid_utf8(baseline: Baseline, tmp_path: Path) -> None:
    document = edit_first(host_list(baseline.sim), "NETBIOS", b"WIN\xff\xfeBAD")
    run = run_with_injected(baseline, tmp_path, endpoint="host_list", body=document,
                            streams=("hosts",))
    assert_refused(run, stream="hosts", says=("UTF-8", "utf8", "encoding", "byte"))


def test_nul_in_results_is_replaced_not_loaded(baseline: Baseline, tmp_path: Path) -> None:
    document = edit_first(first_batch_detections(baseline.sim), "RESULTS",
                          b"<![CDATA[before\x00after]]>")
    run = run_with_injected(baseline, tmp_path, endpoint="host_detection", body=document,
                            streams=("host_detections",), forget=("hosts",))
    assert run.result.tap_rc == 0, run.result.describe()
    results = [r.get("results") or "" for r in run.result.records("host_detections")]
    assert "before\ufffdafter" in results, "the NUL was not replaced by U+FFFD"
    assert not any("\x00" in text for text in results)
    database = (tmp_path / "target.db").read_bytes()
    assert b"before\x00after" not in database
    assert "before\ufffdafter".encode() in database


def test_results_over_the_limit_in_cdata_sections_are_cut(baseline: Baseline,
                                                          tmp_path: Path) -> None:
    """12 CDATA sections of 9 MB in one RESULTS: cut at 10 MB, marked, memory bounded."""
    document = first_batch_detections(baseline.sim)
    head, _, rest = document.partition(b"<RESULTS>")
    _, _, tail = rest.partition(b"</RESULTS>")
    section = b"<![CDATA[" + b"A" * (9 * 1024 * 1024) + b"]]>"
    run = run_with_injected(baseline, tmp_path, endpoint="host_detection",
                            body=head + b"<RESULTS>", repeat=section, repeat_count=12,
                            tail=b"</RESULTS>" + tail, streams=("host_detections",),
                            forget=("hosts",))
    assert run.result.tap_rc == 0, run.result.describe()
    cut = [r for r in run.result.records("host_detections")
           if "[... cut by tap-qualys:" in (r.get("results") or "")]
    # Every batch gets the crafted answer: the same detection each time.
    assert len({(r["host_id"], r["unique_vuln_id"]) for r in cut}) == 1, len(cut)
    results = cut[0]["results"]
    over = 12 * len(section) - 12 * len(b"<![CDATA[]]>") - 10_000_000
    marker = f"[... cut by tap-qualys: {over:,} bytes over the 10 MB limit]"
    assert results == "A" * 10_000_000 + marker
    warnings = [line for line in run.result.log(("WARNING",)) if "RESULTS" in line]
    assert any(f"host {cut[0]['host_id']}" in line and f"QID {cut[0]['qid']}" in line
               for line in warnings), warnings
    assert any(f"{len(cut)} RESULTS over the 10 MB limit" in line for line in warnings), warnings
    # Before the limit applied to the joined text: 834 MiB; measured 146 MiB with it.
    assert run.result.peak_rss["tap"] < 250 * 2**20, run.result.peak_rss


def test_a_50_mb_text_node_elsewhere_is_refused(baseline: Baseline, tmp_path: Path) -> None:
    document = first_batch_detections(baseline.sim)
    head, _, rest = document.partition(b"<DNS>")
    _, _, tail = rest.partition(b"</DNS>")
    run = run_with_injected(baseline, tmp_path, endpoint="host_detection",
                            body=head + b"<DNS>", repeat=b"A" * 1024, repeat_count=50 * 1024,
                            tail=b"</DNS>" + tail, streams=("host_detections",),
                            forget=("hosts",))
    assert_refused(run, stream="host_detections", says=("<DNS>", "10 MB"))
    assert run.result.peak_rss["tap"] < 400 * 2**20, run.result.peak_rss


def test_a_10000_deep_document_is_refused_for_its_depth(baseline: Baseline,
                                                        tmp_path: Path) -> None:
    document = host_list(baseline.sim).replace(
        b"</TRACKING_METHOD>", b"</TRACKING_METHOD>" + b"<X>" * 10_000 + b"</X>" * 10_000, 1)
    run = run_with_injected(baseline, tmp_path, endpoint="host_list", body=document,
                            streams=("hosts",))
    line = assert_refused(run, stream="hosts", says=("nested",))
    assert "10 MB" not in line, line


def test_non_numeric_text_where_a_number_belongs(baseline: Baseline, tmp_path: Path) -> None:
    document = edit_first(first_batch_detections(baseline.sim), "TIMES_FOUND", b"many")
    run = run_with_injected(baseline, tmp_path, endpoint="host_detection", body=document,
                            streams=("host_detections",), forget=("hosts",))
    line = assert_refused(run, stream="host_detections", says=("times_found",))
    assert "many" in line, line


def test_an_unknown_new_element_is_tolerated(baseline: Baseline, tmp_path: Path) -> None:
    document = host_list(baseline.sim).replace(
        b"</TRACKING_METHOD>",
        b"</TRACKING_METHOD><NEW_FIELD_2027>surprise</NEW_FIELD_2027>"
        b"<FUTURE_LIST><FUTURE><NAME>x</NAME></FUTURE></FUTURE_LIST>")
    document = document.replace(b"<HOST>", b'<HOST new_attribute="1">')
    run = run_with_injected(baseline, tmp_path, endpoint="host_list", body=document,
                            streams=("hosts",))
    assert run.result.tap_rc == 0, run.result.describe()
    assert len(run.result.records("hosts")) == len(baseline.sim.ground_truth("hosts"))
    run.pipeline.assert_ground_truth(("hosts",), context=run.result.describe())


@pytest.mark.parametrize(("endpoint", "stream", "element"), [
    ("host_list", "hosts", "ID"),
    ("host_detection", "host_detections", "UNIQUE_VULN_ID"),
])
def test_a_missing_required_element(baseline: Baseline, tmp_path: Path, endpoint: str,
                                    stream: str, element: str) -> None:
    if endpoint == "host_list":
        document = remove_first(host_list(baseline.sim), element)
    else:
        document = remove_first(first_batch_detections(baseline.sim), element)
    run = run_with_injected(baseline, tmp_path, endpoint=endpoint, body=document,
                            streams=(stream,), forget=("hosts",))
    assert_refused(run, stream=stream, says=(element,))


def test_an_empty_200_body(baseline: Baseline, tmp_path: Path) -> None:
    run = run_with_injected(baseline, tmp_path, endpoint="knowledge_base", body=b"",
                            streams=("knowledge_base",))
    assert_refused(run, stream="knowledge_base", says=("empty", "no body", "0 bytes", "ended"))


def test_html_from_a_proxy_instead_of_xml(baseline: Baseline, tmp_path: Path) -> None:
    run = run_with_injected(baseline, tmp_path, endpoint="host_list", body=PROXY_LOGIN_PAGE,
                            content_type="text/html; charset=UTF-8", streams=("hosts",))
    assert_refused(run, stream="hosts", says=("HTML", "proxy", "not XML"))


def test_invalid_json_from_the_gateway(baseline: Baseline, tmp_path: Path) -> None:
    body = b'{"responseCode":"SUCCESS","hasMore":0,"assetListData":{"asset":[{"assetId":1,'
    run = run_with_injected(baseline, tmp_path, endpoint="csam_search", body=body,
                            content_type="application/json", streams=("csam_assets",))
    assert_refused(run, stream="csam_assets", says=("JSON",))


def test_json_nested_too_deep_from_the_gateway(baseline: Baseline, tmp_path: Path) -> None:
    """msgspec refuses 200,000 nested lists with a RecursionError, which is not a ValueError:
    it escaped as a traceback."""
    body = (b'{"responseCode":"SUCCESS","hasMore":0,"assetListData":{"asset":'
            + b"[" * 200_000 + b"]" * 200_000 + b"}}")
    run = run_with_injected(baseline, tmp_path, endpoint="csam_search", body=body,
                            content_type="application/json", streams=("csam_assets",))
    assert_refused(run, stream="csam_assets", says=("nested",))
    assert not has_traceback(run.result), run.result.describe()


def test_two_content_lengths_that_disagree(baseline: Baseline, tmp_path: Path) -> None:
    """A second, lying Content-Length (the simulator sends the true one too): urllib3 refuses
    the answer with InvalidHeader, which escaped as a traceback."""
    run = run_with_injected(baseline, tmp_path, endpoint="host_list", body=PROXY_LOGIN_PAGE,
                            streams=("hosts",), headers={"Content-Length": "7"})
    assert_refused(run, stream="hosts", says=("Content-Length",))
    assert not has_traceback(run.result), run.result.describe()


def test_a_jwt_endpoint_answering_200_without_a_token(baseline: Baseline,
                                                       tmp_path: Path) -> None:
    run = run_with_injected(baseline, tmp_path, endpoint="auth", body=b"",
                            content_type="text/plain", streams=("csam_assets",))
    assert_refused(run, stream="csam_assets", says=("token", "JWT"))


def test_broken_input_prints_no_traceback(baseline: Baseline, tmp_path: Path) -> None:
    run = run_with_injected(baseline, tmp_path, endpoint="host_list", body=PROXY_LOGIN_PAGE,
                            content_type="text/html", streams=("hosts",))
    assert run.result.tap_rc not in (0, None)
    assert not has_traceback(run.result), run.result.describe()


def _gzip_bomb(expanded_mib: int) -> bytes:
    """A gzip member of ``expanded_mib`` MiB of JSON whitespace around an empty list: ~1000:1."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * 2**20
    parts = [compressor.compress(chunk) for _ in range(expanded_mib)]
    return b"".join([*parts, compressor.compress(b"[]"), compressor.flush()])


@pytest.mark.parametrize("header", [False, True], ids=["gzip-magic", "content-encoding"])
def test_a_gzip_bomb_in_posture_info_is_refused_in_bounded_memory(
        baseline: Baseline, tmp_path: Path, header: bool) -> None:
    bomb = _gzip_bomb(512)
    shutil.copy(baseline.database, tmp_path / "target.db")
    sim = baseline.sim
    sim.reset_stats()
    sim.admin_post("/admin/inject", {
        "endpoint": "pcrs_posture_info", "content_type": "application/json", "times": 50,
        "headers": {"Content-Encoding": "gzip"} if header else {},
        "body_b64": base64.b64encode(bomb).decode()})
    pipeline = Pipeline(sim, tmp_path, max_retries=1)
    try:
        result = pipeline.run(state=baseline.state, timeout=240,
                              streams=("pcrs_policies", "pcrs_policy_host_ids",
                                       "pcrs_posture_info"))
    finally:
        sim.admin_post("/admin/inject", {"clear": True})
    # Before a fix: 2-3 GiB, and the empty list inside is loaded as a finished run.
    assert result.peak_rss["tap"] < 400 * 2**20, result.peak_rss
    assert_one_clear_line(result, names=("pcrs_posture_info",), says=("gzip", "expand"))
