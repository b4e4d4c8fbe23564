"""Record emission, and every singer-sdk private the tap relies on.

How a record becomes a line on stdout: a page's records wait in a :class:`RecordSpool` until the
whole answer has parsed; detections then go out as :class:`EncodedRecord` lines built by
:func:`record_line_parts`, other records as dicts through the SDK; :class:`SingerWriter` writes
both. The mixins below hold each use of an SDK name that starts with an underscore, so that an
SDK release that changes one breaks this module only. docs/architecture.md ("Private SDK uses")
says what each buys; tests/test_emit.py fails when the SDK changes one of them.
"""

from __future__ import annotations

import sys
import tempfile
import typing as t
from datetime import datetime, timezone
from functools import cached_property

import msgspec
from singer_sdk import Stream, Tap
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib import Message, RecordMessage, SingerMessageType

from tap_qualys import signals

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Generator, Iterator
    from types import FrameType

    from singer_sdk.helpers.types import Record


#: A spooled page stays in memory up to this size, then moves to a temporary file.
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024
#: Records per frame in the spool.
SPOOL_FRAME_RECORDS = 256


class RecordSpool:
    """Records of one page, held until the whole document has parsed.

    Qualys can fail part-way through a 200 answer (dropped connection, a cut body, an incident
    note). Emitting records as they parse would then leave half a page downstream and emit it
    again on retry. So a page is parsed completely into this spool and only read back once it
    ended correctly. Each record is stored as its JSON (msgspec), which is what the tap writes
    in the end: the detection stream writes those bytes as they are (:class:`EncodedRecord`),
    the other streams decode them back into dicts. Frames of records stay in memory up to
    :data:`SPOOL_MEMORY_BYTES`, then move to a temporary file.
    """

    def __init__(self, memory_bytes: int = SPOOL_MEMORY_BYTES) -> None:
        """Open an empty spool that moves to a temporary file past ``memory_bytes``."""
        self._file = tempfile.SpooledTemporaryFile(max_size=memory_bytes)  # noqa: SIM115
        self._encode = msgspec.json.Encoder().encode
        self._frame: list[bytes] = []
        self.count = 0

    def append(self, record: dict[str, t.Any]) -> None:
        """Add one record."""
        self._frame.append(self._encode(record))
        self.count += 1
        if len(self._frame) >= SPOOL_FRAME_RECORDS:
            self._flush()

    def _flush(self) -> None:
        if self._frame:
            # JSON from msgspec never holds a raw newline (it escapes them in strings), so one
            # newline between records is an unambiguous separator.
            data = b"\n".join(self._frame)
            self._file.write(len(data).to_bytes(4, "big"))
            self._file.write(data)
            self._frame = []

    def encoded(self) -> Iterator[bytes]:
        """Each record's JSON, in order; the spool is released at the end."""
        self._flush()
        self._file.seek(0)
        try:
            while header := self._file.read(4):
                yield from self._file.read(int.from_bytes(header, "big")).split(b"\n")
        finally:
            self.close()

    def __iter__(self) -> Iterator[dict[str, t.Any]]:
        """Read the records back as dicts, in order, and release the spool."""
        decode = msgspec.json.Decoder(dict[str, t.Any]).decode
        for line in self.encoded():
            yield decode(line)

    def close(self) -> None:
        """Free the memory or the temporary file."""
        self._file.close()


@t.final
class EncodedRecord:
    """A RECORD message already serialised, standing in for the record in the SDK's loop.

    On detections, decoding each spooled record back into a dict only to encode it again as a
    RECORD message was about a quarter of the tap's CPU. When nothing can change a record
    between the spool and stdout (every property selected, no stream map, no flattening: see
    ``HostDetectionsStream.emits_encoded``), the stream yields these instead; the SDK's loop
    still counts each one, and :meth:`EncodedRecordStream._generate_record_messages` hands it to the
    writer, which writes ``line`` as it is. Not a dict on purpose: code that reads a field from
    it fails loudly instead of seeing an empty record.
    """

    __slots__ = ("line",)

    def __init__(self, line: bytes) -> None:
        """Hold one complete RECORD message line, newline included."""
        self.line = line


def record_line_parts(stream: str, version: int | None, extracted: datetime) -> tuple[bytes, bytes]:
    """The bytes before and after a record's JSON in its RECORD message line.

    The same fields, order and formats as the SDK's ``RecordMessage`` written by its msgspec
    writer (tests/test_vm_streams.py compares the two).
    """
    encode = msgspec.json.encode
    prefix = b'{"type":"RECORD","stream":' + encode(stream) + b',"record":'
    suffix = b',"version":' + encode(version) if version is not None else b""
    suffix += b',"time_extracted":' + encode(extracted.astimezone(timezone.utc)) + b"}\n"
    return prefix, suffix


class SingerWriter(MsgSpecWriter):
    """The SDK's msgspec writer: the same JSON lines, about six times cheaper per record than the
    default simplejson writer, which took most of the tap's CPU on detection batches.

    Three changes: it writes a detection the stream has already serialised
    (:class:`EncodedRecord`) as it is; it also writes into a text-only stdout
    (the SDK's test runner captures output into a StringIO); and it flushes after every message
    but RECORD, so a STATE message never waits in the buffer while records do not cost a write()
    each.
    """

    @override
    def write_message(self, message: Message | EncodedRecord) -> None:
        line: bytes | bytearray
        if type(message) is EncodedRecord:
            line, flush = message.line, False
        else:
            line = self.format_message(message)
            flush = message.type is not SingerMessageType.RECORD
        stdout = sys.stdout
        if (binary := getattr(stdout, "buffer", None)) is not None:
            binary.write(line)
        else:
            stdout.write(line.decode())
        if flush:
            stdout.flush()


class SDKStream(Stream):
    """Public names for the stream internals the tap's streams need."""

    def __init__(self, tap: Tap, *args: t.Any, **kwargs: t.Any) -> None:
        """Keep the tap: streams of one run share its JWT, its pause gate and its logger."""
        super().__init__(tap, *args, **kwargs)
        self.tap = tap

    @property
    def stream_version(self) -> int | None:
        """The ``version`` the SDK puts into this stream's RECORD messages."""
        return self._stream_version

    def passes_filter(self, record: Record) -> bool:
        """Whether the SDK will sync this record's children: the primary stream map's
        ``__filter__``, the check ``Stream._process_record`` makes before it syncs them."""
        return bool(self.stream_maps[0].get_filter_result(record)) if self.stream_maps else True

    def write_state_now(self) -> None:
        """Write a STATE message at once, not at the SDK's next 10,000th record.

        What the SDK's private ``_write_state_message`` does, through the public state writer.
        """
        _ = self.stream_state  # the stream's entry exists before the state is written
        self.tap.state_writer.write_state(self.tap_state)
        self.state_manager.is_flushed = True


class EncodedRecordStream(SDKStream):
    """Hands :class:`EncodedRecord` lines to the writer, and skips the SDK's selection walk
    when the catalog selects every property.

    For streams whose records hold only schema keys, already typed (``TYPE_CONFORMANCE_LEVEL``
    ``NONE``): the VM streams. The SDK's own loop (``Stream._sync_records``) carries an
    ``EncodedRecord`` like a record: it only counts it, passes it to ``post_process`` and
    ``generate_child_contexts`` (which must leave it alone) and to this method.
    """

    @cached_property
    def _selects_every_property(self) -> bool:
        return all(self.mask.values())

    @override
    def _generate_record_messages(
        self, record: Record | EncodedRecord
    ) -> Generator[RecordMessage, None, None]:
        if type(record) is EncodedRecord:
            # Stands in for its RECORD message: SingerWriter writes its line as it is.
            yield t.cast("RecordMessage", record)
            return
        # The SDK walks each record against the catalog's selection mask to drop deselected
        # properties, a tenth of the tap's CPU on detections. A record here holds only schema
        # keys, so when the catalog selects them all the walk never drops anything; with a
        # deselected property the SDK's own path runs. Conformance is NONE (see above).
        if not self._selects_every_property:
            yield from super()._generate_record_messages(record)
            return
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=datetime.now(timezone.utc),
                )


class SignalsTap(Tap):
    """SIGTERM and SIGINT fail the run at once instead of the SDK's STATE and exit 0."""

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        # Not the SDK's: it wrote a STATE and exited 0 (see signals.py).
        signals.interrupt(signum)
