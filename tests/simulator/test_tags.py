"""The simulator's tag API (QPS ``search/am/tag``): paging, filters, errors and advances."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from lxml import etree

from qualys_simulator.datagen import TAGS
from qualys_simulator.testing import SimulatorProcess

PATH = "/qps/rest/2.0/search/am/tag"


@pytest.fixture
def fresh() -> Iterator[SimulatorProcess]:
    """A simulator of its own, for tests that advance the clock or inject faults."""
    with SimulatorProcess(hosts=10, seed=5) as s:
        yield s


def search(
    sim: SimulatorProcess,
    criteria: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    limit: int | None = None,
    auth: tuple[str, str] | None = None,
    body: str | None = None,
) -> requests.Response:
    if body is None:
        filters = "".join(
            f'<Criteria field="{f}" operator="{o}">{v}</Criteria>' for f, o, v in criteria
        )
        prefs = f"<preferences><limitResults>{limit}</limitResults></preferences>" if limit else ""
        body = f"<ServiceRequest><filters>{filters}</filters>{prefs}</ServiceRequest>"
    return requests.post(
        sim.url + PATH,
        data=body.encode(),
        timeout=30,
        auth=auth or (sim.username, sim.password),
        headers={"Content-Type": "text/xml"},
    )


def page(response: requests.Response) -> tuple[etree._Element, list[dict[str, Any]]]:
    root = etree.fromstring(response.content)
    tags = [
        {child.tag: child.text for child in tag if child.tag != "children"}
        for tag in root.iterfind("data/Tag")
    ]
    return root, tags


def all_pages(
    sim: SimulatorProcess, limit: int, criteria: list[tuple[str, str, str]] = ()
) -> tuple[list[dict[str, Any]], int]:  # type: ignore[assignment]
    tags: list[dict[str, Any]] = []
    calls = 0
    last: str | None = None
    while True:
        extra = [("id", "GREATER", last)] if last else []
        root, found = page(search(sim, [*criteria, *extra], limit))
        calls += 1
        assert root.findtext("responseCode") == "SUCCESS"
        assert int(root.findtext("count") or -1) == len(found)
        tags += found
        if root.findtext("hasMoreRecords") != "true":
            assert root.find("lastId") is None
            return tags, calls
        last = root.findtext("lastId")
        assert last == found[-1]["id"]


def test_pages_by_last_id_cover_the_ground_truth(sim: SimulatorProcess) -> None:
    tags, calls = all_pages(sim, limit=7)
    truth = sim.ground_truth("tags")
    assert [int(t["id"]) for t in tags] == [r["id"] for r in truth]
    assert calls == -(-len(truth) // 7)
    assert 15 <= len(truth) <= 30
    by_id = {r["id"]: r for r in truth}
    for tag in tags:
        record = by_id[int(tag["id"])]
        assert tag["name"] == record["name"]
        assert tag.get("modified") == record["modified"]
        assert tag.get("ruleText") == record["ruleText"]


def test_tree_holds_every_host_tag_under_parents_up_to_four_levels(sim: SimulatorProcess) -> None:
    truth = {r["id"]: r for r in sim.ground_truth("tags")}
    for host_tag in TAGS:  # the ids and names hosts carry in their <TAGS>
        assert truth[host_tag.tag_id]["name"] == host_tag.name

    def depth(tag_id: int) -> int:
        parent = truth[tag_id]["parentTagId"]
        return 1 if parent is None else 1 + depth(parent)

    assert max(depth(i) for i in truth) == 4
    assert {r["ruleType"] for r in truth.values()} >= {"STATIC", "OS_REGEX", "GROOVY"}


def test_children_list_the_direct_children(sim: SimulatorProcess) -> None:
    root = etree.fromstring(search(sim, [("name", "EQUALS", "Environments")]).content)
    children = [int(i) for i in root.xpath("data/Tag/children/list/TagSimple/id/text()")]
    truth = sim.ground_truth("tags")
    environments = next(r["id"] for r in truth if r["name"] == "Environments")
    assert children == [r["id"] for r in truth if r["parentTagId"] == environments]
    assert children


def test_filters(sim: SimulatorProcess) -> None:
    truth = sim.ground_truth("tags")
    _, found = page(search(sim, [("name", "EQUALS", "Owner: Müller &amp; Söhne &lt;EU&gt;")]))
    assert [t["id"] for t in found] == ["7100010"]
    _, found = page(search(sim, [("name", "CONTAINS", "zone")]))
    assert {t["name"] for t in found} == {"Zones", "Zone: EMEA", "Zone: AMER"}
    _, found = page(search(sim, [("parent", "EQUALS", "7000005")]))
    assert [int(t["id"]) for t in found] == [
        r["id"] for r in truth if r["parentTagId"] == 7_000_005
    ]
    cutoff = sorted(r["modified"] for r in truth)[-3]
    _, found = page(search(sim, [("updated", "GREATER", cutoff)]))
    assert {int(t["id"]) for t in found} == {r["id"] for r in truth if r["modified"] > cutoff}
    _, found = page(search(sim, [("ruleType", "IN", "OS_REGEX,GROOVY")]))
    assert {t["ruleType"] for t in found} == {"OS_REGEX", "GROOVY"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '<ServiceRequest><filters><Criteria field="owner" operator="EQUALS">x</Criteria>'
            "</filters></ServiceRequest>",
            "Unknown field",
        ),
        (
            '<ServiceRequest><filters><Criteria field="id" operator="GREATER">abc</Criteria>'
            "</filters></ServiceRequest>",
            "Invalid long value",
        ),
        (
            '<ServiceRequest><filters><Criteria field="name" operator="GREATER">a</Criteria>'
            "</filters></ServiceRequest>",
            "not supported",
        ),
        (
            "<ServiceRequest><preferences><limitResults>5000</limitResults></preferences>"
            "</ServiceRequest>",
            "limitResults",
        ),
        ("<ServiceRequest><filters>", "Invalid XML"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><ServiceRequest/>', "DOCTYPE"),
    ],
)
def test_invalid_requests(sim: SimulatorProcess, body: str, message: str) -> None:
    response = search(sim, body=body)
    assert response.status_code == 400
    root = etree.fromstring(response.content)
    assert root.findtext("responseCode") == "INVALID_REQUEST"
    assert message in (root.findtext("responseErrorDetails/errorMessage") or "")


def test_bad_credentials(sim: SimulatorProcess) -> None:
    response = search(sim, auth=(sim.username, "wrong"))
    assert response.status_code == 401
    root = etree.fromstring(response.content)
    assert root.findtext("responseCode") == "INVALID_CREDENTIALS"
    assert root.findtext("responseErrorDetails/errorMessage")


def test_advance_edits_a_rule_and_adds_a_tag(fresh: SimulatorProcess) -> None:
    before = {r["id"]: r for r in fresh.ground_truth("tags")}
    now = fresh.admin_get("/admin/clock")["now"]
    fresh.advance(86400)
    after = {r["id"]: r for r in fresh.ground_truth("tags")}
    added = set(after) - set(before)
    assert len(added) == 1
    assert after[added.pop()]["parentTagId"] == 7_100_009
    changed = [i for i in before if before[i] != after[i]]
    assert len(changed) == 1
    assert after[changed[0]]["ruleText"] != before[changed[0]]["ruleText"]
    # Exactly those two are what an incremental search by updated finds.
    _, found = page(search(fresh, [("updated", "GREATER", now)]))
    assert {int(t["id"]) for t in found} == set(after) - set(before) | set(changed)


def test_faults_and_injection(fresh: SimulatorProcess) -> None:
    fresh.configure(faults={"http_503": 1.0}, fault_budget={"http_503": 1})
    assert search(fresh).status_code == 503
    assert search(fresh).status_code == 200
    denied = (
        b'<?xml version="1.0" encoding="UTF-8"?><ServiceResponse><responseCode>'
        b"UNAUTHORIZED</responseCode><responseErrorDetails><errorMessage>Not authorized"
        b"</errorMessage></responseErrorDetails></ServiceResponse>"
    )
    fresh.admin_post(
        "/admin/inject",
        {"endpoint": "tag_search", "status": 403, "body_b64": base64.b64encode(denied).decode()},
    )
    response = search(fresh)
    assert response.status_code == 403
    assert b"UNAUTHORIZED" in response.content
    assert fresh.admin_get("/admin/stats")["requests"]["tag_search"] == 3
