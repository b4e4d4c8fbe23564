"""Helpers to run the real target-sqlite executable on a list of Singer messages."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from target_qualys_sqlite.target import TargetSQLite

EXECUTABLE = Path(sys.executable).parent / "target-qualys-sqlite"

DETECTION_PROPERTIES: dict[str, Any] = {
    "unique_vuln_id": {"type": "integer"},
    "host_id": {"type": "integer"},
    "qid": {"type": ["null", "integer"]},
    "severity": {"type": ["null", "integer"]},
    "cvss": {"type": ["null", "number"]},
    "ssl": {"type": ["null", "boolean"]},
    "status": {"type": ["null", "string"]},
    "results": {"type": ["null", "string"]},
    "last_found_datetime": {"type": ["null", "string"], "format": "date-time"},
    "qds_factors": {
        "type": ["null", "array"],
        "items": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
        },
    },
    "asset": {
        "type": ["null", "object"],
        "properties": {"id": {"type": "integer"}, "tags": {"type": "array"}},
    },
}


def schema_message(
    stream: str = "host_detections",
    properties: dict[str, Any] | None = None,
    keys: list[str] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"type": "object", "properties": properties or DETECTION_PROPERTIES},
    }
    if keys is not None:
        message["key_properties"] = keys
    return message


def record_message(record: dict[str, Any], stream: str = "host_detections") -> dict[str, Any]:
    return {"type": "RECORD", "stream": stream, "record": record}


def detection(uid: int, **values: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "unique_vuln_id": uid,
        "host_id": 100 + uid,
        "qid": 38000 + uid,
        "severity": 3,
        "cvss": 7.5,
        "ssl": False,
        "status": "Active",
        "results": f"vulnerable package {uid}",
        "last_found_datetime": "2026-11-20T10:00:00Z",
        "qds_factors": [{"name": "CVSS", "value": "7.5"}, {"name": "EPSS", "value": "0.1"}],
        "asset": {"id": uid, "tags": ["prod", "linux"]},
    }
    record.update(values)
    return record


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_error_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    @property
    def states(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def run_target(
    tmp_path: Path,
    config: dict[str, Any],
    messages: list[dict[str, Any]],
    name: str = "run",
    extra_lines: list[str] = (),  # type: ignore[assignment]
) -> Run:
    """Run `target-sqlite --config cfg.json < messages.jsonl` as a real subprocess.

    ``extra_lines`` are appended verbatim, for input that is not valid JSON.
    """
    config_file = tmp_path / f"{name}-config.json"
    config_file.write_text(json.dumps(config))
    input_file = tmp_path / f"{name}-messages.jsonl"
    lines = [json.dumps(m) for m in messages] + list(extra_lines)
    input_file.write_text("".join(line + "\n" for line in lines))
    with input_file.open("rb") as stdin:
        proc = subprocess.run(
            [str(EXECUTABLE), "--config", str(config_file)],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def query(database: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(database)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "out" / "qualys.db"


def listen_in_process(
    database: Path,
    messages: list[dict[str, Any]],
    *,
    direct: bool,
    max_age_minutes: float | None = None,
    **config: Any,
) -> TargetSQLite:
    """The target in this process, fed ``messages``; ``direct=False`` turns its direct path off."""
    target = TargetSQLite(config={"database": str(database), "batch_size_rows": 3, **config})
    if not direct:
        target._direct_sink = lambda *_: None  # type: ignore[method-assign]
    if max_age_minutes is not None:
        target._MAX_RECORD_AGE_IN_MINUTES = max_age_minutes
    lines = "".join(json.dumps(m) + "\n" for m in messages).encode()
    target.listen(io.BytesIO(lines))  # type: ignore[arg-type]
    return target


def dump_database(database: Path) -> list[str]:
    """The whole database as SQL text, to compare two loads."""
    conn = sqlite3.connect(database)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()
