"""Point-in-time snapshots: one file per successful run, `latest` repointed only on success."""

from __future__ import annotations

import datetime
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from target_qualys_sqlite import snapshot
from tests.target_sqlite.conftest import (
    detection,
    query,
    record_message,
    run_target,
    schema_message,
)

KEYS = ["unique_vuln_id"]
STATE = {"bookmarks": {"host_detections": {"replication_key_value": "2026-11-21"}}}


def _pit_config(database: Path) -> dict[str, object]:
    return {"database": str(database), "point_in_time": True}


def _snapshots(database: Path) -> list[Path]:
    return sorted((database.parent / "snapshots").iterdir())


def _run_messages(*uids: int) -> list[dict[str, object]]:
    return [
        schema_message(keys=KEYS),
        *(record_message(detection(uid)) for uid in uids),
        {"type": "STATE", "value": STATE},
    ]


def test_each_run_publishes_a_complete_snapshot_and_repoints_latest(
    tmp_path: Path, database: Path
) -> None:
    first = run_target(tmp_path, _pit_config(database), _run_messages(1, 2), "first")
    assert first.returncode == 0, first.stderr
    assert first.states == [STATE]
    assert database.is_symlink()
    first_snapshot = database.resolve()
    assert first_snapshot.parent.name == "snapshots"
    assert first_snapshot.name.startswith("qualys-")
    assert first_snapshot.suffix == ".db"

    # An incremental run sends only what changed; its snapshot must still hold everything.
    second = run_target(tmp_path, _pit_config(database), _run_messages(3), "second")
    assert second.returncode == 0, second.stderr
    second_snapshot = database.resolve()
    assert second_snapshot != first_snapshot
    assert query(database, "SELECT unique_vuln_id FROM host_detections ORDER BY 1") == [
        (1,),
        (2,),
        (3,),
    ]
    # The earlier snapshot is a frozen point in time, a single self-contained file.
    assert query(first_snapshot, "SELECT count(*) FROM host_detections") == [(2,)]
    assert query(first_snapshot, "PRAGMA journal_mode") == [("delete",)]
    assert [p.name for p in _snapshots(database)] == sorted(
        [first_snapshot.name, second_snapshot.name]
    )
    # The symlink is relative, so the output directory can be moved or mounted elsewhere.
    assert not os.path.isabs(os.readlink(database))


def test_snapshot_from_latest_can_be_disabled_for_full_table_syncs(
    tmp_path: Path, database: Path
) -> None:
    assert run_target(tmp_path, _pit_config(database), _run_messages(1, 2), "a").returncode == 0
    config = {**_pit_config(database), "snapshot_from_latest": False}
    assert run_target(tmp_path, config, _run_messages(3), "b").returncode == 0
    assert query(database, "SELECT unique_vuln_id FROM host_detections") == [(3,)]


def test_failed_run_keeps_latest_and_emits_no_state(tmp_path: Path, database: Path) -> None:
    assert run_target(tmp_path, _pit_config(database), _run_messages(1), "good").returncode == 0
    good_snapshot = database.resolve()

    bad = [
        schema_message(keys=KEYS),
        record_message(detection(2)),
        {"type": "STATE", "value": STATE},
        record_message(detection(3, severity="high")),  # violates the schema
    ]
    failed = run_target(tmp_path, _pit_config(database), bad, "bad")
    assert failed.returncode != 0
    # The orchestrator must not advance its bookmark. (The SDK emits STATE only on full drains;
    # the hold-back until publish is exercised by test_failed_upload_is_one_clear_error.)
    assert failed.states == []
    assert database.resolve() == good_snapshot
    assert query(database, "SELECT unique_vuln_id FROM host_detections") == [(1,)]
    # The failed run's file stays for inspection but is visibly unfinished.
    leftovers = [p.name for p in _snapshots(database) if p != good_snapshot]
    assert len(leftovers) == 1
    assert leftovers[0].endswith(".db.partial")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def moto_server() -> Iterator[str]:
    """A real S3-compatible HTTP server (moto standalone) on 127.0.0.1."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("moto server did not start")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_snapshot_is_uploaded_to_s3_compatible_server(
    tmp_path: Path, database: Path, moto_server: str
) -> None:
    boto3 = pytest.importorskip("boto3")
    credentials = {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_region": "us-east-1",
    }
    client = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name=credentials["aws_region"],
        aws_access_key_id=credentials["aws_access_key_id"],
        aws_secret_access_key=credentials["aws_secret_access_key"],
    )
    client.create_bucket(Bucket="qualys-snapshots")
    config = {
        **_pit_config(database),
        **credentials,
        "s3_bucket": "qualys-snapshots",
        "s3_prefix": "vm/",
        "s3_endpoint_url": moto_server,
    }
    run = run_target(tmp_path, config, _run_messages(1, 2, 3), "s3")
    assert run.returncode == 0, run.stderr

    key = f"vm/{database.resolve().name}"
    listed = [o["Key"] for o in client.list_objects_v2(Bucket="qualys-snapshots")["Contents"]]
    assert listed == [key]
    downloaded = tmp_path / "downloaded.db"
    client.download_file("qualys-snapshots", key, str(downloaded))
    conn = sqlite3.connect(downloaded)
    try:
        assert conn.execute("SELECT count(*) FROM host_detections").fetchone() == (3,)
    finally:
        conn.close()


def test_failed_upload_is_one_clear_error(tmp_path: Path, database: Path, moto_server: str) -> None:
    config = {
        **_pit_config(database),
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_region": "us-east-1",
        "s3_bucket": "no-such-bucket",
        "s3_endpoint_url": moto_server,
    }
    run = run_target(tmp_path, config, _run_messages(1), "s3-missing")
    assert run.returncode != 0
    assert "upload of" in run.last_error_line
    assert "s3://no-such-bucket/" in run.last_error_line
    assert run.states == []


def test_two_runs_starting_in_the_same_second_get_their_own_snapshots(
    tmp_path: Path, database: Path
) -> None:
    """Two schedules firing together on one database: each run must write its own file. The
    name used to be free until the copy from latest created it, so both runs took the same name,
    and the second one's start deleted the first one's file."""
    assert run_target(tmp_path, _pit_config(database), _run_messages(1), "first").returncode == 0
    now = datetime.datetime(2026, 12, 4, 3, 0, tzinfo=datetime.timezone.utc)
    first = snapshot.plan_snapshot(database, database.parent / "snapshots", now)
    second = snapshot.plan_snapshot(database, database.parent / "snapshots", now)
    assert first.partial != second.partial
    snapshot.start_snapshot(first, from_latest=True, busy_timeout=5)
    snapshot.start_snapshot(second, from_latest=True, busy_timeout=5)
    for each in (first, second):
        assert query(each.partial, "SELECT unique_vuln_id FROM host_detections") == [(1,)]


def test_an_empty_run_without_latest_publishes_an_empty_snapshot(
    tmp_path: Path, database: Path
) -> None:
    """No stream sent anything (nothing selected) and no copy of latest: no file was ever created,
    and publishing it failed with a FileNotFoundError traceback."""
    config = {**_pit_config(database), "snapshot_from_latest": False}
    run = run_target(tmp_path, config, [], "empty")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert database.is_symlink()
    assert query(database, "SELECT count(*) FROM sqlite_master") == [(0,)]
