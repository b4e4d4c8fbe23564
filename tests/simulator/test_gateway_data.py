"""Unit tests of the gateway's data generation and token handling, without HTTP."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from qualys_simulator.gateway import _Tokens
from qualys_simulator.gateway_data import (
    AssetFilter,
    CsamData,
    FilterError,
    PcrsData,
    iso_ms,
    parse_datetime,
)
from qualys_simulator.world import World, WorldOptions


def _world(seed: int = 1, hosts: int = 30) -> World:
    return World(WorldOptions(hosts=hosts, seed=seed))


def test_assets_are_deterministic_per_seed() -> None:
    first, second, other = CsamData(_world(1)), CsamData(_world(1)), CsamData(_world(2))
    docs = [first.asset(row) for row in first.rows()]
    assert docs == [second.asset(row) for row in second.rows()]
    assert docs != [other.asset(row) for row in other.rows()]


def test_asset_rows_are_unique_and_sorted_and_grow_on_advance() -> None:
    world = _world()
    csam = CsamData(world)
    rows = csam.rows()
    ids = [row.asset_id for row in rows]
    assert ids == sorted(set(ids))
    assert len(ids) == 45
    linked = [row for row in rows if row.host_id is not None]
    assert len(linked) == 30
    assert max(row.asset_id for row in linked) < min(r.asset_id for r in rows if not r.host_id)
    world.advance(86400)
    after = csam.rows()
    assert {row.asset_id for row in rows} < {row.asset_id for row in after}
    assert any(row.revision == 1 for row in after)


def test_posture_history_is_consistent() -> None:
    world = _world(hosts=40)
    pcrs = PcrsData(world)
    pcrs.sync()
    for _ in range(3):
        world.advance(86400)
    pcrs.sync()
    changed = 0
    for policy in pcrs.policies():
        for pair in pcrs.pairs_of(policy):
            for control_id in policy.control_ids:
                state = pcrs.state(pair, control_id)
                assert state.created <= state.modified <= state.last_evaluated
                if state.previous:
                    changed += 1
                    assert state.previous != state.status
                    assert state.modified > state.created
                if state.status == "Failed":
                    assert state.last_fail == state.last_evaluated
                if state.first_fail and state.last_fail:
                    assert state.first_fail <= state.last_fail
    assert changed > 0


def test_inactive_policies_have_no_hosts() -> None:
    pcrs = PcrsData(_world())
    pcrs.sync()
    inactive = [p for p in pcrs.policies() if not p.active]
    assert inactive
    assert all(not pcrs.pairs_of(p) for p in inactive)
    assert all(pcrs.pairs_of(p) for p in pcrs.policies() if p.active)


def _members(pcrs: PcrsData) -> set[tuple[int, int]]:
    return {(p.id, pair.host_id) for p in pcrs.policies() for pair in pcrs.pairs_of(p)}


def test_memberships_end_on_advance_and_purged_hosts_leave_every_policy() -> None:
    world = _world(hosts=200)
    pcrs = PcrsData(world)
    pcrs.sync()
    before = _members(pcrs)
    assert not pcrs.removed()
    epoch = world.advance(86400, purge=3, new_hosts=0, pcrs_leave_share=0.05)
    pcrs.sync()
    after = _members(pcrs)
    removed = set(pcrs.removed())
    assert after == before - removed
    assert len(removed) == len(pcrs.removed())  # each ended membership once
    purged = {world.host_id_of(i) for i in epoch.purged}
    # Every membership of a purged host ended; some of live hosts ended too (leave_share).
    assert {pair for pair in before if pair[1] in purged} <= removed
    assert {pair for pair in removed if pair[1] not in purged}
    # A purge without an advance takes its host out of every policy at the next sync.
    victim = next(iter(after))[1]
    world.purge([victim])
    pcrs.sync()
    assert not {pair for pair in _members(pcrs) if pair[1] == victim}
    assert {pair for pair in after if pair[1] == victim} <= set(pcrs.removed())


def test_no_membership_ends_with_leave_share_zero_and_no_purge() -> None:
    world = _world(hosts=60)
    pcrs = PcrsData(world)
    pcrs.sync()
    before = _members(pcrs)
    world.advance(86400, purge=0, new_hosts=0, pcrs_leave_share=0)
    pcrs.sync()
    assert _members(pcrs) == before
    assert pcrs.removed() == []


@pytest.mark.parametrize("text", ["2026-10-01", "2026-10-01T00:00:00Z",
                                  "2026-10-01T00:00:00.000Z", "1790812800000"])
def test_parse_datetime_accepts_the_filter_forms(text: str) -> None:
    assert parse_datetime(text) == datetime(2026, 10, 1, tzinfo=timezone.utc)


def test_iso_ms_keeps_milliseconds() -> None:
    moment = datetime(2025, 7, 11, 14, 21, 10, 123456, tzinfo=timezone.utc)
    assert iso_ms(moment) == "2025-07-11T14:21:10.123Z"


@pytest.mark.parametrize("body", [b"{", b'{"filters": [{"field": "nope", "operator": "EQUALS"}]}',
                                  b'{"filters": [{"field": "tags.name", "operator": "GREATER"}]}'])
def test_bad_filters_are_rejected(body: bytes) -> None:
    with pytest.raises(FilterError):
        AssetFilter.parse_body(body)


def test_tokens_are_signed_per_run() -> None:
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    one, two = _Tokens(lambda: now), _Tokens(lambda: now)
    token = one.issue("qa_sim_user", 60)
    assert one.check(f"Bearer {token}") is None
    assert two.check(f"Bearer {token}") == "Invalid JWT token"
