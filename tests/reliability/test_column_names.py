"""One naming rule in the destination: simulator -> tap-qualys -> target-sqlite, as processes.

Every column is snake_case (CSAM and PCRS used to keep the API's camelCase keys, which SQLite
lowercased to `assetid` and Postgres made users quote as `"assetId"`); the values still equal
Qualys' ground truth, and a state written with the old names keeps working.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from qualys_simulator.testing import SimulatorProcess
from tap_qualys.naming import GATEWAY_SCHEMAS, snake_case
from tests.reliability.harness import ALL_STREAMS, GATEWAY_STREAMS, Pipeline, simulator

SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
#: Columns a user joins or filters on, spelled out (the rule itself is pinned in test_naming).
KEY_COLUMNS = {
    "csam_assets": {"asset_id", "asset_uuid", "host_id", "last_modified_date", "hw_uuid"},
    "pcrs_policies": {"id", "last_evaluated_date", "subscription_id"},
    "pcrs_policy_host_ids": {"policy_id", "host_id", "subscription_id"},
    "pcrs_posture_info": {"id", "policy_id", "host_id", "control_id", "os_cpe", "qg_hostid"},
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with simulator(hosts=30, seed=7) as world:
        yield world


def columns(database: Path, table: str) -> list[str]:
    connection = sqlite3.connect(database)
    try:
        return [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
    finally:
        connection.close()


def test_every_column_is_snake_case_and_the_data_is_qualys(
    sim: SimulatorProcess, tmp_path: Path
) -> None:
    pipeline = Pipeline(sim, tmp_path, csam_page_size=7, pcrs_batch_size=4)
    pipeline.sync()
    for stream in GATEWAY_STREAMS:
        loaded = columns(pipeline.database, stream)
        api_keys = list(GATEWAY_SCHEMAS.api_schema(stream)["properties"])
        assert loaded == [snake_case(key) for key in api_keys], stream
        assert KEY_COLUMNS[stream] <= set(loaded), stream
    for stream in ALL_STREAMS:
        # Singer's metadata columns (_sdc_deleted_at of tombstones) keep their leading "_sdc_".
        bad = [
            name
            for name in columns(pipeline.database, stream)
            if not SNAKE.fullmatch(name.removeprefix("_sdc_"))
        ]
        assert not bad, f"{stream}: columns not in snake_case: {bad}"
    connection = sqlite3.connect(pipeline.database)
    try:
        # The README's kind of query, unquoted; nested values keep Qualys' keys.
        joined = connection.execute(
            "SELECT a.asset_id, json_extract(a.agent, '$.lastCheckedIn') FROM csam_assets AS a "
            "JOIN hosts AS h ON h.id = a.host_id"
        ).fetchall()
        postures = connection.execute(
            "SELECT count(*) FROM pcrs_posture_info AS pi "
            "JOIN pcrs_policy_host_ids AS ph ON ph.policy_id = pi.policy_id "
            "AND ph.host_id = pi.host_id"
        ).fetchone()[0]
    finally:
        connection.close()
    assert joined
    assert postures
    pipeline.assert_ground_truth(ALL_STREAMS, "after a full run")


def test_a_state_with_the_old_names_keeps_its_bookmarks(
    sim: SimulatorProcess, tmp_path: Path
) -> None:
    pipeline = Pipeline(sim, tmp_path, csam_page_size=7)
    first = pipeline.sync(streams=GATEWAY_STREAMS)
    state = first.last_state
    assert state is not None
    bookmarks = state["bookmarks"]
    assert bookmarks["csam_assets"]["replication_key"] == "last_modified_date"
    assert bookmarks["pcrs_policies"]["replication_key"] == "last_evaluated_date"
    # As an older tap-qualys wrote it.
    old = json.loads(json.dumps(state))
    old["bookmarks"]["csam_assets"]["replication_key"] = "lastModifiedDate"
    old["bookmarks"]["pcrs_policies"]["replication_key"] = "lastEvaluatedDate"
    second = pipeline.sync(streams=GATEWAY_STREAMS, state=old)
    assert "csam_assets: POST" in second.tap_stderr
    assert "filters=[{'field': 'asset.lastUpdated'" in second.tap_stderr  # incremental
    # Nothing changed upstream: only the overlap is read again, not everything.
    assert len(second.records("csam_assets")) < len(first.records("csam_assets"))
    renewed = second.last_state
    assert renewed is not None
    assert renewed["bookmarks"]["csam_assets"]["replication_key"] == "last_modified_date"
    assert renewed["bookmarks"]["pcrs_policies"]["replication_key"] == "last_evaluated_date"
    pipeline.assert_ground_truth(GATEWAY_STREAMS, "after a run from an old state")
