"""Tombstones: soft delete, hard delete, the hosts -> host_detections cascade, replays."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa

from target_qualys_sqlite import deletes
from tests.target_sqlite.conftest import (
    listen_in_process,
    query,
    record_message,
    run_target,
    schema_message,
)

DELETED = {"type": ["null", "string"], "format": "date-time"}
HOST_PROPERTIES: dict[str, t.Any] = {
    "id": {"type": "integer"},
    "ip": {"type": ["null", "string"]},
    "os": {"type": ["null", "string"]},
    "_sdc_deleted_at": DELETED,
}
DETECTION_PROPERTIES: dict[str, t.Any] = {
    "host_id": {"type": "integer"},
    "unique_vuln_id": {"type": "integer"},
    "status": {"type": ["null", "string"]},
    "_sdc_deleted_at": DELETED,
}
WHEN = "2026-11-02T00:00:00Z"


def host(host_id: int) -> dict[str, t.Any]:
    return record_message(
        {"id": host_id, "ip": f"10.0.0.{host_id}", "os": "Linux", "_sdc_deleted_at": None},
        "hosts",
    )


def found(host_id: int, uid: int) -> dict[str, t.Any]:
    record = {"host_id": host_id, "unique_vuln_id": uid, "status": "Active"}
    return record_message({**record, "_sdc_deleted_at": None}, "host_detections")


def tombstone(host_id: int, when: str = WHEN) -> dict[str, t.Any]:
    return record_message({"id": host_id, "_sdc_deleted_at": when}, "hosts")


def load() -> list[dict[str, t.Any]]:
    return [
        schema_message("hosts", HOST_PROPERTIES, ["id"]),
        schema_message("host_detections", DETECTION_PROPERTIES, ["host_id", "unique_vuln_id"]),
        *(host(i) for i in (1, 2, 3)),
        *(found(i, 10 * i + k) for i in (1, 2, 3) for k in (1, 2)),
    ]


def hosts(database: Path) -> list[tuple[t.Any, ...]]:
    return query(database, "SELECT id, ip, os, _sdc_deleted_at FROM hosts ORDER BY id")


def detections(database: Path) -> list[tuple[t.Any, ...]]:
    sql = "SELECT host_id, unique_vuln_id, status, _sdc_deleted_at FROM host_detections"
    return query(database, sql + " ORDER BY 1, 2")


@pytest.mark.parametrize("direct", [True, False])
def test_soft_delete_marks_only_the_deleted_at_column(database: Path, direct: bool) -> None:
    listen_in_process(database, load(), direct=direct)
    # Later run: the host's tombstone, replayed (at least once), plus one for a host never
    # loaded; then a live record of another stream, which must not undo anything.
    later = [
        schema_message("hosts", HOST_PROPERTIES, ["id"]),
        schema_message("host_detections", DETECTION_PROPERTIES, ["host_id", "unique_vuln_id"]),
        tombstone(2),
        tombstone(2, "2026-11-03T00:00:00Z"),
        tombstone(99),
        found(3, 33),
    ]
    listen_in_process(database, later, direct=direct)
    assert hosts(database) == [
        (1, "10.0.0.1", "Linux", None),
        (2, "10.0.0.2", "Linux", WHEN),  # untouched but for the mark; the first time kept
        (3, "10.0.0.3", "Linux", None),
    ]
    marked = [(h, u) for h, u, _, at in detections(database) if at is not None]
    assert marked == [(2, 21), (2, 22)]
    assert all(s == "Active" for _, _, s, _ in detections(database))
    assert (3, 33, "Active", None) in detections(database)


def test_hard_delete_removes_host_and_cascades(database: Path) -> None:
    listen_in_process(database, load(), direct=True)
    listen_in_process(
        database,
        [schema_message("hosts", HOST_PROPERTIES, ["id"]), tombstone(1), tombstone(1)],
        direct=True,
        hard_delete=True,
    )
    assert [r[0] for r in hosts(database)] == [2, 3]
    assert {r[0] for r in detections(database)} == {2, 3}


def test_cascade_can_be_turned_off(database: Path) -> None:
    listen_in_process(database, load(), direct=True)
    messages = [schema_message("hosts", HOST_PROPERTIES, ["id"]), tombstone(3)]
    listen_in_process(database, messages, direct=True, cascade_deletes={})
    assert hosts(database)[2][3] == WHEN
    assert all(at is None for *_, at in detections(database))


def test_tombstone_after_its_upsert_in_one_batch(database: Path) -> None:
    # The host is upserted and deleted in the same run, before any drain: the delete wins.
    messages = [*load(), tombstone(1)]
    listen_in_process(database, messages, direct=True, batch_size_rows=1000)
    assert hosts(database)[0] == (1, "10.0.0.1", "Linux", WHEN)
    assert [at for h, _, _, at in detections(database) if h == 1] == [WHEN, WHEN]


def test_state_after_tombstones_is_emitted_after_they_are_committed(
    tmp_path: Path, database: Path
) -> None:
    messages = [
        *load(),
        tombstone(2),
        {"type": "STATE", "value": {"bookmarks": {"hosts": {"x": 1}}}},
    ]
    run = run_target(tmp_path, {"database": str(database)}, messages)
    assert run.returncode == 0, run.stderr
    assert run.states[-1] == {"bookmarks": {"hosts": {"x": 1}}}
    assert hosts(database)[1][3] == WHEN


def test_tombstone_without_its_key_fails_clearly(tmp_path: Path, database: Path) -> None:
    bad = record_message({"id": None, "_sdc_deleted_at": WHEN}, "hosts")
    run = run_target(
        tmp_path,
        {"database": str(database), "validate_records": False},
        [schema_message("hosts", HOST_PROPERTIES, ["id"]), bad],
    )
    assert run.returncode == 1
    assert "tombstone" in run.last_error_line


def test_deletes_module_on_plain_sqlite(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (a INTEGER, b TEXT, v TEXT, _sdc_deleted_at TEXT)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1, 'x', 'keep', NULL), (1, 'y', 'v', NULL)"))
        table = deletes.table_of(conn, "t")
        assert table is not None
        assert deletes.table_of(conn, "missing") is None
        tomb = {"a": 1, "b": "y", "_sdc_deleted_at": WHEN}
        assert deletes.apply_tombstones(conn, table, ["a", "b"], [tomb], hard_delete=False) == 1
        assert deletes.apply_tombstones(conn, table, ["a", "b"], [tomb], hard_delete=False) == 0
        rows = conn.execute(sa.text("SELECT a, b, v, _sdc_deleted_at FROM t ORDER BY b")).all()
        assert [tuple(r) for r in rows] == [(1, "x", "keep", None), (1, "y", "v", WHEN)]
        assert deletes.cascade_tombstones(conn, table, "a", [(1, WHEN)], hard_delete=True) == 2
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 0
        conn.execute(sa.text("CREATE TABLE plain (a INTEGER)"))
        plain = deletes.table_of(conn, "plain")
        assert plain is not None
        with pytest.raises(ValueError, match="no _sdc_deleted_at column"):
            deletes.apply_tombstones(conn, plain, ["a"], [{"a": 1, **tomb}], hard_delete=False)
