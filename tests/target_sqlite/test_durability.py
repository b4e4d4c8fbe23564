"""A STATE leaves the target only after the rows it covers are on disk (fsync'ed), not just
handed to the OS: a crash or filesystem error after the STATE must not lose those rows."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.target_sqlite.conftest import (
    EXECUTABLE,
    detection,
    listen_in_process,
    record_message,
    schema_message,
)

KEYS = ["unique_vuln_id"]


def _messages(batches: int, per_batch: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [schema_message(keys=KEYS)]
    uid = 0
    for batch in range(batches):
        for _ in range(per_batch):
            uid += 1
            messages.append(record_message(detection(uid)))
        messages.append({"type": "STATE", "value": {"bookmarks": {"b": batch}}})
    return messages


def test_state_is_written_by_a_connection_that_commits_durably(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []

    def observe(target: Any, state: dict) -> None:
        conn = target.target_connector.raw_connection()
        try:
            seen.append(conn.execute("PRAGMA synchronous").fetchone()[0])
        finally:
            conn.close()

    from target_qualys_sqlite.target import TargetSQLite  # noqa: PLC0415

    original = TargetSQLite._write_state_message

    def write_state(self: TargetSQLite, state: dict) -> None:
        observe(self, state)
        original(self, state)

    monkeypatch.setattr(TargetSQLite, "_write_state_message", write_state)
    listen_in_process(database, _messages(3, 4), direct=True, state_checkpoint_seconds=0)
    assert seen, "no STATE was written"
    assert set(seen) == {2}  # FULL: in WAL mode, every commit syncs the WAL before returning


_SYSCALL = re.compile(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?(?P<call>\w+)\((?P<fd>\d+)<(?P<path>[^>]*)>")


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_state_line_follows_an_fsync_of_every_write_before_it(tmp_path: Path) -> None:
    """The real executable under strace: before each STATE line reaches stdout, every write to
    the database's files since the last sync has been followed by a sync of that file."""
    database = tmp_path / "out" / "qualys.db"
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"database": str(database), "batch_size_rows": 5, "state_checkpoint_seconds": 0})
    )
    feed = tmp_path / "in.jsonl"
    feed.write_text("".join(json.dumps(m) + "\n" for m in _messages(4, 12)))
    out = tmp_path / "state.jsonl"
    trace = tmp_path / "strace.txt"
    with feed.open("rb") as stdin, out.open("wb") as stdout:
        proc = subprocess.run(
            [
                "strace", "-f", "-y", "-o", str(trace),
                "-e", "trace=write,pwrite64,writev,pwritev,fsync,fdatasync",
                str(EXECUTABLE), "--config", str(config),
            ],
            stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=120, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    dirty: set[str] = set()
    states = 0
    db_files = (str(database), f"{database}-wal")
    for line in trace.read_text().splitlines():
        match = _SYSCALL.match(line)
        if match is None:
            continue
        call, path = match["call"], match["path"]
        if path in db_files and call.startswith(("write", "pwrite")):
            dirty.add(path)
        elif path in db_files and call in {"fsync", "fdatasync"}:
            dirty.discard(path)
        elif path == str(out) and "bookmarks" in line:
            states += 1
            assert not dirty, f"STATE written while {sorted(dirty)} had unsynced writes"
    assert states >= 4
    rows = sqlite3.connect(database).execute("SELECT count(*) FROM host_detections").fetchone()
    assert rows == (48,)
