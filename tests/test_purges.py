"""Purged hosts: the sweep's state encoding, its fail-closed judging, and the hosts stream's
tombstones against the simulator."""

from __future__ import annotations

import logging
import random
import typing as t

import pytest

from qualys_simulator.testing import SimulatorProcess
from tap_qualys import purges, qualys_xml
from tap_qualys.errors import QualysResponseError, QualysXMLError, StateError
from tap_qualys.purges import decode_ids, encode_ids, judge
from tests.conftest import tap_config
from tests.test_vm_streams import run_tap

HOSTS = ("hosts",)
SCOPE: dict[str, int | None] = {"id_min": None, "id_max": None}


def simulator_like_ids(count: int, seed: int = 1) -> list[int]:
    """Ids spaced as the simulator's (and many subscriptions'): ascending, small gaps."""
    r = random.Random(seed)
    return [1_000_000 + 16 * i + r.randrange(16) for i in range(count)]


# --- the state encoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ids",
    [[], [0], [5, 1, 5, 3], [1, 2**40, 2**63], simulator_like_ids(1000)],
)
def test_encoding_round_trips(ids: list[int]) -> None:
    assert decode_ids(encode_ids(ids)) == sorted(set(ids))


def test_encoding_is_compact_at_100000_hosts() -> None:
    text = encode_ids(simulator_like_ids(100_000))
    # Measured 84,440 characters (0.84 per host; 172 for 100,000 consecutive ids, 280,420 for
    # ids spread over a billion).
    assert len(text) < 120_000
    assert text.isascii()


@pytest.mark.parametrize("text", ["not base64!", "aGVsbG8=", encode_ids([300])[:-4]])
def test_damaged_state_is_a_state_error(text: str) -> None:
    with pytest.raises(StateError, match=r"purge_sweep\.ids"):
        decode_ids(text)


def test_negative_id_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        encode_ids([-1])


# --- judging a sweep -------------------------------------------------------------------------


def swept(ids: list[int], scope: dict[str, int | None] = SCOPE) -> dict[str, t.Any]:
    return judge(None, ids, scope=scope, swept_at="2026-11-01T00:00:00Z").state


def test_first_sweep_records_the_set() -> None:
    verdict = judge(None, [1, 2, 3], scope=SCOPE, swept_at="2026-11-01T00:00:00Z")
    assert verdict.vanished == []
    assert verdict.state["count"] == 3
    assert decode_ids(verdict.state["ids"]) == [1, 2, 3]
    assert "first sweep" in verdict.message


def test_vanished_ids_are_the_difference() -> None:
    previous = swept(list(range(10, 30)))
    verdict = judge(previous, [*range(10, 20), *range(22, 35)], scope=SCOPE, swept_at="x")
    assert verdict.vanished == [20, 21]
    assert decode_ids(verdict.state["ids"]) == [*range(10, 20), *range(22, 35)]
    assert not verdict.refused


@pytest.mark.parametrize("current", [[], list(range(0, 4))])
def test_mass_disappearance_is_refused(current: list[int]) -> None:
    previous = swept(list(range(10)))
    verdict = judge(previous, current, scope=SCOPE, swept_at="x", max_fraction=0.5)
    assert verdict.refused
    assert verdict.vanished == []
    assert verdict.state == previous  # the previous list is kept for the next sweep
    assert "purge_sweep_max_fraction" in verdict.message


def test_max_fraction_one_allows_an_empty_sweep() -> None:
    verdict = judge(swept([1, 2]), [], scope=SCOPE, swept_at="x", max_fraction=1)
    assert verdict.vanished == [1, 2]


def test_another_scope_is_a_new_baseline() -> None:
    previous = swept(list(range(10)), {"id_min": 0, "id_max": 100})
    verdict = judge(previous, [1], scope={"id_min": 0, "id_max": 50}, swept_at="x")
    assert verdict.vanished == []
    assert verdict.state["scope"] == {"id_min": 0, "id_max": 50}
    assert "another id range" in verdict.message


def test_due_follows_qualys_clock() -> None:
    previous = swept([1])  # swept_at 2026-11-01T00:00:00Z
    at = purges.parse_utc
    assert purges.due(None, at("2026-11-01T00:00:00Z"), 24)
    assert purges.due(previous, at("2026-11-01T01:00:00Z"), 0)
    assert not purges.due(previous, at("2026-11-01T23:00:00Z"), 24)
    assert purges.due(previous, at("2026-11-02T00:00:00Z"), 24)
    # Qualys' clock moved back: sweep rather than wait for a time that may never come.
    assert purges.due(previous, at("2026-10-01T00:00:00Z"), 24)


# --- the ID_SET parser -----------------------------------------------------------------------

HEAD = b"<?xml version='1.0'?><HOST_LIST_OUTPUT><RESPONSE><DATETIME>2026-11-01T00:00:00Z"


def parse(body: bytes) -> list[dict[str, int]]:
    return list(qualys_xml.parse_host_id_set([body]))


def test_id_set_ids_and_ranges() -> None:
    body = HEAD + (
        b"</DATETIME><ID_SET><ID>5</ID><ID_RANGE>7-9</ID_RANGE><ID> 12 </ID></ID_SET>"
        b"</RESPONSE></HOST_LIST_OUTPUT>"
    )
    assert parse(body) == [{"first": 5, "id": 5}, {"first": 7, "id": 9}, {"first": 12, "id": 12}]


def test_id_set_tolerates_host_elements() -> None:
    body = HEAD + b"</DATETIME><HOST_LIST><HOST><ID>4</ID></HOST></HOST_LIST></RESPONSE>"
    assert parse(body + b"</HOST_LIST_OUTPUT>") == [{"first": 4, "id": 4}]


@pytest.mark.parametrize(
    "element", [b"<ID_RANGE>9-7</ID_RANGE>", b"<ID_RANGE>1-99999999</ID_RANGE>", b"<ID>x</ID>"]
)
def test_bad_id_set_elements_fail(element: bytes) -> None:
    body = HEAD + b"</DATETIME><ID_SET>" + element + b"</ID_SET></RESPONSE></HOST_LIST_OUTPUT>"
    with pytest.raises(QualysXMLError):
        parse(body)


def test_cut_off_id_set_fails() -> None:
    with pytest.raises(QualysResponseError):
        parse(HEAD + b"</DATETIME><ID_SET><ID>5</ID>")


# --- the hosts stream against the simulator --------------------------------------------------


@pytest.fixture
def fresh() -> t.Iterator[SimulatorProcess]:
    with SimulatorProcess(hosts=40, seed=23, detections_per_host=2, kb_size=100) as sim:
        yield sim


def tombstones(records: dict[str, list[dict[str, t.Any]]]) -> list[dict[str, t.Any]]:
    return [r for r in records.get("hosts", []) if r.get("_sdc_deleted_at")]


def last_state(states: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    return states[-1]


def test_purged_hosts_become_tombstones(fresh: SimulatorProcess) -> None:
    config = tap_config(fresh, hosts_overlap_minutes=0)
    streams = ("hosts", "host_detections")
    records, states = run_tap(config, streams=streams)
    assert tombstones(records) == []
    assert all(r["_sdc_deleted_at"] is None for r in records["hosts"])
    state = last_state(states)
    sweep = state["bookmarks"]["hosts"][purges.STATE_KEY]
    assert sweep["count"] == 40

    ids = sorted(r["id"] for r in records["hosts"])
    purged = fresh.purge([ids[3], ids[17]])
    fresh.advance(3600, purge=0, new_hosts=0)
    now = fresh.admin_get("/admin/clock")["now"]
    records, states = run_tap(config, state, streams=streams)
    assert tombstones(records) == [{"id": i, "_sdc_deleted_at": now} for i in purged]
    # No detection request for a tombstone: detections only of live hosts.
    assert not {d["host_id"] for d in records.get("host_detections", [])} & set(purged)

    records, _ = run_tap(config, last_state(states), streams=streams)
    assert tombstones(records) == []  # said once; the state moved on


def test_mass_disappearance_is_refused_end_to_end(
    fresh: SimulatorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    config = tap_config(fresh)
    records, states = run_tap(config, streams=HOSTS)
    ids = sorted(r["id"] for r in records["hosts"])
    fresh.purge(ids[:30])
    with caplog.at_level(logging.WARNING):
        records, states2 = run_tap(config, last_state(states), streams=HOSTS)
    assert tombstones(records) == []
    assert "refusing to delete" in caplog.text
    before = last_state(states)["bookmarks"]["hosts"][purges.STATE_KEY]
    assert last_state(states2)["bookmarks"]["hosts"][purges.STATE_KEY] == before
    # The user confirms: the next run deletes them.
    records, _ = run_tap({**config, "purge_sweep_max_fraction": 1}, last_state(states2), HOSTS)
    assert sorted(r["id"] for r in tombstones(records)) == ids[:30]


def test_cut_off_sweep_deletes_nothing(
    fresh: SimulatorProcess, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tap_config(fresh, max_retries=1)
    records, states = run_tap(config, streams=HOSTS)
    fresh.purge([records["hosts"][0]["id"]])
    real = qualys_xml.parse_host_id_set

    def cut(chunks: t.Iterable[bytes]) -> qualys_xml.XMLPage:
        body = b"".join(chunks)
        return real([body[: len(body) // 2]])  # a body that stops halfway, on every attempt

    monkeypatch.setattr(qualys_xml, "parse_host_id_set", cut)
    with caplog.at_level(logging.WARNING):
        records, states2 = run_tap(config, last_state(states), streams=HOSTS)
    assert tombstones(records) == []
    assert "purge sweep failed" in caplog.text
    before = last_state(states)["bookmarks"]["hosts"][purges.STATE_KEY]
    assert last_state(states2)["bookmarks"]["hosts"].get(purges.STATE_KEY) == before


def test_sweep_interval_and_switch(fresh: SimulatorProcess) -> None:
    config = tap_config(fresh, purge_sweep_interval_hours=24)
    _, states = run_tap(config, streams=HOSTS)
    first = last_state(states)["bookmarks"]["hosts"][purges.STATE_KEY]
    fresh.reset_stats()
    fresh.advance(3600, purge=1, new_hosts=0)
    records, states = run_tap(config, last_state(states), streams=HOSTS)
    assert tombstones(records) == []  # not due yet: one Host List call, no sweep
    assert fresh.stats()["requests"]["host_list"] == 1
    assert last_state(states)["bookmarks"]["hosts"][purges.STATE_KEY] == first
    fresh.advance(86400, purge=0, new_hosts=0)
    records, _ = run_tap(config, last_state(states), streams=HOSTS)
    assert len(tombstones(records)) == 1
    off, off_states = run_tap({**config, "purge_sweep": False}, streams=HOSTS)
    assert purges.STATE_KEY not in last_state(off_states)["bookmarks"]["hosts"]
    assert tombstones(off) == []


def test_no_sweep_when_the_catalog_deselects_deleted_at(
    fresh: SimulatorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    from tap_qualys.tap import TapQualys  # noqa: PLC0415

    config = tap_config(fresh)
    _, states = run_tap(config, streams=HOSTS)
    fresh.purge([fresh.ground_truth("hosts")[0]["ID"]])
    tap = TapQualys(config=config, state=last_state(states))
    for name, stream in tap.streams.items():
        stream.selected = name == "hosts"
    tap.streams["hosts"].mask[("properties", "_sdc_deleted_at")] = False
    with caplog.at_level(logging.WARNING):
        swept = tap.streams["hosts"]._purge_sweep("2026-11-02T00:00:00Z")
        assert list(swept) == []
    assert "deselects _sdc_deleted_at" in caplog.text


def test_damaged_previous_ids_become_a_new_baseline() -> None:
    previous = {**swept([1, 2, 3]), "ids": "not base64!"}
    verdict = judge(previous, [1, 2], scope=SCOPE, swept_at="x")
    assert verdict.vanished == []
    assert verdict.warn
    assert decode_ids(verdict.state["ids"]) == [1, 2]
