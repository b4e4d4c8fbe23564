"""SQLite sink: one upsert transaction per batch, executemany on a prepared statement."""

from __future__ import annotations

import decimal
import operator
import sqlite3
import sys
import typing as t

import sqlalchemy.exc
from singer_sdk.exceptions import InvalidJSONSchema, InvalidRecord

from target_qualys_sqlite import deletes
from target_qualys_sqlite.connector import SQLiteConnector
from target_qualys_sqlite.errors import TargetSQLiteError, explain_sqlite_error
from target_qualys_sqlite.rows import RowDecoder, compile_row_decoder, json_text
from target_qualys_sqlite.sdk import HookedSink, engine, source_key_properties
from target_qualys_sqlite.validation import CompiledSchemaValidator

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from singer_sdk.sinks.core import BaseJSONSchemaValidator
    from singer_sdk.sql.connector import FullyQualifiedName

    from target_qualys_sqlite.sdk import BatchFileEncoding


def _to_real(value: t.Any) -> t.Any:
    # sqlite3 cannot bind Decimal; the SDK's JSON parser produces them for BATCH files.
    return float(value) if isinstance(value, decimal.Decimal) else value


def _types_of(schema: dict[str, t.Any]) -> set[str]:
    types = schema.get("type", [])
    found = {types} if isinstance(types, str) else set(types)
    for sub in schema.get("anyOf", []):
        found |= _types_of(sub)
    return found


class SQLiteSink(HookedSink[SQLiteConnector]):
    """Upserts each batch on the stream's key properties.

    Per-record work is kept to the minimum: the SDK's property-name conforming and row padding are
    done once per schema (a column list and a list of value converters), not once per record.
    """

    connector_class = SQLiteConnector

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._validate_batch_files = False
        # Set by get_validator, which the SDK calls once while constructing the sink.
        self._schema_validator: BaseJSONSchemaValidator | None = None
        super().__init__(*args, **kwargs)
        properties: dict[str, dict[str, t.Any]] = self.schema["properties"]
        #: The stream declares ``_sdc_deleted_at``: it may send tombstones (deletes.py). The
        #: SDK strips ``_sdc_*`` properties without ``add_record_metadata``; this one is data
        #: here (live rows are null), so its column stays.
        self.takes_tombstones = deletes.DELETED_AT in self.original_schema.get("properties", {})
        if self.takes_tombstones and deletes.DELETED_AT not in properties:
            properties[deletes.DELETED_AT] = self.original_schema["properties"][deletes.DELETED_AT]
        self._source_keys: list[str] = list(properties)
        self._columns: list[str] = [self.conform_name(k, "column") for k in properties]
        self._get_all: Callable[[dict[str, t.Any]], tuple[t.Any, ...]] = (
            operator.itemgetter(*self._source_keys)
            if len(self._source_keys) > 1
            # itemgetter of one key returns the bare value, executemany needs a 1-tuple.
            else lambda record: (record[self._source_keys[0]],)
        )
        self._converters: list[tuple[str, Callable[[t.Any], t.Any]]] = []
        for key, sub in properties.items():
            types = _types_of(sub)
            if types & {"object", "array"}:
                self._converters.append((key, json_text))
            elif "number" in types:
                self._converters.append((key, _to_real))
        # Decodes a RECORD's raw JSON straight into a row, for the target's fastest path.
        self.row_decoder: RowDecoder | None = compile_row_decoder(
            self.schema, self.key_properties, validate=self._schema_validator is not None
        )

    @property
    @override
    def schema_name(self) -> str | None:
        # SQLite has no schemas; a "schema-table" stream name just becomes table "table".
        return None

    @override
    def get_validator(self) -> BaseJSONSchemaValidator | None:
        if not self.validate_schema:
            return None
        try:
            self._schema_validator = CompiledSchemaValidator(self.schema)
        except InvalidJSONSchema as exc:
            msg = f"stream '{self.stream_name}' has an invalid JSON schema: {exc}"
            raise TargetSQLiteError(msg) from exc
        return self._schema_validator

    @override
    def process_batch_files(self, encoding: BatchFileEncoding, files: Sequence[str]) -> None:
        # The SDK hands records read from BATCH files straight to process_batch, unvalidated;
        # they are held to the same schema as RECORD messages.
        self._validate_batch_files = True
        try:
            super().process_batch_files(encoding, files)
        finally:
            self._validate_batch_files = False

    @override
    def after_record(self, context: dict[str, t.Any]) -> None:
        # The SDK logs the whole context here, and the context holds the pending batch: at
        # DEBUG every record printed every queued record again (output quadratic in the batch
        # size, a gigabyte for a small sync). One short line per record instead.
        self.logger.debug(
            "Processed record: %d pending in the batch", len(context.get("records", ()))
        )

    @override
    def validate_record(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        # Replaces the SDK's version for two reasons: it logs a full traceback for every invalid
        # record, and it parses date-time strings into datetime objects that we would only format
        # back into the same ISO text. Date-times are still checked by the validator.
        if self._schema_validator is not None:
            try:
                self._schema_validator.validate(record)
            except InvalidRecord as exc:
                if self.fail_on_record_validation_exception:
                    key = {k: record.get(k) for k in source_key_properties(self)}
                    msg = (
                        f"record {key} for stream '{self.stream_name}' violates its schema: "
                        f"{exc.error_message}"
                    )
                    raise TargetSQLiteError(msg) from exc
                self.logger.warning("Invalid record: %s", exc.error_message)
        return record

    @override
    def setup(self) -> None:
        # Upserting needs a key, and a table without one would silently duplicate rows on every
        # replay; refuse before any DDL so the database is left exactly as it was.
        keys = list(source_key_properties(self))
        if not keys:
            msg = (
                f"stream '{self.stream_name}' has no key_properties: target-sqlite upserts on "
                "the key, so its SCHEMA message must declare key_properties"
            )
            raise TargetSQLiteError(msg)
        missing = [k for k in keys if k not in self.schema["properties"]]
        if missing:
            msg = f"stream '{self.stream_name}': key properties {missing} are not in its schema"
            raise TargetSQLiteError(msg)
        try:
            super().setup()
        except sqlalchemy.exc.DBAPIError as exc:
            raise self._error(exc) from exc
        self._sql = self.connector.upsert_sql(self.table_name, self._columns, self.key_properties)

    def apply_tombstones(
        self, tombstones: Sequence[dict[str, t.Any]], cascade: dict[str, str]
    ) -> tuple[int, int]:
        """Soft- or hard-delete the rows the tombstones name, and their children in ``cascade``
        (child table -> column holding this stream's key), in one transaction.

        Returns (rows deleted or marked here, child rows). The caller drained every pending
        upsert of these tables first, so a delete never precedes the row it deletes.
        """
        keys = list(source_key_properties(self))
        columns = list(self.key_properties)
        hard = bool(self.config.get("hard_delete"))
        rows = [
            {
                **{c: tomb[k] for k, c in zip(keys, columns, strict=True)},
                deletes.DELETED_AT: tomb[deletes.DELETED_AT],
            }
            for tomb in tombstones
        ]
        try:
            with engine(self.connector).begin() as conn:
                table = deletes.table_of(conn, self.table_name)
                if table is None:
                    return 0, 0
                children_tables = {
                    self.conform_name(name, "table"): column for name, column in cascade.items()
                }
                changed, children, left = deletes.apply_with_cascade(
                    conn, table, columns, rows, children_tables, hard_delete=hard
                )
        except (sqlite3.Error, sqlalchemy.exc.DBAPIError) as exc:
            raise self._error(exc) from exc
        for child_name in left:
            self.logger.warning(
                "stream '%s': table %s has no %s column; its rows of deleted %s are left "
                "as they are",
                self.stream_name,
                child_name,
                deletes.DELETED_AT,
                self.stream_name,
            )
        return changed, children

    def _error(self, exc: BaseException) -> TargetSQLiteError:
        explanation = explain_sqlite_error(
            exc, self.connector.database_path, self.connector.busy_timeout
        ) or str(exc)
        return TargetSQLiteError(f"stream '{self.stream_name}': {explanation}")

    def _rows(
        self, records: Iterable[dict[str, t.Any] | tuple[t.Any, ...]]
    ) -> list[tuple[t.Any, ...]]:
        get_all = self._get_all
        keys = self._source_keys
        converters = self._converters
        rows = []
        for record in records:
            if isinstance(record, tuple):  # already a row (RowDecoder)
                rows.append(record)
                continue
            for key, convert in converters:
                value = record.get(key)
                if value is not None:
                    record[key] = convert(value)
            try:
                # itemgetter builds the row in C; taps that omit null fields take the slow path.
                rows.append(get_all(record))
            except KeyError:
                rows.append(tuple(map(record.get, keys)))
        return rows

    @override
    def bulk_insert_records(
        self,
        full_table_name: str | FullyQualifiedName,
        schema: dict[str, t.Any],
        records: Iterable[dict[str, t.Any]],
    ) -> int | None:
        if self._validate_batch_files:
            records = [self.validate_record(record) for record in records]
        rows = self._rows(records)
        if not rows:
            return 0
        # One transaction per batch: BEGIN IMMEDIATE takes the write lock up front (so a competing
        # writer shows up as "locked" before any work), and any failure rolls the whole batch back.
        conn = self.connector.raw_connection()
        try:
            cursor = conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                cursor.executemany(self._sql, rows)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        except (sqlite3.Error, OverflowError) as exc:
            raise self._error(exc) from exc
        finally:
            conn.close()
        return len(rows)
