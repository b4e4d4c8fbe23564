"""TargetSQLite: settings, the run's database file, and what happens once the run succeeded."""

from __future__ import annotations

import datetime
import gc
import logging
import signal
import sqlite3
import sys
import typing as t
from pathlib import Path

import msgspec
import sqlalchemy.exc
from singer_sdk import typing as th
from singer_sdk.exceptions import (
    InvalidJSONSchema,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
)
from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.sinks.core import Sink
from singer_sdk.target_base import Target

from target_qualys_sqlite import deletes, s3, snapshot
from target_qualys_sqlite.connector import DEFAULT_BUSY_TIMEOUT_SECONDS, SQLiteConnector
from target_qualys_sqlite.errors import Interrupted, TargetSQLiteError, explain_sqlite_error
from target_qualys_sqlite.meltano_numbers import numbers_from_strings
from target_qualys_sqlite.reader import MsgspecSingerReader
from target_qualys_sqlite.rows import Convert, RowDecoder
from target_qualys_sqlite.sdk import HookedTarget, queue_record, queue_row, source_key_properties
from target_qualys_sqlite.sink import SQLiteSink

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from types import FrameType

    from singer_sdk.helpers.capabilities import CapabilitiesEnum
    from singer_sdk.mapper import StreamMap

    from target_qualys_sqlite.sdk import ConfigInput


class _UnroutedRecord(msgspec.Struct, tag_field="stream", tag=""):
    """The other member of the RECORD line union when only one stream is decoded directly."""


#: The `cascade_deletes` setting, the same in both modes (target-qualys-postgres uses it too).
CASCADE_DELETES = th.Property(
    "cascade_deletes",
    th.ObjectType(additional_properties=th.ObjectType(additional_properties=th.StringType)),
    default=deletes.DEFAULT_CASCADE,
    description=(
        "When a tombstone (a RECORD with `_sdc_deleted_at`) deletes a row of the stream "
        "named here, also delete (`hard_delete`) or mark the rows of each child table "
        "whose column holds that row's key: `{stream: {child table: column}}`. `{}` "
        "turns cascading off."
    ),
)


class TargetSQLite(HookedTarget):
    """Loads Singer streams into a SQLite database, upserting on each stream's key properties."""

    # The plugin's name in meltano.yml (and so its TARGET_SQLITE_* settings), its logs and
    # --about; the distribution and executable are target-qualys-sqlite (PyPI's target-sqlite is
    # another loader).
    name = "target-sqlite"
    # The SDK reads the version from this distribution.
    package_name = "target-qualys-sqlite"
    default_sink_class = SQLiteSink
    # Class defaults: the SDK installs the signal handler before __init__ returns.
    _interrupted = False
    _published: Path | None = None
    message_reader_class = MsgspecSingerReader
    # No TARGET_SCHEMA: SQLite has no schemas to target.
    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        *Target.capabilities,
        PluginCapabilities.ACTIVATE_VERSION,
        PluginCapabilities.BATCH,
        TargetCapabilities.HARD_DELETE,
    ]

    config_jsonschema = th.PropertiesList(
        th.Property(
            "database",
            th.StringType,
            default="output/qualys.db",
            description=(
                "Path of the SQLite database file. With `point_in_time`, this path becomes a "
                "symlink to the newest successful snapshot."
            ),
        ),
        th.Property(
            "load_method",
            th.StringType,
            default="upsert",
            allowed_values=["upsert", "overwrite"],
            description=(
                "`upsert` inserts new rows and replaces rows whose key already exists, so a "
                "replayed record never duplicates. `overwrite` empties each table at its first "
                "SCHEMA message in the run, then upserts."
            ),
        ),
        th.Property(
            "point_in_time",
            th.BooleanType,
            default=False,
            description=(
                "Write each run to its own timestamped database in `snapshot_dir` and, only "
                "once the run has succeeded, atomically repoint `database` (a symlink) at it."
            ),
        ),
        th.Property(
            "snapshot_dir",
            th.StringType,
            description=(
                "Directory of the point-in-time snapshots "
                "(default: `snapshots/` next to `database`)."
            ),
        ),
        th.Property(
            "snapshot_from_latest",
            th.BooleanType,
            default=True,
            description=(
                "Start each snapshot from a copy of the current latest database, so incremental "
                "syncs still produce complete snapshots. Disable only for full-table syncs."
            ),
        ),
        CASCADE_DELETES,
        th.Property(
            "state_checkpoint_seconds",
            th.NumberType,
            default=10,
            description=(
                "When the tap sends a new STATE, commit every table and emit that STATE if this "
                "many seconds passed since the last commit of all tables, so a crash resumes "
                "from a recent bookmark instead of the previous run's. 0: on every new STATE. "
                "Not used with `point_in_time`, where STATE waits for the published snapshot."
            ),
        ),
        th.Property(
            "busy_timeout_seconds",
            th.NumberType,
            default=DEFAULT_BUSY_TIMEOUT_SECONDS,
            description=(
                "How long to wait for another process's lock on the database before failing."
            ),
        ),
        th.Property(
            "max_database_size_mb",
            th.NumberType,
            description=(
                "Refuse to grow the database beyond this size (SQLite `max_page_count`); the "
                "batch that would exceed it fails and is rolled back. Unlimited by default."
            ),
        ),
        th.Property(
            "s3_bucket",
            th.StringType,
            description=(
                "Upload the database to this bucket after a successful run (needs the `s3` "
                "extra). In point-in-time mode the snapshot file is uploaded."
            ),
        ),
        th.Property(
            "s3_prefix",
            th.StringType,
            default="",
            description="Key prefix for the upload; the object key is `<prefix>/<file name>`.",
        ),
        th.Property(
            "s3_endpoint_url",
            th.StringType,
            description="Endpoint of an S3-compatible server (MinIO, Ceph, ...); AWS if unset.",
        ),
        th.Property("aws_region", th.StringType, description="AWS region of the bucket."),
        th.Property(
            "aws_access_key_id",
            th.StringType,
            secret=True,
            description="Access key id; boto3's default credential chain if unset.",
        ),
        th.Property(
            "aws_secret_access_key",
            th.StringType,
            secret=True,
            description="Secret access key; boto3's default credential chain if unset.",
        ),
        th.Property(
            "aws_session_token",
            th.StringType,
            secret=True,
            description="Session token for temporary credentials.",
        ),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        if isinstance(kwargs.get("config"), dict):
            kwargs["config"] = numbers_from_strings(kwargs["config"], self.config_jsonschema)
        super().__init__(*args, **kwargs)
        # One SQLite file has one writer at a time: draining sinks in parallel threads would only
        # make them queue on the write lock.
        self.max_parallelism = 1
        self._snapshot: snapshot.Snapshot | None = None
        self._held_state: dict[str, t.Any] | None = None
        self._finished = False
        # Streams whose RECORD messages take the direct path: stream name -> (sink, batch size).
        self._direct_sinks: dict[str, tuple[Sink, int]] = {}
        # Of those, the streams whose RECORD lines are decoded straight into rows: the type each
        # such line decodes into -> (sink, batch size, struct fields -> row). See
        # _take_record_line.
        self._line_takers: dict[type, tuple[Sink, int, Convert]] = {}
        self._line_decoder: msgspec.json.Decoder[t.Any] | None = None
        self._sqlite_connector: SQLiteConnector | None = None
        # Tombstones waiting to be applied, per stream; see _flush_tombstones.
        self._tombstones: dict[str, list[dict[str, t.Any]]] = {}

    @property
    def database(self) -> Path:
        """The stable database path readers use."""
        return Path(self.config.get("database") or "output/qualys.db")

    @property
    def point_in_time(self) -> bool:
        """Whether each run writes its own snapshot file."""
        return bool(self.config.get("point_in_time"))

    @property
    @override
    def target_connector(self) -> SQLiteConnector:
        if self._sqlite_connector is None:
            self._sqlite_connector = SQLiteConnector(
                dict(self.config), database_path=str(self._run_database())
            )
        return self._sqlite_connector

    def _run_database(self) -> Path:
        """The file this run writes: the database itself, or a fresh partial snapshot."""
        if not self.point_in_time:
            return self.database
        snapshot_dir = Path(self.config.get("snapshot_dir") or self.database.parent / "snapshots")
        self._snapshot = snapshot.plan_snapshot(
            self.database, snapshot_dir, datetime.datetime.now(datetime.timezone.utc)
        )
        try:
            snapshot.start_snapshot(
                self._snapshot,
                from_latest=self.config.get("snapshot_from_latest", True),
                busy_timeout=float(
                    self.config.get("busy_timeout_seconds", DEFAULT_BUSY_TIMEOUT_SECONDS)
                ),
            )
        except sqlite3.Error as exc:
            msg = f"cannot copy {self.database} into a new snapshot: {exc}"
            raise TargetSQLiteError(msg) from exc
        self.logger.info("Writing point-in-time snapshot %s", self._snapshot.partial)
        return self._snapshot.partial

    @override
    def get_sink(
        self,
        stream_name: str,
        *,
        record: dict[str, t.Any] | None = None,
        schema: dict[str, t.Any] | None = None,
        key_properties: t.Sequence[str] | None = None,
    ) -> Sink:
        # The SDK drains a replaced sink only at the next full drain, possibly after the new sink
        # wrote newer versions of the same keys; draining it now keeps upserts in message order.
        if schema is not None and self._tombstones:
            self._flush_tombstones()
        if schema is not None and self.sink_exists(stream_name):
            self.drain_one(super().get_sink(stream_name))
        return super().get_sink(
            stream_name, record=record, schema=schema, key_properties=key_properties
        )

    @override
    def after_schema_message(self) -> None:
        # Sinks and stream maps change only here, so this is where the direct path is re-decided.
        self._direct_sinks = {}
        self._line_takers = {}
        for stream_name, stream_maps in self.mapper.stream_maps.items():
            sink = self._direct_sink(stream_name, stream_maps)
            if sink is not None:
                self._direct_sinks[stream_name] = (sink, sink.max_size)
                decoder: RowDecoder | None = getattr(sink, "row_decoder", None)
                if decoder is not None and stream_name != _UnroutedRecord.__struct_config__.tag:
                    message_type = msgspec.defstruct(
                        "RecordMessage",
                        [("type", t.Literal["RECORD"]), ("record", decoder.record_type)],
                        tag_field="stream",
                        tag=stream_name,
                        gc=False,
                    )
                    self._line_takers[message_type] = (sink, sink.max_size, decoder.convert)
        reader = t.cast("MsgspecSingerReader", self.message_reader)
        if self._line_takers:
            # Always a union: msgspec insists on the "stream" tag only for union members.
            message_types = (*self._line_takers, _UnroutedRecord)
            self._line_decoder = msgspec.json.Decoder(t.Union[message_types])  # noqa: UP007
            reader.take_record_line = self._take_record_line
        else:
            self._line_decoder = None
            reader.take_record_line = None

    def _direct_sink(self, stream_name: str, stream_maps: list[StreamMap]) -> Sink | None:
        """The stream's sink if its records may skip the SDK's generic dispatch, else None.

        Only when the SDK's dispatch would be an identity: one map that passes records through
        unchanged (no stream maps, no flattening), no `_sdc_*` metadata to add, no
        ``preprocess_record`` override, and no per-record debug log wanted.
        """
        if len(stream_maps) != 1:
            return None
        (stream_map,) = stream_maps
        if (
            type(stream_map) is not SameRecordTransform
            or stream_map.stream_alias != stream_name
            or stream_map.flattening_enabled
        ):
            return None
        if not self.sink_exists(stream_name):
            return None
        sink = self.get_sink(stream_name)
        if (
            sink.include_sdc_metadata_properties
            or type(sink).preprocess_record is not Sink.preprocess_record
            or sink.logger.isEnabledFor(logging.DEBUG)
        ):
            return None
        return sink

    @override
    def take_record_message(self, message_dict: dict[str, t.Any]) -> bool:
        # The SDK's generic dispatch (a copy of every record for the stream maps, sink look-ups
        # done twice, config and property reads per record) was the largest per-record cost left
        # besides parsing, validating and inserting (see benchmarks/target_sqlite.py). For a
        # stream where that dispatch is an identity (see _direct_sink) this makes the same sink
        # calls in the same order without the generic parts; anything else takes the SDK's path.
        # tests/target_sqlite/test_direct_path.py and test_sdk_privates.py fail if the SDK's
        # version changes shape (see sdk.py).
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
        queue_record(sink, record)
        self._record_taken(sink, max_size)
        return True

    def _take_record_line(self, line: bytes | str) -> bool:
        """The direct path for a RECORD line as read: queue its row, or return False.

        One msgspec decode, typed per stream from its schema (rows.py), parses the line and
        checks the record's types; the stream's conversion adds the other checks and makes the
        row. A line it does not accept (another message type or stream, a record it leaves to the
        generic path) returns False and so is parsed as usual and reaches
        take_record_message, which loads it or fails with the usual error. The sink calls
        are those of the direct path, minus the ones that are no-ops here (no ``_sdc_*`` columns
        to strip, keys checked by the decoder).
        """
        try:
            message = self._line_decoder.decode(line)  # type: ignore[union-attr]
        except msgspec.MsgspecError:
            return False
        taker = self._line_takers.get(type(message))
        if taker is None:
            return False
        if self._tombstones:
            self._flush_tombstones()
        sink, max_size, convert = taker
        row = convert(msgspec.structs.astuple(message.record))
        if row is None:
            return False
        queue_row(sink, row)
        self._record_taken(sink, max_size)
        return True

    def _takes_tombstone(self, stream: object) -> bool:
        """Whether ``stream`` loads into a sink of ours that declared ``_sdc_deleted_at``."""
        if not isinstance(stream, str) or not self.sink_exists(stream):
            return False
        return bool(getattr(self.get_sink(stream), "takes_tombstones", False))

    def _queue_tombstone(self, stream: str, record: dict[str, t.Any]) -> None:
        """Hold a tombstone until the next other message; apply a full batch at once."""
        sink = self.get_sink(stream)
        missing = [k for k in source_key_properties(sink) if record.get(k) is None]
        if missing:
            msg = f"stream '{stream}': a tombstone (_sdc_deleted_at set) without its key {missing}"
            raise TargetSQLiteError(msg)
        pending = self._tombstones.setdefault(stream, [])
        # Not tallied as a read record: the SDK would take the sink's batch as pending.
        pending.append(record)
        if len(pending) >= sink.max_size:
            self._flush_tombstones()

    def _flush_tombstones(self) -> None:
        """Apply the pending tombstones, after every pending upsert of the tables they reach.

        Called before any other RECORD, SCHEMA or STATE message and at the end of the input,
        so deletes keep their place in the message order and are committed before a STATE
        that follows them is emitted.
        """
        pending, self._tombstones = self._tombstones, {}
        cascade_map: dict[str, dict[str, str]] = self.config.get(
            "cascade_deletes", deletes.DEFAULT_CASCADE
        )
        for stream, tombstones in pending.items():
            sink = t.cast("SQLiteSink", self.get_sink(stream))
            cascade = dict(cascade_map.get(stream) or {})
            if cascade and len(sink.key_properties) != 1:
                self.logger.warning(
                    "cascade_deletes: stream '%s' has a composite key; its children are left",
                    stream,
                )
                cascade = {}
            for name in (stream, *cascade):
                if self.sink_exists(name):
                    other = self.get_sink(name)
                    if other.current_size:
                        self.drain_one(other)
            changed, children = sink.apply_tombstones(tombstones, cascade)
            self.logger.info(
                "stream '%s': %d tombstones, %d rows %s, %d child rows (%s)",
                stream,
                len(tombstones),
                changed,
                "deleted" if self.config.get("hard_delete") else "marked deleted",
                children,
                ", ".join(cascade) or "no cascade",
            )

    def _record_taken(self, sink: Sink, max_size: int) -> None:
        """What follows every queued record on the direct paths, as in the SDK's dispatch."""
        sink.record_counter_metric.increment()
        if sink.current_size >= max_size:
            self.logger.info(
                "Target sink for '%s' is full. Current size is '%s'. Draining...",
                sink.stream_name,
                sink.current_size,
            )
            self.drain_one(sink)
        self.drain_if_records_too_old()

    @override
    def after_new_state(self) -> None:
        # The SDK emits STATE only when every sink drains: at the end of the input or after
        # its maximum record age. Draining on a new STATE (at most every
        # state_checkpoint_seconds) makes each bookmark durable soon after the tap sends it.
        if self.point_in_time:
            return
        interval = float(self.config.get("state_checkpoint_seconds", 10))
        if self.seconds_since_full_drain >= interval:
            self.drain_all()

    @override
    def hold_state(self, state: dict[str, t.Any]) -> bool:
        # In point-in-time mode the data behind a STATE lives in the unpublished snapshot; if the
        # run failed after emitting it, the next run would resume from it against the old latest
        # and skip data. So STATE is held back until the snapshot is published.
        if self.point_in_time and not self._finished:
            self._held_state = state
            return True
        return False

    @override
    def before_state_message(self) -> None:
        if self._tombstones:
            self._flush_tombstones()

    @override
    def process_endofpipe(self) -> None:
        if self._tombstones:
            self._flush_tombstones()
        super().process_endofpipe()
        connector = self.target_connector  # a run with no streams still gets its snapshot
        if self._snapshot is not None:
            # Finished snapshots are read-only from now on: a rollback-journal file is one
            # self-contained file, openable from a read-only directory or after download.
            connector.checkpoint_and_close(journal_mode="DELETE")
            published = snapshot.publish_snapshot(self._snapshot)
            self._published = published
            self.logger.info("Published snapshot %s as %s", published, self.database)
        else:
            connector.checkpoint_and_close()
            published = Path(connector.database_path)
        if self.config.get("s3_bucket"):
            url = s3.upload(published, self.config)
            self.logger.info("Uploaded %s to %s", published, url)
        self._finished = True
        if self._held_state is not None:
            self.emit_state(self._held_state)

    @override
    def on_termination_signal(self, signum: int, frame: FrameType | None) -> None:
        # The SDK's handler drained every sink and emitted a STATE from inside the handler,
        # wherever the main thread was, then exited 0. A signal means the run did not finish: it
        # must not publish a snapshot, upload, or emit a STATE, and must fail. What was committed
        # under an earlier STATE stays; the next run resumes from that STATE.
        if not self._interrupted:
            self._interrupted = True  # a second signal must not break the unwinding
            raise Interrupted(signum, self._published)

    @classmethod
    @override
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: ConfigInput | None = None,
        file_input: t.IO[str] | None = None,
    ) -> None:
        # Singer records are acyclic JSON data that reference counting frees; the cyclic GC only
        # re-scans the ~10^5 objects of the imported libraries and the pending batch, which cost
        # ~25% of the per-record time. Freezing the start-up objects and collecting the young
        # generation less often removes most of that (measured: 29 -> 22 us/record). No collection
        # first: the little garbage the imports left is not worth a full pass over ~10^5 objects.
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)
        # Known failures end with one plain error line (and exit 1) instead of a traceback, so the
        # last line of a failed `meltano run` says what went wrong.
        try:
            super().invoke(
                about=about, about_format=about_format, config=config, file_input=file_input
            )
        except Interrupted as exc:
            name = signal.Signals(exc.signum).name
            if exc.published is None:
                done = "nothing was published or uploaded"
            else:  # the input was complete; only the upload or the final STATE was cut short
                done = f"{exc.published} was already published, but no S3 upload finished"
            cls.logger.error(
                "%s stopped by %s: the run failed; %s and no STATE was emitted after the signal",
                cls.name,
                name,
                done,
            )
            sys.exit(128 + exc.signum)
        except TargetSQLiteError as exc:
            cls.logger.error("%s failed: %s", cls.name, exc)
            sys.exit(1)
        except (
            InvalidInputLine,
            InvalidJSONSchema,
            MissingKeyPropertiesError,
            RecordsWithoutSchemaException,
        ) as exc:
            # Input that breaks the Singer spec; the SDK's messages may span several lines.
            cls.logger.error("%s failed: %s", cls.name, " ".join(str(exc).split()))
            sys.exit(1)
        except (sqlite3.Error, sqlalchemy.exc.DBAPIError, *cls.driver_errors()) as exc:  # type: ignore[misc]
            cls.logger.error("%s failed: %s", cls.name, cls.explain_database_error(exc))
            sys.exit(1)

    @classmethod
    def driver_errors(cls) -> tuple[type[Exception], ...]:
        """Database driver errors that may escape SQLAlchemy's wrapping, besides sqlite3's."""
        return ()

    @classmethod
    def explain_database_error(cls, exc: Exception) -> str:
        """The one line that reports a database failure."""
        explanation = explain_sqlite_error(exc, "the database", DEFAULT_BUSY_TIMEOUT_SECONDS)
        return explanation or str(exc)
