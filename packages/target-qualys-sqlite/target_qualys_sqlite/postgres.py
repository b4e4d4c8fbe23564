"""Postgres mode: connector, COPY encoding and the sink that upserts each batch from a temp table.

Why this shape (measured, see the README's "Postgres" section): the stock loader spends its CPU
in Python per value (validation, per-row conversion, SQLAlchemy parameter binding). Here the
loader does almost nothing per record: each RECORD's JSON payload, exactly as the tap wrote it,
is appended to a binary COPY buffer as one ``text`` value. Postgres then does the per-value work
in C: one COPY into a temporary table, and one ``INSERT ... SELECT ... ON CONFLICT (keys) DO
UPDATE`` that parses each document once (``json_to_record``) into the column types of the table
(``timestamptz``, ``bigint``, ``jsonb``...).
"""

from __future__ import annotations

import functools
import queue
import re
import struct
import sys
import threading
import typing as t
from concurrent.futures import Future

import msgspec
import sqlalchemy as sa
from singer_sdk.sql.connector import JSONSchemaToSQL
from sqlalchemy.dialects import postgresql

from target_qualys_sqlite import deletes, sdk
from target_qualys_sqlite.errors import TargetSQLiteError
from target_qualys_sqlite.sdk import HookedSink, source_key_properties
from target_qualys_sqlite.validation import CompiledSchemaValidator

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from singer_sdk.sinks.core import BaseJSONSchemaValidator
    from singer_sdk.sql.connector import FullyQualifiedName

DELETED_AT = "_sdc_deleted_at"
DEFAULT_BATCH_SIZE_ROWS = 100_000
DEFAULT_BATCH_SIZE_BYTES = 32 * 1024 * 1024

# --- binary COPY encoding -----------------------------------------------------------------------

# PGCOPY signature, flags (none), header extension length (none); a trailer of field count -1.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
COPY_TRAILER = struct.pack("!h", -1)
# One field per tuple, then the field length and the JSON text (a ``text`` value in binary form).
_tuple_head = struct.Struct("!hi").pack
# A JSON escape of NUL (\u0000), not preceded by an escaped backslash (an even run of them):
# Postgres text and jsonb cannot hold NUL, so it becomes U+FFFD as with the stock loader's
# sanitize_null_text_characters.
_ESCAPED_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")
_DELETED_NULL = re.compile(rb'"_sdc_deleted_at"\s*:\s*null')
_json_encoder = msgspec.json.Encoder(decimal_format="number")


def sanitize_json(document: bytes) -> bytes:
    """JSON text with every escaped NUL character replaced by U+FFFD, as jsonb requires."""
    if b"\\u0000" not in document:
        return document
    return _ESCAPED_NUL.sub(rb"\1\\ufffd", document)


def copy_tuple(document: bytes) -> bytes:
    """One tuple of a binary COPY into a table of one ``text`` column: the document as is.

    Staged as text, not jsonb: each document is parsed once, by the upsert's ``json_to_record``
    straight into the table's column types (measured: a jsonb stage parses it twice, into jsonb
    and then out of it, and loads the postures 15-25 % slower).
    """
    document = sanitize_json(document)
    return _tuple_head(1, len(document)) + document


def json_document(record: dict[str, t.Any]) -> bytes:
    """A record the SDK parsed (stream maps, the generic path) back as JSON text."""
    return _json_encoder.encode(record)


def is_tombstone(document: bytes) -> bool:
    """Whether a record may carry a non-null `_sdc_deleted_at` (a false positive costs a query)."""
    return b'"_sdc_deleted_at"' in document and _DELETED_NULL.search(document) is None


# --- SQL helpers --------------------------------------------------------------------------------


def quote(name: str) -> str:
    """A quoted Postgres identifier; only names quoted here are ever put into SQL text."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A quoted Postgres string literal (for JSON keys in ``doc->'key'``)."""
    return "'" + text.replace("'", "''") + "'"


#: Identifiers are cut to 63 bytes, and json_to_record then ignores the document's longer key.
MAX_RECORD_KEY_BYTES = 63


def jsonb_field(document: str, key: str, column_type: str) -> str:
    """Field ``key`` of the jsonb ``document`` as ``column_type``, for the keys that
    ``json_to_record`` cannot take (longer than ``MAX_RECORD_KEY_BYTES``). A JSON null is NULL."""
    if column_type in {"jsonb", "json"}:
        return f"NULLIF({document}->{literal(key)}, 'null')::{column_type}"
    if column_type == "text":
        return f"{document}->>{literal(key)}"
    return f"({document}->>{literal(key)})::{column_type}"


def record_definition(fields: Sequence[tuple[str, str]]) -> str:
    """The column definition list of ``json_to_record(doc) AS x(...)`` for (JSON key, type) pairs.

    Each field of the document becomes a value of its column's type, read by the type's own input
    function: ISO 8601 text to ``timestamptz``, digits of any length to ``bigint``/``numeric``
    exactly; ``jsonb`` columns take the JSON value itself, a JSON null or an absent key is NULL.
    Keys are quoted as the tap wrote them (``policyId``), so the names the table conformed them to
    (``policy_id``) are never guessed back.
    """
    return ", ".join(f"{quote(key)} {column_type}" for key, column_type in fields)


_STRING_FORMATS: dict[str, t.Callable[[], sa.types.TypeEngine[t.Any]]] = {
    "date-time": lambda: postgresql.TIMESTAMP(timezone=True),
    "date": sa.types.DATE,
    "time": sa.types.TIME,
    "x-singer.decimal": sa.types.NUMERIC,
}


def _string_type(schema: dict[str, t.Any]) -> sa.types.TypeEngine[t.Any]:
    make = _STRING_FORMATS.get(schema.get("format", ""))
    return make() if make is not None else sa.types.TEXT()


class PostgresJSONSchemaToSQL(JSONSchemaToSQL):
    """JSON Schema -> Postgres column types: what a Postgres user queries without casts.

    Date-times are ``timestamptz`` (the tap sends UTC with its offset), objects and arrays one
    ``jsonb`` value each, integers ``bigint`` (Qualys ids above 2^53 stay exact), numbers
    ``numeric`` (every digit the tap sent), strings ``text``.
    """

    def __init__(self, *, max_varchar_length: int | None = None) -> None:
        super().__init__(max_varchar_length=max_varchar_length)
        # One handler for strings with and without a format: the SDK consults format handlers
        # only for `"type": "string"`, not for `["string", "null"]`.
        self.register_type_handler("string", _string_type)
        self.register_type_handler("integer", sa.types.BIGINT)
        self.register_type_handler("number", sa.types.NUMERIC)
        self.register_type_handler("boolean", sa.types.BOOLEAN)
        self.register_type_handler("object", postgresql.JSONB)
        self.register_type_handler("array", postgresql.JSONB)
        self.fallback_type = sa.types.TEXT

    @override
    def handle_multiple_types(self, types: Sequence[str]) -> sa.types.TypeEngine[t.Any]:
        # A value that may be an object or array as well as a scalar keeps its JSON form.
        if {"object", "array"} & set(types):
            return postgresql.JSONB()
        return sa.types.TEXT()


def connection_url(config: dict[str, t.Any]) -> sa.engine.URL:
    """The SQLAlchemy URL from `sqlalchemy_url` or the separate settings, driver psycopg 3."""
    if config.get("sqlalchemy_url"):
        url = sa.engine.make_url(config["sqlalchemy_url"])
        # postgresql:// and postgres:// mean this loader's driver, psycopg 3.
        if url.drivername in {"postgresql", "postgres"}:
            url = url.set(drivername="postgresql+psycopg")
        return url
    return sa.engine.URL.create(
        "postgresql+psycopg",
        username=config.get("user"),
        password=config.get("password"),
        host=config.get("host"),
        port=int(config["port"]) if config.get("port") else None,
        database=config.get("database"),
    )


def where(url: sa.engine.URL) -> str:
    """The server and user of a URL for an error message: never the password."""
    host = url.host or "localhost"
    port = f":{url.port}" if url.port else ""
    return f"{url.username or '(default user)'}@{host}{port}/{url.database or ''}"


def explain_postgres_error(exc: BaseException, url: sa.engine.URL) -> str:
    """One line saying what failed and where, from a psycopg or SQLAlchemy error.

    The driver's message is used without SQLAlchemy's wrapper, which would repeat the statement
    and its parameters; neither psycopg nor this message contains the password.
    """
    import psycopg  # noqa: PLC0415 - the postgres extra; only this mode imports it

    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    text = " ".join(str(orig).split())
    if isinstance(orig, psycopg.OperationalError) and "connection" in text.lower():
        return f"cannot connect to Postgres as {where(url)}: {text}"
    return f"Postgres error ({where(url)}): {text}"


class BackgroundLoads:
    """Runs the batches' loads on one background thread, in order, one at a time.

    While Postgres copies and merges one batch, the main thread reads and encodes the next: a tap
    whose pipe is full would otherwise wait for every COPY and upsert. At most one batch loads
    while one is built, so memory stays bounded by twice ``batch_size_bytes``. ``wait`` is the
    barrier before anything that must follow the loads (a STATE, tombstones, the end of the run);
    a load's error is raised there or at the next ``submit``, so no STATE follows a failed batch.
    The thread is a daemon: a run stopped by a signal exits at once, and Postgres rolls back the
    transaction of the connection that dies with it. Only the main thread submits and waits (the
    target drains its sinks one at a time: ``max_parallelism`` is 1).
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], Future[None]]] = queue.SimpleQueue()
        self._last: Future[None] | None = None
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], None]) -> None:
        """Start ``job`` once the previous one has finished (raising that one's error)."""
        self.wait()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._work, name="target-qualys-postgres-loads", daemon=True
            )
            self._thread.start()
        future: Future[None] = Future()
        self._last = future
        self._jobs.put((job, future))

    def wait(self) -> None:
        """Return once every submitted load has committed; raise the error of one that failed."""
        last, self._last = self._last, None
        if last is not None:
            last.result()

    def _work(self) -> None:
        while True:
            job, future = self._jobs.get()
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                future.set_exception(exc)
            else:
                future.set_result(None)


class PostgresConnector(sdk.PlainConnector):
    """Connector for one Postgres database through psycopg 3."""

    allow_column_add = True
    allow_column_rename = False
    # The upsert casts each field to the column's actual type, so an existing column of another
    # type (timestamp without time zone from an earlier loader, say) needs no DDL.
    allow_column_alter = False
    allow_merge_upsert = True
    allow_overwrite = False
    allow_temp_tables = True
    jsonschema_to_sql_converter = PostgresJSONSchemaToSQL

    def __init__(self, config: dict[str, t.Any] | None = None) -> None:
        config = config or {}
        self.url = connection_url(config)
        #: Every sink's batch loads, in the order they were queued (BackgroundLoads).
        self.loads = BackgroundLoads()
        super().__init__(config, sqlalchemy_url=self.url.render_as_string(hide_password=False))

    @override
    def get_sqlalchemy_url(self, config: dict[str, t.Any]) -> str:
        return self.url.render_as_string(hide_password=False)

    @override
    def create_engine(self) -> sa.Engine:
        return sa.create_engine(
            self.url,
            # A server that does not answer fails the run in seconds, not after the OS's timeout.
            connect_args={"connect_timeout": 10, "application_name": "target-qualys-postgres"},
            # Never log statements or parameters (records may hold secrets of the scanned hosts).
            echo=False,
        )

    @override
    def create_empty_table(
        self,
        full_table_name: str | FullyQualifiedName,
        schema: dict[str, t.Any],
        primary_keys: Sequence[str] | None = None,
        partition_keys: list[str] | None = None,
        as_temp_table: bool = False,
    ) -> None:
        # The SDK's, with autoincrement off: SQLAlchemy would make an integer primary key a
        # serial, and a sequence default on a key the tap always sends only misleads.
        _, schema_name, table_name = self.parse_full_table_name(full_table_name)
        keys = [k for k in primary_keys or () if k in schema["properties"]]
        columns = [
            sa.Column(name, self.to_sql_type(sub), autoincrement=False)
            for name, sub in schema["properties"].items()
        ]
        constraints = [sa.PrimaryKeyConstraint(*keys)] if keys else []
        table = sa.Table(table_name, sa.MetaData(schema=schema_name), *columns, *constraints)
        table.create(sdk.engine(self))

    def raw_connection(self) -> sa.PoolProxiedConnection:
        """A pooled DB-API (psycopg) connection, for COPY and the batch's statements."""
        return sdk.engine(self).raw_connection()

    def column_types(self, schema: str | None, table: str) -> dict[str, str]:
        """Column name -> its type as Postgres writes it (``format_type``), in table order."""
        query = sa.text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = CAST(:table AS regclass) AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum"
        )
        name = f"{quote(schema)}.{quote(table)}" if schema else quote(table)
        with sdk.engine(self).connect() as conn:
            return {str(row[0]): str(row[1]) for row in conn.execute(query, {"table": name})}

    @override
    def prepare_primary_key(
        self,
        *,
        full_table_name: str | FullyQualifiedName,
        primary_keys: Sequence[str],
    ) -> None:
        # ON CONFLICT (keys) needs a primary key or unique index on exactly those columns. A table
        # this loader created has one; a table created elsewhere gets a unique index.
        if not primary_keys:
            return
        _, schema, table = self.parse_full_table_name(full_table_name)
        inspector = sa.inspect(sdk.engine(self))
        wanted = set(primary_keys)
        pk = inspector.get_pk_constraint(table, schema=schema).get("constrained_columns") or []
        if set(pk) == wanted or any(
            set(ix["column_names"]) == wanted
            for ix in inspector.get_indexes(table, schema=schema)
            if ix.get("unique")
        ):
            return
        index = quote(f"ux_{table}_{'_'.join(primary_keys)}"[:63])
        target = f"{quote(schema)}.{quote(table)}" if schema else quote(table)
        columns = ", ".join(quote(k) for k in primary_keys)
        with sdk.engine(self).begin() as conn:
            conn.exec_driver_sql(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {target} ({columns})"
            )


# The batch's rows before they are merged: one per connection, emptied by every commit.
_STAGE = "target_qualys_batch"
_CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (doc text NOT NULL) ON COMMIT DELETE ROWS"
)


class PostgresSink(HookedSink[PostgresConnector]):
    """Loads each batch with one COPY and one upsert, in one transaction.

    The pending batch is the COPY payload itself (a bytearray), so memory is bounded by
    ``batch_size_bytes`` whatever the records' shape, and no per-record Python object is kept.
    """

    connector_class = PostgresConnector

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._schema_validator: BaseJSONSchemaValidator | None = None
        super().__init__(*args, **kwargs)
        # The SDK drops every `_sdc_*` property from the schema; the delete contract's
        # _sdc_deleted_at is a real column here (null for live rows).
        deleted_at = self.original_schema.get("properties", {}).get(DELETED_AT)
        if deleted_at is not None:
            self.schema["properties"][DELETED_AT] = deleted_at
        #: The stream may send tombstones: the target queues them and calls apply_tombstones.
        self.takes_tombstones = deleted_at is not None
        self.payload = bytearray()
        """The binary COPY tuples of the pending batch."""
        self.has_tombstones = False
        self.max_bytes = int(self.config.get("batch_size_bytes") or DEFAULT_BATCH_SIZE_BYTES)
        self._upsert = ""
        self._apply_tombstones = ""
        self._batch_keys: set[tuple[t.Any, ...] | None] = set()
        keys = list(source_key_properties(self))
        key_type = msgspec.defstruct(
            "Key",
            [(f"k{i}", t.Any) for i in range(len(keys))],
            rename={f"k{i}": key for i, key in enumerate(keys)},
            gc=False,
        )
        self._decode_key = msgspec.json.Decoder(key_type).decode

    @property
    @override
    def max_size(self) -> int:
        return int(self.config.get("batch_size_rows") or DEFAULT_BATCH_SIZE_ROWS)

    @override
    def get_validator(self) -> BaseJSONSchemaValidator | None:
        if not self.validate_schema:
            return None
        self._schema_validator = CompiledSchemaValidator(self.schema)
        return self._schema_validator

    @property
    def validates(self) -> bool:
        """Whether records are checked against the schema (`validate_records`)."""
        return self._schema_validator is not None

    @override
    def validate_record(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        # As in SQLite mode: one line naming the record's key, date-times left as the tap's text.
        if self._schema_validator is not None:
            try:
                self._schema_validator.validate(record)
            except Exception as exc:
                if self.fail_on_record_validation_exception:
                    key = {k: record.get(k) for k in source_key_properties(self)}
                    msg = f"record {key} for stream '{self.stream_name}' violates its schema: {exc}"
                    raise TargetSQLiteError(msg) from exc
                self.logger.warning("Invalid record: %s", exc)
        return record

    @override
    def setup(self) -> None:
        keys = list(source_key_properties(self))
        if not keys:
            msg = (
                f"stream '{self.stream_name}' has no key_properties: target-qualys-postgres "
                "upserts on the key, so its SCHEMA message must declare key_properties"
            )
            raise TargetSQLiteError(msg)
        missing = [k for k in keys if k not in self.schema["properties"]]
        if missing:
            msg = f"stream '{self.stream_name}': key properties {missing} are not in its schema"
            raise TargetSQLiteError(msg)
        # Shards (parallel runs with id_min/id_max) start their loaders at once: two CREATE
        # TABLE of the same table would race (a duplicate pg_type row). One at a time per server.
        with sdk.engine(self.connector).connect() as lock:
            lock.exec_driver_sql("SELECT pg_advisory_lock(hashtext('target-qualys-postgres'))")
            try:
                super().setup()
            finally:
                lock.exec_driver_sql(
                    "SELECT pg_advisory_unlock(hashtext('target-qualys-postgres'))"
                )
        self._prepare_statements()

    def _prepare_statements(self) -> None:
        """The batch's upsert (and tombstone) statements, from the table as it now is."""
        types = self.connector.column_types(self.schema_name, self.table_name)
        source = {self.conform_name(k, "column"): k for k in self.schema["properties"]}
        columns = [c for c in source if c in types]
        keys = list(self.key_properties)
        table = f"{quote(self.schema_name)}." if self.schema_name else ""
        table += quote(self.table_name)

        tombstones = DELETED_AT in source.values()
        deleted_at = next((c for c, k in source.items() if k == DELETED_AT), "")
        # Each staged document parsed once, into the table's column types (record_definition);
        # a tombstone's time is read even where the table has no column for it.
        # Two exceptions: a key too long for an identifier is read from the jsonb document, and a
        # fixed-length column (varchar(n) of a table made by another loader) is read as text and
        # cast explicitly, which cuts a longer value as the former loader did instead of failing.
        fields: list[tuple[str, str]] = []
        expressions: dict[str, str] = {}
        for c in columns:
            key, column_type = source[c], types[c]
            if len(key.encode()) > MAX_RECORD_KEY_BYTES:
                expressions[c] = jsonb_field("d.doc::jsonb", key, column_type)
            elif column_type.startswith(("character varying(", "character(")):
                fields.append((key, "text"))
                expressions[c] = f"x.{quote(key)}::{column_type}"
            else:
                fields.append((key, column_type))
                expressions[c] = f"x.{quote(key)}"
        if tombstones and deleted_at not in types:
            fields.append((DELETED_AT, "timestamp with time zone"))
            expressions[deleted_at] = f"x.{quote(DELETED_AT)}"
        staged = f"{_STAGE} AS d, json_to_record(d.doc::json) AS x({record_definition(fields)})"

        # No key appears twice in a staged batch (add_document), so each row is merged once.
        live = f" WHERE {expressions[deleted_at]} IS NULL" if tombstones else ""
        updates = [f"{quote(c)} = EXCLUDED.{quote(c)}" for c in columns if c not in keys]
        self._upsert = (
            f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608
            f"SELECT {', '.join(expressions[c] for c in columns)} FROM {staged}{live} "
            f"ON CONFLICT ({', '.join(quote(k) for k in keys)}) "
            + ("DO UPDATE SET " + ", ".join(updates) if updates else "DO NOTHING")
        )
        self._apply_tombstones = ""
        if tombstones:
            # A tombstone (the delete contract): a soft delete sets only _sdc_deleted_at of an
            # existing live row (a replay keeps the first time), hard_delete removes the row.
            # Tombstones of a RECORD line are queued by the target (apply_tombstones, with the
            # cascade); this serves those that reach the batch itself (BATCH files).
            match = " AND ".join(f"t.{quote(k)} = {expressions[k]}" for k in keys)
            deleted = f"{expressions[deleted_at]} IS NOT NULL"
            if self.config.get("hard_delete"):
                self._apply_tombstones = (
                    f"DELETE FROM {table} AS t USING {staged} "  # noqa: S608
                    f"WHERE {deleted} AND {match}"
                )
            else:
                self._apply_tombstones = (
                    f"UPDATE {table} AS t SET {quote(deleted_at)} = "  # noqa: S608
                    f"{expressions[deleted_at]} FROM {staged} WHERE {deleted} AND {match} "
                    f"AND t.{quote(deleted_at)} IS NULL"
                )

    @override
    def activate_version(self, new_version: int) -> None:
        # The SDK's version would delete every row without a _sdc_table_version, which this loader
        # does not write: full-table streams are kept current by the upsert instead.
        self.logger.debug("ACTIVATE_VERSION %s ignored: rows are upserted", new_version)

    def add_document(self, document: bytes, *, tombstone: bool | None = None) -> None:
        """Queue one record's JSON text (the direct path: no parse, no Python objects).

        Only its key is decoded (msgspec skips the rest): a key already in the batch loads the
        batch first, so a staged batch never holds a key twice and records apply in order.
        ``ON CONFLICT DO UPDATE`` cannot update one row twice in a statement, and sorting a
        whole batch of documents to keep each key's last (DISTINCT ON) cost more than the COPY.
        ``tombstone``: whether the caller already knows (None: look).
        """
        try:
            key = msgspec.structs.astuple(self._decode_key(document))
        except msgspec.MsgspecError:
            key = None  # no key: Postgres rejects the row (NOT NULL primary key), one line
        if key in self._batch_keys:
            self.load_pending()
        self._batch_keys.add(key)
        self.payload += copy_tuple(document)
        if not self.has_tombstones and (
            tombstone if tombstone is not None else is_tombstone(document)
        ):
            self.has_tombstones = True

    @override
    def process_record(self, record: dict[str, t.Any], context: dict[str, t.Any]) -> None:
        # The SDK's generic path (stream maps, records it parsed): back to JSON, then as above.
        self.add_document(json_document(record))

    @override
    def process_batch(self, context: dict[str, t.Any]) -> None:
        records = context.get("records")
        if records is not None:  # BATCH files: records the SDK read, not queued here
            for record in records:
                self.add_document(json_document(record))
        self.load_pending()

    def load_pending(self) -> None:
        """Load the staged records now (a full batch, or before a key repeats)."""
        payload, tombstones = self.payload, self.has_tombstones
        self.payload, self.has_tombstones = bytearray(), False
        self._batch_keys = set()
        if payload:
            load = functools.partial(self.load, payload, tombstones=tombstones)
            self.connector.loads.submit(load)

    @override
    def bulk_insert_records(
        self,
        full_table_name: str | FullyQualifiedName,
        schema: dict[str, t.Any],
        records: Iterable[dict[str, t.Any]],
    ) -> int | None:
        for record in records:
            self.add_document(json_document(record))
        self.load_pending()
        return None

    def apply_tombstones(
        self, tombstones: Sequence[dict[str, t.Any]], cascade: dict[str, str]
    ) -> tuple[int, int]:
        """Soft- or hard-delete the rows the tombstones name, and their children in ``cascade``
        (child table -> column holding this stream's key), in one transaction.

        The same SQLAlchemy Core statements as SQLite mode (deletes.py); values bind as the tap
        sent them and Postgres casts them to the columns' types (psycopg sends text untyped).
        Returns (rows deleted or marked here, child rows). The target loaded every pending
        batch of these tables first, so a delete never precedes the row it deletes.
        """
        self.connector.loads.wait()
        keys = list(source_key_properties(self))
        columns = list(self.key_properties)
        hard = bool(self.config.get("hard_delete"))
        rows = [
            {
                **{c: tomb[k] for k, c in zip(keys, columns, strict=True)},
                DELETED_AT: tomb[DELETED_AT],
            }
            for tomb in tombstones
        ]
        try:
            with sdk.engine(self.connector).begin() as conn:
                table = deletes.table_of(conn, self.table_name, self.schema_name)
                if table is None:
                    return 0, 0
                children_tables = {
                    self.conform_name(name, "table"): column for name, column in cascade.items()
                }
                changed, children, left = deletes.apply_with_cascade(
                    conn,
                    table,
                    columns,
                    rows,
                    children_tables,
                    hard_delete=hard,
                    schema=self.schema_name,
                )
        except sa.exc.DBAPIError as exc:
            text = explain_postgres_error(exc, self.connector.url)
            msg = f"stream '{self.stream_name}': {text}; its deletes were rolled back"
            raise TargetSQLiteError(msg) from exc
        for child_name in left:
            self.logger.warning(
                "stream '%s': table %s has no %s column; its rows of deleted %s are left "
                "as they are",
                self.stream_name,
                child_name,
                DELETED_AT,
                self.stream_name,
            )
        return changed, children

    def load(self, payload: bytes | bytearray, *, tombstones: bool) -> None:
        """COPY the tuples into the stage, merge them into the table, commit: all or nothing."""
        if not payload:
            return
        conn = self.connector.raw_connection()
        try:
            dbapi = conn.driver_connection
            assert dbapi is not None
            with dbapi.cursor() as cursor:
                cursor.execute(_CREATE_STAGE)
                with cursor.copy(f"COPY {_STAGE} (doc) FROM STDIN (FORMAT binary)") as copy:
                    copy.write(COPY_HEADER)
                    # Large writes in slices: psycopg sends each as one CopyData message.
                    view = memoryview(payload)
                    for start in range(0, len(view), 1 << 20):
                        copy.write(view[start : start + (1 << 20)])
                    copy.write(COPY_TRAILER)
                cursor.execute(self._upsert)
                if tombstones and self._apply_tombstones:
                    cursor.execute(self._apply_tombstones)
            conn.commit()
        except BaseException as exc:
            conn.rollback()
            if isinstance(exc, Exception) and type(exc).__module__.startswith("psycopg"):
                text = explain_postgres_error(exc, self.connector.url)
                msg = f"stream '{self.stream_name}': {text}; the batch was rolled back"
                raise TargetSQLiteError(msg) from exc
            raise
        finally:
            conn.close()
