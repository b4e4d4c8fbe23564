"""What a successful load leaves in the database: upserts, types, JSON, WAL, evolution, BATCH."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

from tests.target_sqlite.conftest import (
    EXECUTABLE,
    detection,
    query,
    record_message,
    run_target,
    schema_message,
)

KEYS = ["unique_vuln_id"]


def test_upsert_never_duplicates_across_runs_or_within_a_batch(
    tmp_path: Path, database: Path
) -> None:
    config = {"database": str(database)}
    first = [schema_message(keys=KEYS), *(record_message(detection(i)) for i in (1, 2, 3))]
    assert run_target(tmp_path, config, first, "first").returncode == 0

    # At-least-once replay: 2 and 3 again (3 twice in one batch, last one wins) plus a new 4.
    second = [
        schema_message(keys=KEYS),
        record_message(detection(2)),
        record_message(detection(3, status="Fixed")),
        record_message(detection(3, status="Reopened")),
        record_message(detection(4)),
    ]
    assert run_target(tmp_path, config, second, "second").returncode == 0

    rows = query(database, "SELECT unique_vuln_id, status FROM host_detections ORDER BY 1")
    assert rows == [(1, "Active"), (2, "Active"), (3, "Reopened"), (4, "Active")]


def test_key_properties_become_the_primary_key(tmp_path: Path, database: Path) -> None:
    keys = ["host_id", "qid"]
    messages = [schema_message(keys=keys), record_message(detection(1))]
    assert run_target(tmp_path, {"database": str(database)}, messages).returncode == 0
    pk = query(database, "SELECT name FROM pragma_table_info('host_detections') WHERE pk > 0")
    assert sorted(name for (name,) in pk) == keys


def test_column_types_json_text_and_big_integers(tmp_path: Path, database: Path) -> None:
    big = 2**53 + 1  # not representable as a float
    huge = 2**63 - 1
    messages = [
        schema_message(keys=KEYS),
        record_message(detection(big, host_id=huge, ssl=True)),
        record_message(detection(5, cvss=None, qds_factors=None, asset=None)),
    ]
    assert run_target(tmp_path, {"database": str(database)}, messages).returncode == 0

    row = query(
        database,
        "SELECT unique_vuln_id, host_id, typeof(unique_vuln_id), typeof(cvss), cvss,"
        " typeof(ssl), ssl, typeof(last_found_datetime), last_found_datetime"
        " FROM host_detections WHERE unique_vuln_id = ?",
        big,
    )
    assert row == [
        (big, huge, "integer", "real", 7.5, "integer", 1, "text", "2026-11-20T10:00:00Z")
    ]
    # Nested values are JSON text that SQLite's JSON functions read directly.
    assert query(
        database,
        "SELECT json_extract(asset, '$.id'), json_extract(asset, '$.tags[1]'),"
        " json_extract(qds_factors, '$[0].value') FROM host_detections WHERE unique_vuln_id = ?",
        big,
    ) == [(big, "linux", "7.5")]
    assert query(
        database,
        "SELECT f.value ->> '$.name' FROM host_detections, json_each(qds_factors) AS f"
        " WHERE unique_vuln_id = ? ORDER BY 1",
        big,
    ) == [("CVSS",), ("EPSS",)]
    # Nulls stay SQL NULL, not the JSON text 'null'.
    assert query(
        database, "SELECT cvss, qds_factors, asset FROM host_detections WHERE unique_vuln_id = 5"
    ) == [(None, None, None)]


def test_database_is_in_wal_mode(tmp_path: Path, database: Path) -> None:
    messages = [schema_message(keys=KEYS), record_message(detection(1))]
    assert run_target(tmp_path, {"database": str(database)}, messages).returncode == 0
    assert query(database, "PRAGMA journal_mode") == [("wal",)]


def test_later_schema_adds_a_column_and_keeps_message_order(tmp_path: Path, database: Path) -> None:
    config = {"database": str(database)}
    assert (
        run_target(
            tmp_path, config, [schema_message(keys=KEYS), record_message(detection(1))], "v1"
        ).returncode
        == 0
    )

    evolved = {**schema_message()["schema"]["properties"], "qds": {"type": ["null", "integer"]}}
    messages = [
        schema_message(keys=KEYS),
        record_message(detection(2, status="old")),
        schema_message(properties=evolved, keys=KEYS),
        # Same key again after the schema change: the newer version must win.
        record_message(detection(2, status="new", qds=87)),
    ]
    assert run_target(tmp_path, config, messages, "v2").returncode == 0

    columns = [
        name for (name,) in query(database, "SELECT name FROM pragma_table_info('host_detections')")
    ]
    assert columns[-1] == "qds"
    rows = query(database, "SELECT unique_vuln_id, status, qds FROM host_detections ORDER BY 1")
    assert rows == [(1, "Active", None), (2, "new", 87)]


def test_batch_messages_plain_and_gzip(tmp_path: Path, database: Path) -> None:
    plain = tmp_path / "batch-1.jsonl"
    plain.write_text("".join(json.dumps(detection(i)) + "\n" for i in (1, 2)))
    zipped = tmp_path / "batch-2.jsonl.gz"
    with gzip.open(zipped, "wt") as out:
        out.writelines(json.dumps(detection(i, cvss=9.8)) + "\n" for i in (3, 4))
    messages = [
        schema_message(keys=KEYS),
        {
            "type": "BATCH",
            "stream": "host_detections",
            "encoding": {"format": "jsonl", "compression": "none"},
            "manifest": [plain.as_uri()],
        },
        {
            "type": "BATCH",
            "stream": "host_detections",
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "manifest": [zipped.as_uri()],
        },
        record_message(detection(5)),
    ]
    run = run_target(tmp_path, {"database": str(database)}, messages)
    assert run.returncode == 0, run.stderr
    rows = query(
        database,
        "SELECT unique_vuln_id, cvss, typeof(cvss), json_extract(asset, '$.tags[0]')"
        " FROM host_detections ORDER BY 1",
    )
    assert rows == [
        (1, 7.5, "real", "prod"),
        (2, 7.5, "real", "prod"),
        (3, 9.8, "real", "prod"),
        (4, 9.8, "real", "prod"),
        (5, 7.5, "real", "prod"),
    ]


def test_state_is_emitted_after_the_data_is_committed(tmp_path: Path, database: Path) -> None:
    state = {"bookmarks": {"host_detections": {"replication_key_value": "2026-11-20"}}}
    messages = [
        schema_message(keys=KEYS),
        record_message(detection(1)),
        {"type": "STATE", "value": state},
    ]
    run = run_target(tmp_path, {"database": str(database)}, messages)
    assert run.returncode == 0
    assert run.states == [state]


def test_about_lists_the_settings_in_markdown_and_json() -> None:
    markdown = subprocess.run(
        [str(EXECUTABLE), "--about", "--format=markdown"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "| database |" in markdown
    assert "| point_in_time |" in markdown
    about = json.loads(
        subprocess.run(
            [str(EXECUTABLE), "--about", "--format=json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    settings = about["settings"]["properties"]
    for name in ("database", "point_in_time", "snapshot_dir", "s3_bucket", "busy_timeout_seconds"):
        assert settings[name]["description"]
    assert settings["aws_secret_access_key"].get("secret") is True


def test_overwrite_load_method_replaces_the_table(tmp_path: Path, database: Path) -> None:
    first = [schema_message(keys=KEYS), *(record_message(detection(i)) for i in (1, 2))]
    assert run_target(tmp_path, {"database": str(database)}, first, "first").returncode == 0
    config = {"database": str(database), "load_method": "overwrite"}
    second = [schema_message(keys=KEYS), record_message(detection(3))]
    assert run_target(tmp_path, config, second, "second").returncode == 0
    assert query(database, "SELECT unique_vuln_id FROM host_detections") == [(3,)]
