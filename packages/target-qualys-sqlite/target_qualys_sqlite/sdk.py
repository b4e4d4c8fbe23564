"""Every singer-sdk private the target relies on, and only here.

Each use is listed in docs/architecture.md ("Private SDK uses", the target's table) with what it
buys; tests/target_sqlite/test_sdk_privates.py checks each name, its signature and the behaviour
the target counts on, so an SDK release that changes one fails there first. The rest of the
package reaches the SDK through its public API and the public hooks of the classes below.
"""

from __future__ import annotations

import contextlib
import sys
import time
import typing as t

from singer_sdk.sql import SQLConnector, SQLSink, SQLTarget

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

    import sqlalchemy as sa
    from singer_sdk.helpers._batch import BaseBatchFileEncoding
    from singer_sdk.io_base import SingerReader
    from singer_sdk.plugin_base import _ConfigInput
    from singer_sdk.sinks.core import Sink

    # Type-only names the SDK keeps private but puts in its public signatures.
    BatchFileEncoding: t.TypeAlias = BaseBatchFileEncoding
    ConfigInput: t.TypeAlias = _ConfigInput

_C = t.TypeVar("_C", bound=SQLConnector)


class HookedSink(SQLSink[_C]):
    """The SDK's SQL sink with its two private per-record hooks as public methods."""

    @override
    def _after_process_record(self, context: dict[str, t.Any]) -> None:
        self.after_record(context)

    def after_record(self, context: dict[str, t.Any]) -> None:
        """After each queued record: the SDK logs it at DEBUG."""
        super()._after_process_record(context)

    @override
    def _validate_and_parse(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        return self.validate_record(record)

    def validate_record(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        """Each RECORD before it is queued: the SDK validates it and parses its date-times."""
        return super()._validate_and_parse(record)


def queue_record(sink: Sink, record: dict[str, t.Any]) -> None:
    """The sink calls of the SDK's ``Target._process_record_message`` for one record.

    The same calls in the same order, minus the stream-map and look-up work the direct path
    proved to be an identity (target.py's ``_direct_sink``).
    """
    context = sink._get_context(record)
    sink._remove_sdc_metadata_from_record(record)
    sink._validate_and_parse(record)
    for key in sink._key_properties:
        if key not in record:
            sink._singer_validate_message(record)  # raises the SDK's own error
    sink.tally_record_read()
    sink.process_record(record, context)


def source_key_properties(sink: Sink) -> t.Sequence[str]:
    """The stream's key properties as the SCHEMA message names them.

    The public ``SQLSink.key_properties`` gives them as column names (``conform_name``), which
    differ from the record's keys for names such as ``hostId``.
    """
    return sink._key_properties


def queue_row(sink: Sink, row: tuple[t.Any, ...]) -> None:
    """`queue_record` for a row already decoded, validated and keyed (rows.py)."""
    sink.tally_record_read()
    sink.process_record(row, sink._get_context(row))  # type: ignore[arg-type]


def engine(connector: SQLConnector) -> sa.Engine:
    """The connector's one cached engine (created on first use by ``create_engine``)."""
    return connector._engine


def has_engine(connector: SQLConnector) -> bool:
    """Whether the connector has made its engine (so whether there is a database to close)."""
    return connector._cached_engine is not None


def dispose_engine(connector: SQLConnector) -> None:
    """Close every pooled connection; the next use makes a new engine."""
    if connector._cached_engine is not None:
        connector._cached_engine.dispose()
        connector._cached_engine = None


class PlainConnector(SQLConnector):
    """The SDK's SQL connector whose DDL connections do not ask for streamed results.

    The SDK opens every connection with ``stream_results``; with psycopg 3 SQLAlchemy then
    declares a server-side cursor for each statement, which fails for DDL (``DECLARE ... CURSOR
    FOR CREATE SCHEMA``) and, once those are disabled, fetches rows of statements without any.
    """

    @override
    @contextlib.contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        with self._engine.connect() as conn:
            yield conn


def unknown_message(reader: SingerReader, message: dict[str, t.Any]) -> None:
    """A message of no known type: the SDK's error (its reader loop's own handling)."""
    reader._process_unknown_message(message)


class HookedTarget(SQLTarget):
    """The SDK's SQL target with the private message handlers it replaces as public hooks."""

    @override
    def _process_schema_message(self, message_dict: dict[str, t.Any]) -> None:
        super()._process_schema_message(message_dict)
        self.after_schema_message()

    def after_schema_message(self) -> None:
        """After each SCHEMA message, when sinks and stream maps may have changed."""

    @override
    def _process_record_message(self, message_dict: dict[str, t.Any]) -> None:
        if not self.take_record_message(message_dict):
            super()._process_record_message(message_dict)

    def take_record_message(self, message_dict: dict[str, t.Any]) -> bool:
        """Load one parsed RECORD message itself; False leaves it to the SDK's dispatch."""
        return False

    @override
    def _process_state_message(self, message_dict: dict[str, t.Any]) -> None:
        self.before_state_message()
        previous = self._latest_state
        super()._process_state_message(message_dict)
        if self._latest_state != previous:
            self.after_new_state()

    def before_state_message(self) -> None:
        """Before each STATE message is handled (and possibly emitted after a drain)."""

    def after_new_state(self) -> None:
        """After a STATE message whose value differs from the last one."""

    @property
    def seconds_since_full_drain(self) -> float:
        """Seconds since every sink was last drained (the SDK's max-record-age clock)."""
        return time.time() - self._last_full_drain_at

    def drain_if_records_too_old(self) -> None:
        """What the SDK does after each record: drain all once the oldest queued is too old."""
        if self.seconds_since_full_drain > self._MAX_RECORD_AGE_IN_MINUTES * 60:
            self._handle_max_record_age()

    @override
    def _write_state_message(self, state: dict[str, t.Any]) -> None:
        if not self.hold_state(state):
            super()._write_state_message(state)

    def hold_state(self, state: dict[str, t.Any]) -> bool:
        """Whether to keep a STATE the SDK is about to emit (after a full drain) from stdout."""
        return False

    def emit_state(self, state: dict[str, t.Any]) -> None:
        """Emit a STATE message now (subject to `hold_state`)."""
        self._write_state_message(state)

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        self.on_termination_signal(signum, frame)

    def on_termination_signal(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM / SIGINT: the SDK drains, emits STATE and exits 0 from inside the handler."""
        super()._handle_termination(signum, frame)
