"""Purged hosts: the details=None id list (ID_SET) and the purge admin calls."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lxml import etree

from qualys_simulator import vm_xml
from qualys_simulator.testing import SimulatorProcess
from tests.simulator.helpers import HL, HLD, call, dtd, follow, id_set_ids, xml


@pytest.fixture
def own_sim() -> Iterator[SimulatorProcess]:
    """A simulator this test may purge hosts from."""
    with SimulatorProcess(hosts=30, seed=5, detections_per_host=3, kb_size=100) as s:
        yield s


def test_id_set_compresses_runs() -> None:
    text = vm_xml.id_set([3, 5, 6, 7, 9, 10])
    root = etree.fromstring(text)
    assert [(e.tag, e.text) for e in root] == [
        ("ID", "3"),
        ("ID_RANGE", "5-7"),
        ("ID_RANGE", "9-10"),
    ]


def test_full_id_list_is_an_id_set(sim: SimulatorProcess) -> None:
    response = call(sim, HL, {"details": "None", "truncation_limit": "0"})
    root = xml(response)
    assert dtd("host_list.dtd").validate(root), dtd("host_list.dtd").error_log
    expected = sorted(r["ID"] for r in sim.ground_truth("hosts"))
    assert id_set_ids(root) == expected
    assert root.find("RESPONSE/WARNING") is None


def test_id_set_pages_by_id(sim: SimulatorProcess) -> None:
    pages = follow(sim, HL, {"details": "None", "truncation_limit": "7"})
    assert len(pages) > 1
    ids = [i for page in pages for i in id_set_ids(page)]
    assert ids == sorted(r["ID"] for r in sim.ground_truth("hosts"))
    first = id_set_ids(pages[0])
    assert len(first) == 7


def test_id_set_within_id_bounds(sim: SimulatorProcess) -> None:
    every = id_set_ids(xml(call(sim, HL, {"details": "None", "truncation_limit": "0"})))
    low, high = every[5], every[12]
    params = {"details": "None", "truncation_limit": "0", "id_min": low, "id_max": high}
    assert id_set_ids(xml(call(sim, HL, params))) == every[5:13]


def test_purge_removes_host_everywhere(own_sim: SimulatorProcess) -> None:
    hosts = sorted(r["ID"] for r in own_sim.ground_truth("hosts"))
    victims = [hosts[2], hosts[9]]
    assert own_sim.purge([*victims, 12345]) == victims  # an unknown id is skipped
    assert own_sim.purged_host_ids() == victims
    ids = id_set_ids(xml(call(own_sim, HL, {"details": "None", "truncation_limit": "0"})))
    assert ids == [h for h in hosts if h not in victims]
    listed = {
        int(e.text or 0)
        for e in xml(call(own_sim, HL, {"truncation_limit": "0"})).iterfind(".//HOST/ID")
    }
    assert not listed & set(victims)
    detections = xml(call(own_sim, HLD, {"ids": ",".join(map(str, victims))}))
    assert detections.find(".//HOST") is None
    truth = own_sim.ground_truth("host_detections")
    assert not {r["HOST_ID"] for r in truth} & set(victims)
    # An advance purges more, and the ground truth names them all.
    advanced = own_sim.advance(86400, purge=2)
    assert len(advanced["purged_host_ids"]) == 2
    assert own_sim.purged_host_ids() == sorted([*victims, *advanced["purged_host_ids"]])


def test_purge_rejects_bad_body(own_sim: SimulatorProcess) -> None:
    with pytest.raises(Exception, match="400"):
        own_sim.admin_post("/admin/purge", {"host_ids": ["1"]})
