"""TargetPostgres: the bundled target's Postgres mode (executable target-qualys-postgres).

The same Singer handling as SQLite mode (target.py: msgspec reader, STATE emitted only after
every table committed, one-line errors, signals fail the run) with a Postgres sink that loads
each batch by COPY and one upsert (postgres.py).
"""

from __future__ import annotations

import sys
import typing as t

import msgspec
from singer_sdk import typing as th
from singer_sdk.helpers.capabilities import TargetCapabilities
from singer_sdk.sql import SQLTarget
from singer_sdk.target_base import Target

from target_qualys_sqlite import deletes, sdk
from target_qualys_sqlite.errors import TargetSQLiteError
from target_qualys_sqlite.postgres import (
    DEFAULT_BATCH_SIZE_BYTES,
    DEFAULT_BATCH_SIZE_ROWS,
    DELETED_AT,
    PostgresConnector,
    PostgresSink,
    explain_postgres_error,
    is_tombstone,
)
from target_qualys_sqlite.sdk import source_key_properties
from target_qualys_sqlite.target import CASCADE_DELETES, TargetSQLite

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    import sqlalchemy as sa
    from singer_sdk.helpers.capabilities import CapabilitiesEnum
    from singer_sdk.sinks.core import Sink

    from target_qualys_sqlite.reader import MsgspecSingerReader


class _UnroutedRecord(msgspec.Struct, tag_field="stream", tag=""):
    """The other member of the RECORD line union: a stream the direct path does not take."""


class TargetPostgres(TargetSQLite):
    """Loads Singer streams into Postgres: COPY per batch, upsert on each stream's keys."""

    name = "target-qualys-postgres"
    package_name = "target-qualys-sqlite"
    default_sink_class = PostgresSink  # type: ignore[assignment]
    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        *Target.capabilities,
        TargetCapabilities.TARGET_SCHEMA,
        TargetCapabilities.HARD_DELETE,
    ]
    # For the one-line error of a failed connection, which invoke reports from a classmethod.
    _url: t.ClassVar[sa.engine.URL | None] = None

    config_jsonschema = th.PropertiesList(
        th.Property(
            "sqlalchemy_url",
            th.StringType,
            secret=True,
            description=(
                "SQLAlchemy URL of the database (`postgresql://user:password@host:port/db`); "
                "if set, host, port, user, password and database are not used."
            ),
        ),
        th.Property("host", th.StringType, default="localhost", description="Server host."),
        th.Property("port", th.IntegerType, default=5432, description="Server port."),
        th.Property("user", th.StringType, description="Database user."),
        th.Property("password", th.StringType, secret=True, description="Database password."),
        th.Property("database", th.StringType, description="Database name."),
        th.Property(
            "default_target_schema",
            th.StringType,
            description="Schema of the tables (created if missing); Postgres's default if unset.",
        ),
        th.Property(
            "batch_size_rows",
            th.IntegerType,
            default=DEFAULT_BATCH_SIZE_ROWS,
            description="Load a stream's batch once it holds this many records.",
        ),
        th.Property(
            "batch_size_bytes",
            th.IntegerType,
            default=DEFAULT_BATCH_SIZE_BYTES,
            description=(
                "Load a stream's batch once its records' JSON reaches this many bytes; bounds "
                "the loader's memory whatever the records' size."
            ),
        ),
        th.Property(
            "validate_records",
            th.BooleanType,
            default=False,
            description=(
                "Check every record against its stream's schema before loading. Off by "
                "default: Postgres casts every value to its column's type and fails the batch on "
                "a value that does not fit, so a bad record is never loaded silently."
            ),
        ),
        th.Property(
            "hard_delete",
            th.BooleanType,
            default=False,
            description=(
                "Delete the row of a tombstone (a record with `_sdc_deleted_at`) instead of "
                "setting its `_sdc_deleted_at`."
            ),
        ),
        CASCADE_DELETES,
        th.Property(
            "state_checkpoint_seconds",
            th.NumberType,
            default=10,
            description=(
                "When the tap sends a new STATE, commit every table and emit that STATE if this "
                "many seconds passed since the last commit of all tables. 0: on every new STATE."
            ),
        ),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._postgres_connector: PostgresConnector | None = None
        # Streams whose RECORD lines are queued as they are: the type each decodes into -> sink.
        self._raw_takers: dict[type, PostgresSink] = {}

    @property
    @override
    def target_connector(self) -> PostgresConnector:  # type: ignore[override]
        if self._postgres_connector is None:
            self._postgres_connector = PostgresConnector(dict(self.config))
            TargetPostgres._url = self._postgres_connector.url
        return self._postgres_connector

    @override
    def after_schema_message(self) -> None:
        # The direct path of target.py, here without any decoding of the record: msgspec finds
        # the payload's bounds (msgspec.Raw) and the sink appends those bytes to its COPY buffer.
        # With validate_records the records take the dict path, where they are validated.
        self._direct_sinks = {}
        self._raw_takers = {}
        for stream_name, stream_maps in self.mapper.stream_maps.items():
            sink = self._direct_sink(stream_name, stream_maps)
            if sink is None:
                continue
            self._direct_sinks[stream_name] = (sink, sink.max_size)
            if isinstance(sink, PostgresSink) and not sink.validates and stream_name:
                message_type = msgspec.defstruct(
                    "RecordMessage",
                    [("type", t.Literal["RECORD"]), ("record", msgspec.Raw)],
                    tag_field="stream",
                    tag=stream_name,
                    gc=False,
                )
                self._raw_takers[message_type] = sink
        reader = t.cast("MsgspecSingerReader", self.message_reader)
        if self._raw_takers:
            message_types = (*self._raw_takers, _UnroutedRecord)
            self._line_decoder = msgspec.json.Decoder(t.Union[message_types])  # noqa: UP007
            reader.take_record_line = self._take_raw_line
        else:
            self._line_decoder = None
            reader.take_record_line = None

    def _take_raw_line(self, line: bytes | str) -> bool:
        """Queue a RECORD line's payload as it is, or return False for the usual way."""
        try:
            message = self._line_decoder.decode(line)  # type: ignore[union-attr]
        except msgspec.MsgspecError:
            return False
        sink = self._raw_takers.get(type(message))
        if sink is None:
            return False
        document = bytes(message.record)
        if not document.startswith(b"{"):
            return False  # not an object: the usual path fails with its own error
        tombstone = is_tombstone(document)
        if tombstone and sink.takes_tombstones:
            return False  # parsed as usual: take_record_message queues it (SQLite mode's way)
        if self._tombstones:
            self._flush_tombstones()
        sink.tally_record_read()
        sink.add_document(document, tombstone=tombstone)
        self._record_taken(sink, sink.max_size)
        return True

    @override
    def take_record_message(self, message_dict: dict[str, t.Any]) -> bool:
        # The dict path of a direct stream: as target.py's, except that `_sdc_deleted_at` stays
        # in the record (the SDK strips every `_sdc_*` field; a tombstone needs this one).
        # Tombstones wait, as in SQLite mode, until the next other message: then the pending
        # upserts of their table and of its cascade children load first, and the deletes commit
        # before any later STATE is emitted (TargetSQLite._flush_tombstones).
        stream = message_dict.get("stream")
        record = message_dict.get("record")
        if type(record) is dict and deletes.is_tombstone(record) and self._takes_tombstone(stream):
            self._queue_tombstone(stream, record)  # type: ignore[arg-type]
            return True
        if self._tombstones:
            self._flush_tombstones()
        direct = self._direct_sinks.get(stream)  # type: ignore[arg-type]
        if direct is None or type(record) is not dict:
            return False
        sink, max_size = direct
        assert isinstance(sink, PostgresSink)
        sink.validate_record(record)
        missing = [k for k in source_key_properties(sink) if k not in record]
        if missing and record.get(DELETED_AT) is None:
            msg = f"record of stream '{sink.stream_name}' lacks its key properties {missing}"
            raise TargetSQLiteError(msg)
        sink.tally_record_read()
        sink.process_record(record, {})
        self._record_taken(sink, max_size)
        return True

    @override
    def _record_taken(self, sink: Sink, max_size: int) -> None:
        sink.record_counter_metric.increment()
        if sink.current_size >= max_size or (
            isinstance(sink, PostgresSink) and len(sink.payload) >= sink.max_bytes
        ):
            self.drain_one(sink)
        self.drain_if_records_too_old()

    @override
    def hold_state(self, state: dict[str, t.Any]) -> bool:
        # The SDK emits a STATE after draining every sink: the drained batches load in the
        # background (BackgroundLoads), so the STATE waits until they have committed.
        self.target_connector.loads.wait()
        return False

    @override
    def process_endofpipe(self) -> None:
        # SQLTarget's: drain every sink (one committed transaction each), then emit the STATE.
        if self._tombstones:
            self._flush_tombstones()
        SQLTarget.process_endofpipe(self)
        if self._postgres_connector is not None:
            self._postgres_connector.loads.wait()
            sdk.dispose_engine(self._postgres_connector)
        self._finished = True

    @classmethod
    @override
    def driver_errors(cls) -> tuple[type[Exception], ...]:
        import psycopg  # noqa: PLC0415

        return (psycopg.Error,)

    @classmethod
    @override
    def explain_database_error(cls, exc: Exception) -> str:
        if cls._url is None:
            return " ".join(str(exc).split())
        return explain_postgres_error(exc, cls._url)
