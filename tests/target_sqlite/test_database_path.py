"""The `database` setting is a file path, used literally: never decoded as part of a URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.target_sqlite.conftest import (
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
