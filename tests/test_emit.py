"""emit.py: the record lines, and a guard on every singer-sdk private the tap relies on.

Each private use is listed in docs/architecture.md ("Private SDK uses"). The signature checks
fail at once when an SDK release renames or reshapes one; the behavioural tests fail when one
still exists but no longer does what the tap counts on.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import signal
import sys
import typing as t
from datetime import datetime, timezone

import pytest
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.helpers import _state as sdk_state
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.plugin_base import PluginBase

from tap_qualys import signals
from tap_qualys.emit import (
    EncodedRecord,
    EncodedRecordStream,
    SDKStream,
    SignalsTap,
    SingerWriter,
    record_line_parts,
)
from tap_qualys.summary import SDK_START, SDK_UNSORTED
from tap_qualys.tap import TapQualys

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from singer_sdk.helpers.types import Context

RECORDS = [{"id": 1, "name": "a"}, {"id": 2, "name": None}, {"id": 3, "name": "c\nd"}]
SCHEMA = th.PropertiesList(
    th.Property("id", th.IntegerType), th.Property("name", th.StringType)
).to_dict()


def parameters(function: t.Callable[..., t.Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


# --- The private names, as the tap calls or overrides them ---------------------------------------


def test_sdk_private_names_keep_their_signatures() -> None:
    assert parameters(Stream._generate_record_messages) == ["self", "record"]
    assert parameters(Stream._process_record) == [
        "self",
        "record",
        "child_context",
        "partition_context",
    ]
    assert parameters(Stream._sync_records)[:2] == ["self", "context"]
    assert parameters(Tap._handle_termination) == ["self", "signum", "frame"]
    assert parameters(PluginBase._setup_signal_handlers) == ["self"]


def test_the_sdk_calls_the_privates_the_tap_overrides() -> None:
    # The overrides only matter while the SDK's own code goes through them.
    assert "self._generate_record_messages(record)" in inspect.getsource(
        Stream._write_record_message
    )
    assert "self._write_record_message(record)" in inspect.getsource(Stream._sync_records)
    assert "self._handle_termination" in inspect.getsource(PluginBase._setup_signal_handlers)
    # passes_filter is the check _process_record makes before it syncs a record's children.
    assert "self.stream_maps[0].get_filter_result(record)" in inspect.getsource(
        Stream._process_record
    )
    # write_state_now does what _write_state_message does, through public names.
    source = inspect.getsource(Stream._write_state_message)
    assert "state_writer.write_state(self.tap_state)" in source
    assert "is_flushed = True" in source


def test_sdk_log_texts_the_tap_rewrites_are_still_written() -> None:
    assert SDK_START in inspect.getsource(Stream.sync)
    assert SDK_UNSORTED in inspect.getsource(sdk_state)


# --- What they do ---------------------------------------------------------------------------------


class _Stream(EncodedRecordStream):
    name = "things"
    primary_keys = ("id",)
    schema = SCHEMA
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    encoded = True

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        if not self.encoded:
            yield from (dict(record) for record in RECORDS)
            return
        prefix, suffix = record_line_parts(
            self.name, self.stream_version, datetime(2026, 12, 4, tzinfo=timezone.utc)
        )
        for record in RECORDS:
            line = prefix + json.dumps(record, separators=(",", ":")).encode() + suffix
            yield EncodedRecord(line)  # type: ignore[misc]


class _Tap(SignalsTap, Tap):
    name = "tap-emit-test"
    config_jsonschema = th.PropertiesList().to_dict()
    message_writer_class = SingerWriter

    def discover_streams(self) -> list[Stream]:
        return [_Stream(tap=self)]


def _sync(monkeypatch: pytest.MonkeyPatch, *, encoded: bool) -> list[dict[str, t.Any]]:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(_Stream, "encoded", encoded)
    tap = _Tap(config={}, setup_mapper=True)
    tap.sync_all()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_encoded_records_go_through_the_sdk_loop_as_they_are(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="singer_sdk.metrics")
    messages = _sync(monkeypatch, encoded=True)
    records = [m for m in messages if m["type"] == "RECORD"]
    assert [m["record"] for m in records] == RECORDS
    assert {m["time_extracted"] for m in records} == {"2026-12-04T00:00:00Z"}
    # The SDK's loop counted them like records.
    counts = [r.getMessage() for r in caplog.records if '"record_count"' in r.getMessage()]
    assert counts, "the SDK logged no record_count metric"
    assert '"value":3,' in counts[-1]
    # The same stream's dicts, through the SDK's path, give the same records.
    dicts = [m for m in _sync(monkeypatch, encoded=False) if m["type"] == "RECORD"]
    assert [m["record"] for m in dicts] == RECORDS
    assert [sorted(m) for m in dicts] == [sorted(m) for m in records]


def test_a_deselected_property_takes_the_sdks_path(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(_Stream, "encoded", False)
    tap = _Tap(config={}, setup_mapper=True)
    catalog = tap.catalog_dict
    for entry in catalog["streams"][0]["metadata"]:
        if entry["breadcrumb"] == ["properties", "name"]:
            entry["metadata"]["selected"] = False
    tap = _Tap(config={}, catalog=catalog, setup_mapper=True)
    tap.sync_all()
    records = [json.loads(x) for x in out.getvalue().splitlines() if '"RECORD"' in x]
    assert [r["record"] for r in records] == [{"id": 1}, {"id": 2}, {"id": 3}]


def test_stream_version_and_write_state_now(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    stream = _Tap(config={}).streams["things"]
    assert isinstance(stream, SDKStream)
    assert stream.stream_version is None  # set by the SDK only for full-table versioning
    stream.stream_state["resume"] = 7
    stream.write_state_now()
    state = json.loads(out.getvalue().splitlines()[-1])
    assert state["type"] == "STATE"
    assert state["value"]["bookmarks"]["things"]["resume"] == 7
    assert stream.state_manager.is_flushed


def test_the_sdk_installs_the_tap_signal_handler() -> None:
    if not hasattr(signal, "SIGTERM"):
        pytest.skip("no SIGTERM here")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        tap = TapQualys(config={"username": "qa_sim_user", "password": "x"}, validate_config=False)
        handler = signal.getsignal(signal.SIGTERM)
        assert getattr(handler, "__func__", None) is SignalsTap._handle_termination
        assert getattr(handler, "__self__", None) is tap
        with pytest.raises(signals.Interrupted):
            handler(signal.SIGTERM, None)  # type: ignore[operator,misc]
    finally:
        signals.concurrency.STOPPING.clear()
        signal.signal(signal.SIGTERM, previous)
