"""SQLite connector: engine with the pragmas we rely on, type mapping, DDL, the upsert statement."""

from __future__ import annotations

import sqlite3
import sys
import typing as t
from pathlib import Path

import sqlalchemy as sa
from singer_sdk.sql import SQLConnector
from singer_sdk.sql.connector import JSONSchemaToSQL

from target_qualys_sqlite import sdk

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Sequence

    from singer_sdk.sql.connector import FullyQualifiedName

DEFAULT_BUSY_TIMEOUT_SECONDS = 30.0


def quote_identifier(name: str) -> str:
    """Quote an SQLite identifier; always quoting keeps column names like `group` legal."""
    return '"' + name.replace('"', '""') + '"'


class SQLiteJSONSchemaToSQL(JSONSchemaToSQL):
    """JSON Schema -> SQLite column types.

    SQLite has type affinity, not types, so the declared type only has to give each column the
    right affinity: INTEGER for integers (64-bit, so Qualys ids above 2^53 stay exact), REAL for
    numbers, BOOLEAN (numeric affinity, stored 0/1) for booleans, and TEXT for everything else.
    Date-times stay the ISO text the tap sent; objects and arrays are JSON text that
    ``json_extract``/``json_each`` read directly. Decimal strings stay TEXT to keep every digit.
    """

    def __init__(self, *, max_varchar_length: int | None = None) -> None:
        super().__init__(max_varchar_length=max_varchar_length)
        self.register_type_handler("string", sa.types.TEXT)
        self.register_type_handler("integer", sa.types.INTEGER)
        self.register_type_handler("number", sa.types.REAL)
        self.register_type_handler("boolean", sa.types.BOOLEAN)
        self.register_type_handler("object", sa.types.TEXT)
        self.register_type_handler("array", sa.types.TEXT)
        for fmt in ("date-time", "date", "time", "uuid", "x-singer.decimal"):
            self.register_format_handler(fmt, sa.types.TEXT)
        self.fallback_type = sa.types.TEXT

    @override
    def handle_multiple_types(self, types: Sequence[str]) -> sa.types.TypeEngine[t.Any]:
        return sa.types.TEXT()


class SQLiteConnector(SQLConnector):
    """Connector for one SQLite database file.

    The file path is resolved by the target (it differs per run in point-in-time mode), so it is
    passed in rather than read from the config.
    """

    allow_column_add = True
    allow_column_rename = True
    # SQLite stores any value in any column, so a type change in a later SCHEMA never needs DDL.
    allow_column_alter = False
    allow_merge_upsert = True
    allow_overwrite = True
    allow_temp_tables = False
    jsonschema_to_sql_converter = SQLiteJSONSchemaToSQL

    def __init__(
        self, config: dict[str, t.Any] | None = None, database_path: str | None = None
    ) -> None:
        config = config or {}
        self.database_path = str(database_path or config.get("database", "output/qualys.db"))
        super().__init__(config, sqlalchemy_url=f"sqlite:///{self.database_path}")

    @property
    def busy_timeout(self) -> float:
        """Seconds to wait for another process's lock before failing."""
        return float(self.config.get("busy_timeout_seconds", DEFAULT_BUSY_TIMEOUT_SECONDS))

    @override
    def create_engine(self) -> sa.Engine:
        Path(self.database_path).parent.mkdir(parents=True, exist_ok=True)
        # A URL object, not the URL string: parsing the string would percent-decode the path and
        # read a `?` in it as query parameters (`q?mode=memory.db` would be an in-memory database).
        # ":memory:" alone is SQLite's in-memory database, where every row would vanish while
        # STATE moves on; "./:memory:" is the file the setting names.
        database = "./:memory:" if self.database_path == ":memory:" else self.database_path
        engine = sa.create_engine(
            sa.engine.URL.create("sqlite", database=database),
            connect_args={"timeout": self.busy_timeout},
        )
        sa.event.listen(engine, "connect", self._configure_connection)
        return engine

    def _configure_connection(self, dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # WAL lets readers (dashboards, the next pipeline step) query while we write.
        # synchronous=FULL syncs the WAL in every commit, so the rows behind a STATE we emit are
        # on disk: with NORMAL a crash or I/O error after the STATE lost them, and the resumed run
        # skipped them for good. One fsync per batch of thousands of rows costs nothing measurable
        # (benchmark row 2). busy_timeout turns a competing writer into a bounded wait.
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        max_mb = self.config.get("max_database_size_mb")
        if max_mb:
            page_size = cursor.execute("PRAGMA page_size").fetchone()[0]
            max_pages = max(1, int(float(max_mb) * 1024 * 1024) // page_size)
            cursor.execute(f"PRAGMA max_page_count = {max_pages}")
        cursor.close()

    def raw_connection(self) -> sa.PoolProxiedConnection:
        """A pooled DB-API connection, for the executemany hot path and PRAGMAs."""
        return sdk.engine(self).raw_connection()

    @override
    def prepare_column(
        self,
        full_table_name: str | FullyQualifiedName,
        column_name: str,
        sql_type: sa.types.TypeEngine[t.Any],
    ) -> None:
        # Only ADD COLUMN: an existing column takes any value, so type changes need no DDL.
        if not self.column_exists(full_table_name, column_name):
            ddl = self.get_column_add_ddl(full_table_name, column_name, sql_type)
            with sdk.engine(self).begin() as conn:
                conn.execute(ddl)

    @override
    def prepare_primary_key(
        self,
        *,
        full_table_name: str | FullyQualifiedName,
        primary_keys: Sequence[str],
    ) -> None:
        # ON CONFLICT(keys) needs a PRIMARY KEY or UNIQUE index on exactly those columns. A table
        # created by an earlier run has it; one created elsewhere (or keys changed) gets an index.
        if not primary_keys or self._has_unique_on(full_table_name, primary_keys):
            return
        _, _, table = self.parse_full_table_name(full_table_name)
        index = quote_identifier(f"ux_{table}_{'_'.join(primary_keys)}")
        columns = ", ".join(quote_identifier(k) for k in primary_keys)
        ddl = f"CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {quote_identifier(table)} ({columns})"
        with sdk.engine(self).begin() as conn:
            conn.exec_driver_sql(ddl)

    def _has_unique_on(
        self, full_table_name: str | FullyQualifiedName, columns: Sequence[str]
    ) -> bool:
        _, _, table = self.parse_full_table_name(full_table_name)
        inspector = sa.inspect(sdk.engine(self))
        wanted = set(columns)
        pk = inspector.get_pk_constraint(table).get("constrained_columns") or []
        if set(pk) == wanted:
            return True
        return any(
            set(ix["column_names"]) == wanted
            for ix in inspector.get_indexes(table)
            if ix.get("unique")
        )

    def upsert_sql(self, table: str, columns: Sequence[str], keys: Sequence[str]) -> str:
        """``INSERT ... ON CONFLICT(keys) DO UPDATE``: a replayed record replaces, never duplicates.

        Only quoted identifiers are interpolated; values are bound as ``?`` parameters.
        """
        quoted = [quote_identifier(c) for c in columns]
        placeholders = ", ".join("?" * len(columns))
        head = (
            f"INSERT INTO {quote_identifier(table)} ({', '.join(quoted)}) "  # noqa: S608
            f"VALUES ({placeholders}) "
            f"ON CONFLICT ({', '.join(quote_identifier(k) for k in keys)}) "
        )
        updates = [
            f"{q} = excluded.{q}" for c, q in zip(columns, quoted, strict=True) if c not in keys
        ]
        return head + ("DO UPDATE SET " + ", ".join(updates) if updates else "DO NOTHING")

    def checkpoint_and_close(self, *, journal_mode: str | None = None) -> None:
        """Fold the WAL into the main file and close every pooled connection.

        Closing the last connection deletes the -wal and -shm files, so the database is one
        self-contained file afterwards (needed before renaming, copying or uploading it).
        """
        if not sdk.has_engine(self):
            return
        conn = self.raw_connection()
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if journal_mode:
                conn.execute(f"PRAGMA journal_mode = {journal_mode}")
        finally:
            conn.close()
        sdk.dispose_engine(self)
