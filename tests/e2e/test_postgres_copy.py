"""`meltano run tap-qualys target-qualys-postgres`: the bundled target's Postgres mode.

Real Meltano, the real simulator over HTTP, the real PostgreSQL: the result equals the ground
truth with native types, a rerun upserts (no key twice), and a run killed mid-stream loses
nothing once rerun (STATE only after the batch committed).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.conftest import REPO, Pipeline, PostgresServer
from tests.e2e.loaded import STREAMS, assert_matches_ground_truth, postgres_rows
from tests.e2e.test_pipeline import live, purge_between_runs
from tests.e2e.test_postgres_types import column_types

pytestmark = pytest.mark.e2e

SCHEMA = "tap_qualys"  # the extractor's load schema, meltano.yml's default_target_schema
LOADER = "target-qualys-postgres"
KEYS = {
    "knowledge_base": ("qid",),
    "hosts": ("id",),
    "host_detections": ("host_id", "unique_vuln_id"),
    "csam_assets": ("asset_id",),
    "pcrs_policies": ("id",),
    "pcrs_policy_host_ids": ("policy_id", "host_id"),
    "pcrs_posture_info": ("id",),
}


def use_database(pipeline: Pipeline, server: PostgresServer, database: str) -> None:
    pipeline.env.update(
        TARGET_QUALYS_POSTGRES_HOST=server.host,
        TARGET_QUALYS_POSTGRES_PORT=str(server.port),
        TARGET_QUALYS_POSTGRES_USER=server.user,
        TARGET_QUALYS_POSTGRES_PASSWORD=server.password,
        TARGET_QUALYS_POSTGRES_DATABASE=database,
    )


def loaded(server: PostgresServer, database: str) -> dict[str, list[dict[str, Any]]]:
    connection = server.connect(database)
    try:
        return {stream: postgres_rows(connection, SCHEMA, stream) for stream in STREAMS}
    finally:
        connection.close()


def assert_no_key_twice(rows: dict[str, list[dict[str, Any]]]) -> None:
    for stream, keys in KEYS.items():
        seen = [tuple(row[k] for k in keys) for row in rows[stream]]
        assert len(seen) == len(set(seen)), f"{stream}: a key loaded twice"


def test_load_types_and_rerun(
    pipeline: Pipeline, postgres_server: PostgresServer, postgres_database: str
) -> None:
    use_database(pipeline, postgres_server, postgres_database)
    pipeline.run("tap-qualys", LOADER)
    first = loaded(postgres_server, postgres_database)
    assert_matches_ground_truth(pipeline.sim, first)
    assert_no_key_twice(first)
    types = column_types(postgres_server, postgres_database)
    assert types.get("jsonb"), types  # nested values: one jsonb value each
    assert types.get("timestamp with time zone"), types
    assert "ARRAY" not in types, types
    assert "timestamp without time zone" not in types, types

    # A full rerun against a changed subscription: every record again, upserted in place.
    # Nothing disappears: a full refresh starts without the state that deletes are found from.
    pipeline.sim.advance(86400, purge=0, pcrs_leave_share=0)
    pipeline.run("tap-qualys", LOADER, "--full-refresh")
    again = loaded(postgres_server, postgres_database)
    assert_matches_ground_truth(pipeline.sim, again)
    assert_no_key_twice(again)


@pytest.mark.parametrize(
    "sim", [{"hosts": 60, "record_delay_sec": 0.01, "policies": 2}], indirect=True
)
def test_killed_run_then_rerun_loses_nothing(
    pipeline: Pipeline, postgres_server: PostgresServer, postgres_database: str
) -> None:
    use_database(pipeline, postgres_server, postgres_database)
    # Small batches and a STATE checkpoint at every new STATE, so the kill lands between commits.
    pipeline.env.update(
        TARGET_QUALYS_POSTGRES_BATCH_SIZE_ROWS="20",
        TARGET_QUALYS_POSTGRES_STATE_CHECKPOINT_SECONDS="0",
    )
    pipeline.session.install("tap-qualys", LOADER)
    process, log = pipeline.start("run", "tap-qualys", LOADER)

    def some_hosts_committed() -> bool:
        rows = loaded(postgres_server, postgres_database)
        return bool(rows["hosts"])

    deadline = time.monotonic() + 300
    while not some_hosts_committed():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no host committed within 300 s"
        time.sleep(0.2)
    # The whole pipeline at once, as a machine failure would: Meltano, the tap and the target.
    tree = psutil.Process(process.pid)
    for member in [*tree.children(recursive=True), tree]:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.send_signal(signal.SIGKILL)
    process.wait(30)
    partial = loaded(postgres_server, postgres_database)
    total = sum(len(rows) for rows in partial.values())
    expected = sum(len(pipeline.sim.ground_truth(stream)) for stream in STREAMS)
    assert total < expected, "the kill came after the whole load: the test proves nothing"

    # --force: the killed run's record still says "running" (it never finished).
    pipeline.run("tap-qualys", LOADER, "--force")
    final = loaded(postgres_server, postgres_database)
    assert_matches_ground_truth(pipeline.sim, final)
    assert_no_key_twice(final)


@pytest.mark.parametrize("shards", [2, 4])
def test_shards_in_parallel_into_one_database(
    pipeline: Pipeline, postgres_server: PostgresServer, postgres_database: str, shards: int
) -> None:
    """Parallel `tap-qualys | target-qualys-postgres` on id_min/id_max ranges, one database."""
    ids = sorted(int(host["ID"]) for host in pipeline.sim.ground_truth("hosts"))
    bounds = [ids[len(ids) * i // shards] for i in range(shards)] + [ids[-1] + 1]
    work = pipeline.workdir
    target = {
        "host": postgres_server.host,
        "port": postgres_server.port,
        "user": postgres_server.user,
        "password": postgres_server.password,
        "database": postgres_database,
        "default_target_schema": SCHEMA,
    }
    (work / "target.json").write_text(json.dumps(target))
    bin_dir = REPO / ".venv" / "bin"
    processes = []
    for shard in range(shards):
        tap = {
            "username": pipeline.sim.username,
            "password": pipeline.sim.password,
            "api_server": pipeline.sim.url,
            "gateway_url": pipeline.sim.url,
            "id_min": bounds[shard],
            "id_max": bounds[shard + 1] - 1,
        }
        (work / f"tap-{shard}.json").write_text(json.dumps(tap))
        command = (
            f"{bin_dir / 'tap-qualys'} --config {work / f'tap-{shard}.json'} "
            f"| {bin_dir / 'target-qualys-postgres'} --config {work / 'target.json'}"
        )
        log = (work / f"shard-{shard}.log").open("w")
        processes.append(
            (subprocess.Popen(["bash", "-o", "pipefail", "-c", command], stderr=log), log)
        )
    for process, log in processes:
        assert process.wait(timeout=600) == 0, Path(log.name).read_text()[-3000:]
        log.close()
    rows = loaded(postgres_server, postgres_database)
    assert_matches_ground_truth(pipeline.sim, rows)
    assert_no_key_twice(rows)


@pytest.mark.parametrize("sim", [{"hosts": 20, "policies": 2}], indirect=True)
def test_purged_hosts_and_their_detections_marked_deleted(
    pipeline: Pipeline, postgres_server: PostgresServer, postgres_database: str
) -> None:
    use_database(pipeline, postgres_server, postgres_database)
    pipeline.run("tap-qualys", LOADER)
    before = loaded(postgres_server, postgres_database)
    purged = purge_between_runs(pipeline)
    pipeline.run("tap-qualys", LOADER)
    rows = loaded(postgres_server, postgres_database)
    # Live rows are exactly the ground truth: the purged hosts and their detections are not.
    assert_matches_ground_truth(pipeline.sim, live(rows))
    assert_no_key_twice(rows)
    # Soft delete: the purged hosts' rows are still there, marked, their other columns kept.
    deleted_hosts = {r["id"]: r for r in rows["hosts"] if r["_sdc_deleted_at"] is not None}
    assert set(deleted_hosts) == purged
    old_hosts = {r["id"]: r for r in before["hosts"]}
    assert all(deleted_hosts[i]["ip"] == old_hosts[i]["ip"] for i in purged)
    # The cascade: every detection of a purged host is marked, none of a live host is.
    detections = [r for r in rows["host_detections"] if r["host_id"] in purged]
    assert detections, "the purged hosts had no detections: the cascade is not tested"
    assert all(r["_sdc_deleted_at"] is not None for r in detections)
    assert all(
        r["_sdc_deleted_at"] is None for r in rows["host_detections"] if r["host_id"] not in purged
    )
    # Hosts that left a PCRS policy: exactly those memberships are marked, their columns kept.
    removed = {
        (r["policyId"], r["hostId"])
        for r in pipeline.sim.ground_truth("pcrs_policy_host_ids_removed")
    }
    assert {pair for pair in removed if pair[1] in purged}, "no purged host was in a policy"
    members = rows["pcrs_policy_host_ids"]
    marked = [r for r in members if r["_sdc_deleted_at"] is not None]
    assert {(r["policy_id"], r["host_id"]) for r in marked} == removed
    assert all(r["subscription_id"] for r in marked)
