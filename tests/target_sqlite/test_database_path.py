"""The `database` setting is a file path, used literally: never decoded as part of a URL."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.target_sqlite.conftest import (
    EXECUTABLE,
    detection,
    query,
    record_message,
    run_target,
    schema_message,
)


@pytest.mark.parametrize("name", ["a%41b.db", "q?mode=memory.db", "with space.db"])
def test_database_name_is_used_literally(tmp_path: Path, name: str) -> None:
    database = tmp_path / "out" / name
    state = {"type": "STATE", "value": {"bookmarks": {"host_detections": {"n": 2}}}}
    messages = [
        schema_message(keys=["unique_vuln_id"]),
        record_message(detection(1)),
        record_message(detection(2)),
        state,
    ]
    run = run_target(tmp_path, {"database": str(database)}, messages)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.states == [state["value"]]
    assert sorted(p.name for p in database.parent.iterdir()) == [name]
    assert query(database, "SELECT unique_vuln_id FROM host_detections ORDER BY 1") == [(1,), (2,)]


def test_memory_is_a_file_name_too(tmp_path: Path) -> None:
    """`:memory:` is SQLite's in-memory database: the run loaded every row into nothing, exited
    0 and emitted the STATE, so the next run skipped those rows for good."""
    state = {"type": "STATE", "value": {"bookmarks": {"host_detections": {"n": 1}}}}
    messages = [schema_message(keys=["unique_vuln_id"]), record_message(detection(1)), state]
    (tmp_path / "config.json").write_text(json.dumps({"database": ":memory:"}))
    run = subprocess.run(
        [str(EXECUTABLE), "--config", "config.json"],
        input="".join(json.dumps(m) + "\n" for m in messages),
        capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert query(tmp_path / ":memory:", "SELECT unique_vuln_id FROM host_detections") == [(1,)]
