"""Small HTTP and XML helpers shared by the simulator tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from lxml import etree

from qualys_simulator.testing import SimulatorProcess

DTD_DIR = Path(__file__).parent / "dtd"
HLD = "/api/5.0/fo/asset/host/vm/detection/"
HL = "/api/5.0/fo/asset/host/"
KB = "/api/4.0/fo/knowledge_base/vuln/"
ALL_STATUSES = "New,Active,Re-Opened,Fixed"
#: The detection fields beyond the basics that the ground truth holds (the tap asks for them).
TRUTH_FIELDS = {"show_arf_data": "1", "mitre_attack_details": "1"}
_ARF = ("AFFECT_RUNNING_KERNEL", "AFFECT_RUNNING_SERVICE", "AFFECT_EXPLOITABLE_CONFIG")
_MITRE = ("MITRE_TACTIC_NAME", "MITRE_TECHNIQUE_NAME", "MITRE_TACTIC_ID", "MITRE_TECHNIQUE_ID")
LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Window-Sec", "X-RateLimit-Remaining",
                 "X-RateLimit-ToWait-Sec", "X-Concurrency-Limit-Limit",
                 "X-Concurrency-Limit-Running")


def call(sim: SimulatorProcess, path: str, params: dict[str, Any] | None = None, *,
         method: str = "POST", auth: tuple[str, str] | None = None, xrw: bool = True,
         stream: bool = False, headers: dict[str, str] | None = None,
         cookies: dict[str, str] | None = None, timeout: float = 120,
         verify: bool | str = True) -> requests.Response:
    all_headers = {"X-Requested-With": "pytest"} if xrw else {}
    all_headers.update(headers or {})
    data = {"action": "list", **(params or {})}
    kwargs: dict[str, Any] = {"data": data} if method == "POST" else {"params": data}
    return requests.request(method, sim.url + path, auth=auth or (sim.username, sim.password),
                            headers=all_headers, stream=stream, timeout=timeout, cookies=cookies,
                            verify=verify, **kwargs)


def xml(response: requests.Response) -> etree._Element:
    return etree.fromstring(response.content)


def dtd(name: str) -> etree.DTD:
    return etree.DTD(str(DTD_DIR / name))


def simple_return(response: requests.Response) -> tuple[str | None, str]:
    root = xml(response)
    assert root.tag == "SIMPLE_RETURN"
    return root.findtext("RESPONSE/CODE"), root.findtext("RESPONSE/TEXT") or ""


def follow(sim: SimulatorProcess, path: str, params: dict[str, Any]) -> list[etree._Element]:
    """Every page of a paged list, re-sending our own parameters with the next id_min."""
    pages = []
    current = dict(params)
    for _ in range(10_000):
        response = call(sim, path, current)
        assert response.status_code == 200, response.text
        root = xml(response)
        pages.append(root)
        warning = root.find("RESPONSE/WARNING")
        if warning is None:
            return pages
        assert warning.findtext("CODE") == "1980"
        url = warning.findtext("URL") or ""
        next_id = url.rsplit("id_min=", 1)[1]
        assert next_id.isdigit()
        current["id_min"] = next_id
    raise AssertionError("paging never ended")


def detection_records(roots: list[etree._Element]) -> list[dict[str, Any]]:
    """HLD pages -> records shaped like the host_detections ground truth (ask for them with
    ``TRUTH_FIELDS``)."""
    def number(text: str | None) -> int | None:
        return None if text is None else int(text)

    records = []
    for root in roots:
        for host in root.iterfind("RESPONSE/HOST_LIST/HOST"):
            host_id = int(host.findtext("ID") or 0)
            os_cpe = (host.findtext("OS_CPE") or "").strip() or None
            for d in host.iterfind("DETECTION_LIST/DETECTION"):
                records.append({
                    "HOST_ID": host_id,
                    "UNIQUE_VULN_ID": int(d.findtext("UNIQUE_VULN_ID") or 0),
                    "QID": int(d.findtext("QID") or 0),
                    "TYPE": d.findtext("TYPE"),
                    "STATUS": d.findtext("STATUS"),
                    "PORT": number(d.findtext("PORT")),
                    "PROTOCOL": d.findtext("PROTOCOL"),
                    "SSL": number(d.findtext("SSL")),
                    "FIRST_FOUND_DATETIME": d.findtext("FIRST_FOUND_DATETIME"),
                    "LAST_FOUND_DATETIME": d.findtext("LAST_FOUND_DATETIME"),
                    "LAST_FIXED_DATETIME": d.findtext("LAST_FIXED_DATETIME"),
                    "LAST_PROCESSED_DATETIME": d.findtext("LAST_PROCESSED_DATETIME"),
                    "TIMES_FOUND": int(d.findtext("TIMES_FOUND") or 0),
                    "HOST_OS_CPE": os_cpe,
                    **{tag: number(d.findtext(tag)) for tag in _ARF},
                    **{tag: d.findtext(tag) for tag in _MITRE},
                })
    return records


def host_ids(roots: list[etree._Element]) -> list[int]:
    return [int(h.findtext("ID") or 0)
            for root in roots for h in root.iterfind("RESPONSE/HOST_LIST/HOST")]


def id_set_ids(root: etree._Element) -> list[int]:
    """Every id of an ID_SET answer, ranges expanded."""
    ids: list[int] = []
    for element in root.iterfind("RESPONSE/ID_SET/*"):
        text = (element.text or "").strip()
        if element.tag == "ID":
            ids.append(int(text))
        else:
            first, last = (int(part) for part in text.split("-"))
            ids.extend(range(first, last + 1))
    return ids
