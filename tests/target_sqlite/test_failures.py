"""Bad input ends with one clear error line and leaves the committed rows exactly as they were."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.target_sqlite.conftest import (
    Run,
    detection,
    query,
    record_message,
    run_target,
    schema_message,
)

KEYS = ["unique_vuln_id"]
BEFORE = [(1, "Active"), (2, "Active")]


@pytest.fixture
def loaded(tmp_path: Path, database: Path) -> Path:
    """A database holding two committed rows."""
    messages = [
        schema_message(keys=KEYS),
        record_message(detection(1)),
        record_message(detection(2)),
    ]
    assert run_target(tmp_path, {"database": str(database)}, messages, "seed").returncode == 0
    return database


def _rows(database: Path) -> list[tuple[object, ...]]:
    return query(database, "SELECT unique_vuln_id, status FROM host_detections ORDER BY 1")


def _assert_one_clear_error(run: Run, *fragments: str) -> None:
    assert run.returncode == 1
    assert "target-sqlite failed:" in run.last_error_line
    for fragment in fragments:
        assert fragment in run.last_error_line
    assert "Traceback" not in run.stderr


def test_record_violating_its_schema(tmp_path: Path, loaded: Path) -> None:
    messages = [
        schema_message(keys=KEYS),
        record_message(detection(2, status="Fixed")),
        record_message(detection(3)),
        record_message(detection(4, severity="high")),
    ]
    run = run_target(tmp_path, {"database": str(loaded)}, messages)
    _assert_one_clear_error(run, "stream 'host_detections'", "violates its schema", "'high'")
    assert _rows(loaded) == BEFORE  # nothing of the failed batch, not even the valid records


def test_invalid_date_time_is_rejected(tmp_path: Path, loaded: Path) -> None:
    messages = [
        schema_message(keys=KEYS),
        record_message(detection(3, last_found_datetime="yesterday")),
    ]
    run = run_target(tmp_path, {"database": str(loaded)}, messages)
    _assert_one_clear_error(run, "'yesterday'", "last_found_datetime")
    assert _rows(loaded) == BEFORE


def test_schema_without_key_properties(tmp_path: Path, loaded: Path) -> None:
    messages = [
        schema_message(stream="knowledge_base", properties={"qid": {"type": "integer"}}),
        record_message({"qid": 1}, stream="knowledge_base"),
    ]
    run = run_target(tmp_path, {"database": str(loaded)}, messages)
    _assert_one_clear_error(run, "stream 'knowledge_base'", "no key_properties")
    tables = query(loaded, "SELECT name FROM sqlite_master WHERE type = 'table'")
    assert tables == [("host_detections",)]
    assert _rows(loaded) == BEFORE


def test_database_full(tmp_path: Path, loaded: Path) -> None:
    size_mb = loaded.stat().st_size / 2**20
    big_text = "x" * 4000
    messages = [
        schema_message(keys=KEYS),
        record_message(detection(1, status="changed")),
        *(record_message(detection(uid, results=big_text)) for uid in range(10, 400)),
    ]
    config = {"database": str(loaded), "max_database_size_mb": size_mb + 0.2}
    run = run_target(tmp_path, config, messages)
    _assert_one_clear_error(run, "stream 'host_detections'", "is full", "rolled back")
    assert _rows(loaded) == BEFORE  # the update of row 1 was in the rolled-back batch too


def test_database_locked_by_another_process(tmp_path: Path, loaded: Path) -> None:
    holder = sqlite3.connect(loaded, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        messages = [schema_message(keys=KEYS), record_message(detection(3))]
        config = {"database": str(loaded), "busy_timeout_seconds": 0.5}
        run = run_target(tmp_path, config, messages)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _assert_one_clear_error(run, "locked by another process", str(loaded))
    assert _rows(loaded) == BEFORE


def test_malformed_json_line(tmp_path: Path, loaded: Path) -> None:
    messages = [schema_message(keys=KEYS), record_message(detection(3))]
    run = run_target(tmp_path, {"database": str(loaded)}, messages, extra_lines=['{"type": "RE'])
    _assert_one_clear_error(run, "not valid JSON", '{"type": "RE')
    assert _rows(loaded) == BEFORE


def test_invalid_record_in_a_batch_file(tmp_path: Path, loaded: Path) -> None:
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        "".join(json.dumps(r) + "\n" for r in (detection(3), detection(4, host_id="x")))
    )
    messages = [
        schema_message(keys=KEYS),
        {
            "type": "BATCH",
            "stream": "host_detections",
            "encoding": {"format": "jsonl", "compression": "none"},
            "manifest": [batch.as_uri()],
        },
    ]
    run = run_target(tmp_path, {"database": str(loaded)}, messages)
    _assert_one_clear_error(run, "stream 'host_detections'", "violates its schema")
    assert _rows(loaded) == BEFORE


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([record_message(detection(3))], "before a corresponding schema"),
        (
            [schema_message(keys=KEYS), record_message({"host_id": 1})],
            "missing one or more key_properties",
        ),
    ],
    ids=["record-before-schema", "record-without-key"],
)
def test_singer_spec_violations(
    tmp_path: Path, loaded: Path, messages: list[dict[str, object]], fragment: str
) -> None:
    run = run_target(tmp_path, {"database": str(loaded)}, messages)
    _assert_one_clear_error(run, fragment)
    assert _rows(loaded) == BEFORE


def test_rollback_journal_database_locked_before_any_ddl(tmp_path: Path) -> None:
    # A database made by another tool, still in rollback-journal mode: the exclusive lock blocks
    # even the target's first PRAGMA, before it can create or inspect anything.
    database = tmp_path / "legacy.db"
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("CREATE TABLE host_detections (unique_vuln_id INTEGER PRIMARY KEY)")
    holder.execute("INSERT INTO host_detections VALUES (1)")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO host_detections VALUES (2)")
    try:
        messages = [schema_message(keys=KEYS), record_message(detection(3))]
        config = {"database": str(database), "busy_timeout_seconds": 0.3}
        run = run_target(tmp_path, config, messages)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _assert_one_clear_error(run, "locked by another process")
    assert query(database, "SELECT unique_vuln_id FROM host_detections") == [(1,)]
    assert query(database, "PRAGMA journal_mode") == [("delete",)]
