"""The Postgres mode's binary COPY encoding and its json_to_record casts, checked by a real round
trip through PostgreSQL."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from target_qualys_sqlite.postgres import (
    COPY_HEADER,
    COPY_TRAILER,
    copy_tuple,
    is_tombstone,
    json_document,
    record_definition,
    sanitize_json,
)

psycopg = pytest.importorskip("psycopg")

CONNINFO = (
    f"host={os.environ.get('E2E_POSTGRES_HOST', '127.0.0.1')} "
    f"port={os.environ.get('E2E_POSTGRES_PORT', '5432')} "
    f"user={os.environ.get('E2E_POSTGRES_USER', 'postgres')} "
    f"password={os.environ.get('E2E_POSTGRES_PASSWORD', 'postgres')} dbname=postgres"
)


@pytest.fixture(scope="module")
def connection() -> Iterator[Any]:
    try:
        conn = psycopg.connect(CONNINFO, connect_timeout=5, autocommit=True)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(f"PostgreSQL is not reachable: {exc}")
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    yield conn
    conn.close()


def round_trip(connection: Any, documents: list[bytes]) -> list[Any]:
    """COPY the documents as the sink does; what Postgres read from them, as Python values."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS docs (seq serial, doc text)")
        cursor.execute("TRUNCATE docs")
        with cursor.copy("COPY docs (doc) FROM STDIN (FORMAT binary)") as copy:
            copy.write(COPY_HEADER + b"".join(copy_tuple(d) for d in documents) + COPY_TRAILER)
        cursor.execute("SELECT doc::jsonb FROM docs ORDER BY seq")
        return [row[0] for row in cursor.fetchall()]


HOSTILE = [
    {"id": 1, "text": None},
    {"id": 2, "text": "back\\slash \\N \\. and \\\\"},
    {"id": 3, "text": "tab\there\nnewline\r\ncrlf"},
    {"id": 4, "text": "unicode é ü 中文 😀 \u2028"},
    {"id": 9007199254740993, "big": 123456789012345678901234567890},
    {"id": 5, "nested": {"a": [1, {"b": "x\ty"}], "c": None}},
]


def test_hostile_strings_and_numbers_round_trip(connection: Any) -> None:
    documents = [json_document(record) for record in HOSTILE]
    stored = round_trip(connection, documents)
    # psycopg reads jsonb with json.loads: numbers of any size stay exact ints.
    assert stored == HOSTILE


def test_nul_characters_become_replacement_characters(connection: Any) -> None:
    record = {"id": 1, "text": "a\x00b", "list": ["\x00"], "literal": "\\u0000 stays"}
    stored = round_trip(connection, [json_document(record)])
    assert stored == [{"id": 1, "text": "a\ufffdb", "list": ["\ufffd"], "literal": "\\u0000 stays"}]


def test_sanitize_respects_escaped_backslashes() -> None:
    # \\u0000 is a backslash then "u0000" (text), \\\u0000 a backslash then NUL.
    assert sanitize_json(rb'"\\u0000"') == rb'"\\u0000"'
    assert sanitize_json(rb'"\\\u0000"') == rb'"\\\ufffd"'
    assert sanitize_json(rb'"\u0000\u0000"') == rb'"\ufffd\ufffd"'
    assert sanitize_json(b'{"a":1}') == b'{"a":1}'
    assert json.loads(sanitize_json(rb'"x\u0000y"')) == "x\ufffdy"


def test_raw_tap_lines_are_copied_as_they_are(connection: Any) -> None:
    # The direct path copies the tap's bytes without parsing them; spacing does not matter.
    raw = b'{ "id" : 7,\t"when": "2024-01-02T03:04:05Z" , "tags" : [ ] }'
    assert round_trip(connection, [raw]) == [{"id": 7, "when": "2024-01-02T03:04:05Z", "tags": []}]


@pytest.mark.parametrize(
    ("column_type", "value", "expected"),
    [
        ("bigint", 9007199254740993, 9007199254740993),
        ("numeric", 123456789012345678901234567890, 123456789012345678901234567890),
        ("boolean", True, True),
        ("text", "tab\there", "tab\there"),
        ("text", None, None),
        ("jsonb", None, None),
        ("jsonb", {"a": [1]}, {"a": [1]}),
        ("jsonb", [], []),
        ("jsonb", "a string", "a string"),
        ("text", 12, "12"),
        ("boolean", None, None),
        ("timestamp with time zone", "2024-01-02T05:04:05+02:00", "2024-01-02 03:04:05+00"),
    ],
)
def test_json_to_record_casts_to_the_column_type(
    connection: Any, column_type: str, value: Any, expected: Any
) -> None:
    document = msgspec.json.encode({"k'ey": value, "other": 1}).decode()
    fields = record_definition([("k'ey", column_type)])
    with connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'UTC'")
        cursor.execute(
            f'SELECT x."k\'ey" FROM json_to_record(%s::json) AS x({fields})', (document,)
        )
        (got,) = cursor.fetchone()
    if column_type == "numeric":
        got = int(got)
    if column_type.startswith("timestamp"):
        got = f"{got:%Y-%m-%d %H:%M:%S}+00"
    assert got == expected


def test_absent_field_is_null_and_keys_keep_their_case(connection: Any) -> None:
    fields = record_definition([("missing", "bigint"), ("gone", "jsonb"), ("policyId", "bigint")])
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT x.missing, x.gone, x."policyId" FROM json_to_record(%s::json) AS x({fields})',
            ('{"policyid": 1, "policyId": 2}',),
        )
        assert cursor.fetchone() == (None, None, 2)


def test_tombstone_detection() -> None:
    assert is_tombstone(b'{"id":1,"_sdc_deleted_at":"2024-01-01T00:00:00Z"}')
    assert not is_tombstone(b'{"id":1,"_sdc_deleted_at": null}')
    assert not is_tombstone(b'{"id":1}')


@pytest.mark.parametrize(
    "config",
    [
        {"host": "127.0.0.1", "port": 1, "user": "qualys", "password": "pw-never-shown"},
        {"sqlalchemy_url": "postgresql://qualys:pw-never-shown@127.0.0.1:1/qualys"},
    ],
)
def test_unreachable_server_is_one_line_without_the_password(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"database": "qualys", **config}))
    schema = {"type": "object", "properties": {"id": {"type": "integer"}}}
    lines = [
        {"type": "SCHEMA", "stream": "s", "schema": schema, "key_properties": ["id"]},
        {"type": "RECORD", "stream": "s", "record": {"id": 1}},
    ]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "target-qualys-postgres"), "--config", str(config_file)],
        input="".join(json.dumps(line) + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "target-qualys-postgres failed: cannot connect to Postgres as qualys@127.0.0.1:1" in last
    assert "pw-never-shown" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def loader_command(tmp_path: Path, database: str, **settings: Any) -> list[str]:
    """target-qualys-postgres with a config for ``database`` (schema ``t``) and ``settings``."""
    host, port = CONNINFO.split(maxsplit=1)[0][5:], CONNINFO.split()[1][5:]
    config = {"host": host, "port": int(port), "user": "postgres", "password": "postgres"}
    config_file = tmp_path / "target.json"
    config_file.write_text(
        json.dumps({**config, "database": database, "default_target_schema": "t", **settings})
    )
    return [
        str(Path(sys.executable).parent / "target-qualys-postgres"),
        "--config",
        str(config_file),
    ]


def load(
    tmp_path: Path, database: str, lines: list[dict[str, Any]], **settings: Any
) -> subprocess.CompletedProcess[str]:
    """One run of the loader on ``lines``, whatever its exit status."""
    return subprocess.run(
        loader_command(tmp_path, database, **settings),
        input="".join(json.dumps(line) + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_loader(tmp_path: Path, database: str, lines: list[dict[str, Any]], **settings: Any) -> str:
    result = load(tmp_path, database, lines, **settings)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def query(database: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` in ``database``, date-times in UTC."""
    with psycopg.connect(CONNINFO.replace("dbname=postgres", f"dbname={database}")) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        return conn.execute(sql).fetchall()


@pytest.fixture
def database(connection: Any) -> Iterator[str]:
    name = f"pgcopy_{os.getpid()}"
    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    connection.execute(f'CREATE DATABASE "{name}"')
    yield name
    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


HOSTS_SCHEMA = {
    "type": "SCHEMA",
    "stream": "hosts",
    "key_properties": ["id"],
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "dns": {"type": ["string", "null"]},
            "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
}


def record(**fields: Any) -> dict[str, Any]:
    return {"type": "RECORD", "stream": "hosts", "record": fields}


@pytest.mark.parametrize("hard_delete", [False, True])
def test_tombstones_soft_or_hard_delete(
    tmp_path: Path, connection: Any, database: str, hard_delete: bool
) -> None:
    when = "2024-05-05T00:00:00Z"
    run_loader(
        tmp_path,
        database,
        [
            HOSTS_SCHEMA,
            record(id=1, dns="a", _sdc_deleted_at=None),
            record(id=2, dns="b", _sdc_deleted_at=None),
            record(id=3, dns="c", _sdc_deleted_at=None),
        ],
    )
    state = {"type": "STATE", "value": {"done": True}}
    output = run_loader(
        tmp_path,
        database,
        [
            HOSTS_SCHEMA,
            record(id=1, _sdc_deleted_at=when),  # an existing row
            record(id=9, _sdc_deleted_at=when),  # no such row: nothing happens
            record(id=4, dns="d", _sdc_deleted_at=None),  # live, then deleted in the same batch
            record(id=4, _sdc_deleted_at=when),
            record(id=3, _sdc_deleted_at=when),  # deleted, then live again
            record(id=3, dns="c2", _sdc_deleted_at=None),
            state,
        ],
        hard_delete=hard_delete,
    )
    assert json.loads(output.splitlines()[-1]) == {"done": True}
    rows = query(database, "SELECT id, dns, _sdc_deleted_at IS NOT NULL FROM t.hosts ORDER BY id")
    if hard_delete:
        assert rows == [(2, "b", False), (3, "c2", False)]
    else:
        # A soft delete keeps the row's other columns as they were.
        assert rows == [(1, "a", True), (2, "b", False), (3, "c2", False), (4, "d", True)]


DETECTIONS_SCHEMA = {
    "type": "SCHEMA",
    "stream": "host_detections",
    "key_properties": ["host_id", "unique_vuln_id"],
    "schema": {
        "type": "object",
        "properties": {
            "host_id": {"type": "integer"},
            "unique_vuln_id": {"type": "integer"},
            "status": {"type": ["string", "null"]},
            "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
}


def detection(host_id: int, uid: int) -> dict[str, Any]:
    fields = {"host_id": host_id, "unique_vuln_id": uid, "status": "Active"}
    return {
        "type": "RECORD",
        "stream": "host_detections",
        "record": {**fields, "_sdc_deleted_at": None},
    }


def load_hosts_and_detections(tmp_path: Path, database: str) -> None:
    run_loader(
        tmp_path,
        database,
        [
            HOSTS_SCHEMA,
            DETECTIONS_SCHEMA,
            *(record(id=i, dns=f"h{i}", _sdc_deleted_at=None) for i in (1, 2, 3)),
            *(detection(i, 10 * i + k) for i in (1, 2, 3) for k in (1, 2)),
        ],
    )


def cascade_state(database: str) -> tuple[list[Any], list[Any]]:
    with psycopg.connect(CONNINFO.replace("dbname=postgres", f"dbname={database}")) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        hosts = conn.execute(
            "SELECT id, dns, to_char(_sdc_deleted_at, 'YYYY-MM-DD') FROM t.hosts ORDER BY id"
        ).fetchall()
        detections = conn.execute(
            "SELECT host_id, unique_vuln_id, status, to_char(_sdc_deleted_at, 'YYYY-MM-DD') "
            "FROM t.host_detections ORDER BY 1, 2"
        ).fetchall()
    return hosts, detections


def test_cascade_soft_delete_marks_the_hosts_detections_and_keeps_the_first_time(
    tmp_path: Path, database: str
) -> None:
    load_hosts_and_detections(tmp_path, database)
    state = {"type": "STATE", "value": {"after": "tombstones"}}
    output = run_loader(
        tmp_path,
        database,
        [
            HOSTS_SCHEMA,
            DETECTIONS_SCHEMA,
            # A detection of host 2 still pending when its host's tombstone arrives: it loads
            # first, so the cascade reaches it too.
            detection(2, 23),
            record(id=2, _sdc_deleted_at="2024-05-05T00:00:00Z"),
            record(id=77, _sdc_deleted_at="2024-05-05T00:00:00Z"),  # never loaded: nothing
            state,
        ],
    )
    assert json.loads(output.splitlines()[-1]) == state["value"]
    hosts, detections = cascade_state(database)
    assert hosts == [(1, "h1", None), (2, "h2", "2024-05-05"), (3, "h3", None)]
    assert detections == [
        (1, 11, "Active", None),
        (1, 12, "Active", None),
        (2, 21, "Active", "2024-05-05"),
        (2, 22, "Active", "2024-05-05"),
        (2, 23, "Active", "2024-05-05"),
        (3, 31, "Active", None),
        (3, 32, "Active", None),
    ]
    # A replayed tombstone (at-least-once: the run died before its STATE) changes nothing:
    # the first deletion time stays on the host and on its detections.
    run_loader(
        tmp_path,
        database,
        [HOSTS_SCHEMA, DETECTIONS_SCHEMA, record(id=2, _sdc_deleted_at="2024-06-06T00:00:00Z")],
    )
    assert cascade_state(database) == (hosts, detections)


def test_cascade_hard_delete_removes_the_hosts_detections(tmp_path: Path, database: str) -> None:
    load_hosts_and_detections(tmp_path, database)
    tombstones = [
        HOSTS_SCHEMA,
        DETECTIONS_SCHEMA,
        record(id=1, _sdc_deleted_at="2024-05-05T00:00:00Z"),
        record(id=3, _sdc_deleted_at="2024-05-05T00:00:00Z"),
        record(id=77, _sdc_deleted_at="2024-05-05T00:00:00Z"),
    ]
    run_loader(tmp_path, database, tombstones, hard_delete=True)
    expected = ([(2, "h2", None)], [(2, 21, "Active", None), (2, 22, "Active", None)])
    assert cascade_state(database) == expected
    run_loader(tmp_path, database, tombstones, hard_delete=True)  # replayed: nothing more
    assert cascade_state(database) == expected


def test_cascade_deletes_can_be_turned_off(tmp_path: Path, database: str) -> None:
    load_hosts_and_detections(tmp_path, database)
    run_loader(
        tmp_path,
        database,
        [HOSTS_SCHEMA, record(id=1, _sdc_deleted_at="2024-05-05T00:00:00Z")],
        cascade_deletes={},
    )
    hosts, detections = cascade_state(database)
    assert hosts[0] == (1, "h1", "2024-05-05")
    assert all(row[3] is None for row in detections)


def test_a_batch_failing_in_the_background_stops_the_run_before_its_state(
    tmp_path: Path, database: str
) -> None:
    # Batches load on a background thread while the next is read (BackgroundLoads): a batch that
    # Postgres refuses must still fail the run with one line, and no STATE after it may be
    # emitted; the batches and STATEs before it stay, in order.
    lines = [
        HOSTS_SCHEMA,
        *(record(id=i, dns=f"v{i}", _sdc_deleted_at=None) for i in range(1, 6)),
        {"type": "STATE", "value": {"upto": 5}},
        record(id=6, dns="ok", _sdc_deleted_at=None),
        record(id="not a number", dns="bad", _sdc_deleted_at=None),
        {"type": "STATE", "value": {"upto": 7}},
        *(record(id=i, dns=f"v{i}", _sdc_deleted_at=None) for i in range(8, 50)),
        {"type": "STATE", "value": {"upto": 49}},
    ]
    result = load(tmp_path, database, lines, batch_size_rows=2, state_checkpoint_seconds=0)
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "stream 'hosts'" in last
    assert "the batch was rolled back" in last
    assert "Traceback" not in result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [{"upto": 5}]
    ids = [row[0] for row in query(database, "SELECT id FROM t.hosts ORDER BY id")]
    # Batches of two: (1, 2), (3, 4), (5, 6) committed; the one holding the bad id failed.
    assert ids[:5] == [1, 2, 3, 4, 5]
    assert all(i < 8 for i in ids)


def test_sigterm_while_batches_load_in_the_background(tmp_path: Path, database: str) -> None:
    # An operator's SIGTERM while a batch is loading on the background thread: the run fails
    # promptly (143), emits no STATE after the signal, and every STATE it did emit is backed by
    # committed rows (the next run resumes from it and loses nothing).
    process = subprocess.Popen(
        loader_command(tmp_path, database, batch_size_rows=50, state_checkpoint_seconds=0),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None

    def feed() -> None:
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):  # closed by the test
            process.stdin.write((json.dumps(HOSTS_SCHEMA) + "\n").encode())
            for i in range(1, 1_000_000):
                line = record(id=i, dns="x" * 200, _sdc_deleted_at=None)
                process.stdin.write((json.dumps(line) + "\n").encode())
                if i % 100 == 0:
                    state = {"type": "STATE", "value": {"upto": i}}
                    process.stdin.write((json.dumps(state) + "\n").encode())
                    process.stdin.flush()
                    time.sleep(0.01)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    states = [json.loads(process.stdout.readline()) for _ in range(3)]
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    rest, stderr = process.communicate(timeout=30)
    assert process.returncode == 143, stderr.decode()[-3000:]
    assert time.monotonic() - signalled < 20
    assert b"no STATE was emitted after the signal" in stderr
    states += [json.loads(line) for line in rest.splitlines()]
    upto = states[-1]["upto"]
    ids = {row[0] for row in query(database, "SELECT id FROM t.hosts")}
    assert set(range(1, upto + 1)) <= ids


@pytest.mark.parametrize("hard_delete", [False, True])
def test_tombstones_in_a_batch_file(tmp_path: Path, database: str, hard_delete: bool) -> None:
    # BATCH messages reach the sink without the target's tombstone queue: the batch's own
    # statement applies them after its upsert (json_to_record reads _sdc_deleted_at too).
    when = "2024-05-05T00:00:00+00:00"
    run_loader(
        tmp_path,
        database,
        [HOSTS_SCHEMA, *(record(id=i, dns=f"v{i}", _sdc_deleted_at=None) for i in (1, 2, 3))],
    )
    batch = tmp_path / "hosts-1.jsonl"
    batch.write_text(
        json.dumps({"id": 2, "_sdc_deleted_at": when})
        + "\n"
        + json.dumps({"id": 4, "dns": "v4", "_sdc_deleted_at": None})
        + "\n"
    )
    message = {
        "type": "BATCH",
        "stream": "hosts",
        "encoding": {"format": "jsonl", "compression": "none"},
        "manifest": [batch.as_uri()],
    }
    run_loader(tmp_path, database, [HOSTS_SCHEMA, message], hard_delete=hard_delete)
    rows = query(database, "SELECT id, dns, _sdc_deleted_at IS NOT NULL FROM t.hosts ORDER BY id")
    if hard_delete:
        assert rows == [(1, "v1", False), (3, "v3", False), (4, "v4", False)]
    else:
        assert rows == [(1, "v1", False), (2, "v2", True), (3, "v3", False), (4, "v4", False)]


def hosts_schema_with(**properties: Any) -> dict[str, Any]:
    schema = copy.deepcopy(HOSTS_SCHEMA)
    schema["schema"]["properties"].update(properties)
    return schema


def test_a_property_name_of_64_bytes_or_more_is_loaded(tmp_path: Path, database: str) -> None:
    # json_to_record matches a JSON key to a column of its definition list by name, and names are
    # identifiers, cut to 63 bytes: a longer key (here 66 bytes of UTF-8, conformed to a shorter
    # column name) would load as NULL without a word. Such keys are read from the jsonb instead.
    name = "Détails de la vulnérabilité (résumé) — première détection"  # 57 chars, 66 bytes
    assert len(name.encode()) >= 64
    schema = hosts_schema_with(**{name: {"type": ["string", "null"]}})
    run_loader(
        tmp_path,
        database,
        [schema, record(id=1, dns="a", _sdc_deleted_at=None, **{name: "first seen 2024"})],
    )
    column = "dtails_de_la_vulnrabilit_rsum__premire_dtection"
    assert query(database, f"SELECT id, {column} FROM t.hosts") == [(1, "first seen 2024")]


def test_an_existing_varchar_column_still_takes_a_longer_value(
    tmp_path: Path, database: str
) -> None:
    # A table made earlier by another loader with `dns varchar(255)`: json_to_record would read
    # the value with the column's length and fail the run; an explicit cast cuts it, as the
    # loader always did, so a pipeline that loaded yesterday still loads today.
    with psycopg.connect(
        CONNINFO.replace("dbname=postgres", f"dbname={database}"), autocommit=True
    ) as conn:
        conn.execute(
            "CREATE SCHEMA t; CREATE TABLE t.hosts (id bigint PRIMARY KEY, dns varchar(255), "
            "_sdc_deleted_at timestamptz)"
        )
    run_loader(
        tmp_path,
        database,
        [HOSTS_SCHEMA, record(id=1, dns="x" * 300, _sdc_deleted_at=None), record(id=2, dns="b")],
    )
    assert [row[0] for row in query(database, "SELECT id FROM t.hosts ORDER BY id")] == [1, 2]
