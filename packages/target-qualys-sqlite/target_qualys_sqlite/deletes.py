"""Tombstones: Singer RECORDs that carry only their keys and ``_sdc_deleted_at``.

A tap that learns a row is gone at the source (tap-qualys: a host Qualys purged) sends the row's
keys with ``_sdc_deleted_at`` set. Upserting that record would null every other column, so the
target applies it here instead:

- soft delete (default): ``UPDATE ... SET _sdc_deleted_at = <when>`` on the existing row, every
  other column untouched; live rows are ``_sdc_deleted_at IS NULL``;
- ``hard_delete``: ``DELETE`` the row;
- cascade: the rows of child tables that name the deleted key (``host_detections.host_id`` for
  ``hosts``) are marked or deleted the same way, since the source stops listing them too.

At-least-once safe: a replayed tombstone finds the row already marked (the first deletion time is
kept) or already gone, and a tombstone for a row never loaded changes nothing. SQLAlchemy Core
only and no dialect-specific SQL, so the same code serves any SQL database.
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa

if t.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: The Singer (and Meltano SDK) soft-delete column.
DELETED_AT = "_sdc_deleted_at"
#: What ``cascade_deletes`` defaults to: parent stream -> {child table: child column}.
DEFAULT_CASCADE: dict[str, dict[str, str]] = {"hosts": {"host_detections": "host_id"}}


def is_tombstone(record: Mapping[str, t.Any]) -> bool:
    """Whether a RECORD is a tombstone (``_sdc_deleted_at`` set)."""
    return record.get(DELETED_AT) is not None


def table_of(
    connection: sa.Connection, name: str, schema: str | None = None
) -> sa.TableClause | None:
    """A lightweight Core table (name and column names), or None if it does not exist.

    Columns stay untyped: values bind as given (ISO date-time text, as the loader writes them).
    """
    inspector = sa.inspect(connection)
    if not inspector.has_table(name, schema=schema):
        return None
    columns: list[sa.ColumnClause[t.Any]] = [
        sa.column(c["name"]) for c in inspector.get_columns(name, schema=schema)
    ]
    return sa.table(name, *columns, schema=schema)


def apply_tombstones(
    connection: sa.Connection,
    table: sa.TableClause,
    key_columns: Sequence[str],
    tombstones: Sequence[Mapping[str, t.Any]],
    *,
    hard_delete: bool,
) -> int:
    """Soft- or hard-delete the rows the tombstones name; return how many rows changed.

    ``tombstones`` map each key column (and ``_sdc_deleted_at``) to its value. Runs in the
    caller's transaction.
    """
    if not tombstones:
        return 0
    match = sa.and_(*(table.c[k] == sa.bindparam(f"k_{k}") for k in key_columns))
    params = [
        {**{f"k_{k}": tomb[k] for k in key_columns}, "deleted_at": tomb[DELETED_AT]}
        for tomb in tombstones
    ]
    return _execute(connection, table, match, params, hard_delete=hard_delete)


def cascade_tombstones(
    connection: sa.Connection,
    child: sa.TableClause,
    column: str,
    parents: Sequence[tuple[t.Any, str]],
    *,
    hard_delete: bool,
) -> int:
    """Delete (or mark) the child rows whose ``column`` is a deleted parent's key.

    ``parents`` are (parent key value, deleted at) pairs.
    """
    if not parents:
        return 0
    match = child.c[column] == sa.bindparam("k_parent")
    params = [{"k_parent": key, "deleted_at": when} for key, when in parents]
    return _execute(connection, child, match, params, hard_delete=hard_delete)


def apply_with_cascade(
    connection: sa.Connection,
    table: sa.TableClause,
    key_columns: Sequence[str],
    tombstones: Sequence[Mapping[str, t.Any]],
    cascade: Mapping[str, str],
    *,
    hard_delete: bool,
    schema: str | None = None,
) -> tuple[int, int, list[str]]:
    """The tombstones of one table and the cascade to its children, in the caller's transaction.

    ``tombstones`` map each of ``key_columns`` (and ``_sdc_deleted_at``) to its value;
    ``cascade`` maps each child table (in ``schema``) to its column holding this table's key,
    which must then be a single column. Returns (rows deleted or marked, child rows, children
    left because they have no ``_sdc_deleted_at`` to mark). Both target modes use this.
    """
    changed = apply_tombstones(connection, table, key_columns, tombstones, hard_delete=hard_delete)
    children = 0
    left: list[str] = []
    for child_name, column in cascade.items():
        child = table_of(connection, child_name, schema)
        if child is None or column not in child.c:
            continue  # nothing of that stream loaded (yet)
        if not hard_delete and DELETED_AT not in child.c:
            left.append(child_name)
            continue
        parents = [(tomb[key_columns[0]], tomb[DELETED_AT]) for tomb in tombstones]
        children += cascade_tombstones(connection, child, column, parents, hard_delete=hard_delete)
    return changed, children, left


def _execute(
    connection: sa.Connection,
    table: sa.TableClause,
    match: sa.ColumnElement[bool],
    params: list[dict[str, t.Any]],
    *,
    hard_delete: bool,
) -> int:
    if hard_delete:
        statement: sa.Executable = sa.delete(table).where(match)
        params = [{k: v for k, v in p.items() if k != "deleted_at"} for p in params]
    else:
        if DELETED_AT not in table.c:
            msg = f"table {table.name} has no {DELETED_AT} column to mark deleted rows in"
            raise ValueError(msg)
        # Only live rows: a replayed tombstone keeps the first deletion time.
        statement = (
            sa.update(table)
            .where(match, table.c[DELETED_AT].is_(None))
            .values({DELETED_AT: sa.bindparam("deleted_at")})
        )
    # executemany: rowcount is the total over all parameter sets where the driver tells it.
    result = connection.execute(statement, params)
    return max(result.rowcount, 0)
