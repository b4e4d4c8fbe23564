"""sdk.py: a guard on every singer-sdk private the target relies on.

Each private use is listed in docs/architecture.md ("Private SDK uses", the target's table). The
signature checks fail at once when an SDK release renames or reshapes one; the behavioural tests
fail when one still exists but no longer does what the target counts on; the source scan fails
when a private use appears outside sdk.py.
"""

from __future__ import annotations

import inspect
import re
import signal
import typing as t
from pathlib import Path

import pytest
from singer_sdk.exceptions import MissingKeyPropertiesError
from singer_sdk.io_base import SingerReader
from singer_sdk.plugin_base import PluginBase
from singer_sdk.sinks.batch import BatchSink
from singer_sdk.sinks.core import Sink
from singer_sdk.sql import SQLConnector, SQLTarget
from singer_sdk.target_base import Target

import target_qualys_sqlite
from target_qualys_sqlite import sdk
from target_qualys_sqlite.connector import SQLiteConnector
from target_qualys_sqlite.reader import MsgspecSingerReader
from target_qualys_sqlite.sink import SQLiteSink
from target_qualys_sqlite.target import TargetSQLite
from tests.target_sqlite.conftest import (
    detection,
    listen_in_process,
    query,
    record_message,
    schema_message,
)

PACKAGE = Path(target_qualys_sqlite.__file__).parent


def parameters(function: t.Callable[..., t.Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def source(function: t.Callable[..., t.Any]) -> str:
    return inspect.getsource(function)


# --- The private names, as sdk.py calls or overrides them ----------------------------------------


def test_sdk_private_names_keep_their_signatures() -> None:
    for name in ("_process_schema_message", "_process_record_message", "_process_state_message"):
        assert parameters(getattr(Target, name)) == ["self", "message_dict"], name
    assert parameters(Target._write_state_message) == ["self", "state"]
    assert parameters(Target._handle_termination) == ["self", "signum", "frame"]
    assert parameters(Target._handle_max_record_age) == ["self"]
    assert isinstance(Target._MAX_RECORD_AGE_IN_MINUTES, float)
    assert parameters(Sink._after_process_record) == ["self", "context"]
    assert parameters(Sink._validate_and_parse) == ["self", "record"]
    assert parameters(Sink._remove_sdc_metadata_from_record) == ["self", "record"]
    assert parameters(Sink._singer_validate_message) == ["self", "record"]
    assert parameters(BatchSink._get_context) == ["self", "record"]
    assert isinstance(inspect.getattr_static(SQLConnector, "_engine"), property)
    assert SQLConnector._cached_engine is None
    assert parameters(SingerReader._process_unknown_message) == ["self", "message_dict"]
    # PlainConnector (Postgres mode) replaces the connection context the SDK's DDL goes through.
    assert parameters(SQLConnector._connect) == ["self"]


def test_sdk_still_calls_the_overridden_privates_where_the_target_counts_on_it() -> None:
    # The hooks of sdk.py run only if the SDK still routes through the privates they override.
    listen = source(Target.process_lines)
    for name in ("_process_schema_message", "_process_record_message", "_process_state_message"):
        assert f"self.{name}" in listen, name
    assert "self._write_state_message(" in source(Target.drain_all)
    assert "self._reset_max_record_age()" in source(Target.drain_all)
    assert "self._last_full_drain_at = time.time()" in source(Target._reset_max_record_age)
    assert "self._latest_state = state" in source(Target._process_state_message)
    assert "self._setup_signal_handlers()" in source(PluginBase.__init__)
    assert "self._handle_termination)" in source(PluginBase._setup_signal_handlers)
    assert "self._cached_engine = self.create_engine()" in inspect.getsource(SQLConnector)
    assert "with self._connect() as conn" in source(SQLConnector.create_schema)
    # The SDK's own dispatch calls both sink hooks, so RECORDs it handles reach our versions too.
    dispatch = source(Target._process_record_message)
    assert "sink._validate_and_parse(" in dispatch
    assert "sink._after_process_record(" in dispatch
    assert "sink.process_batch_files(" in source(Target._process_batch_message)


def test_private_uses_live_in_sdk_py_only() -> None:
    sdk_classes = {
        klass
        for base in (SQLTarget, SQLiteSink, SQLConnector, SingerReader)
        for klass in base.__mro__
        if klass.__module__.startswith("singer_sdk")
    }
    sdk_source = "\n".join(inspect.getsource(klass) for klass in sdk_classes)
    defined = set(re.findall(r"(?:def |self\.|^\s+)(_[A-Za-z]\w*)\b", sdk_source, re.MULTILINE))
    found = {}
    for path in PACKAGE.glob("*.py"):
        if path.name == "sdk.py":
            continue
        text = path.read_text()
        names = set(re.findall(r"(?:\.|def )(_[A-Za-z]\w*)\b", text)) & defined
        names |= set(re.findall(r"singer_sdk[.\w]*\.(_\w+)", text))
        names |= set(re.findall(r"from singer_sdk[.\w]* import (_\w+)", text))
        if names:
            found[path.name] = sorted(names)
    assert found == {}, "singer-sdk privates outside sdk.py (move them there and list them)"


# --- What the target counts on ------------------------------------------------------------------


def _target(tmp_path: Path, **config: t.Any) -> TargetSQLite:
    return TargetSQLite(config={"database": str(tmp_path / "t.db"), **config})


def test_hooks_run_where_the_private_ones_ran(tmp_path: Path) -> None:
    target = _target(tmp_path, point_in_time=True)
    calls: list[str] = []
    target.after_schema_message = lambda: calls.append("schema")  # type: ignore[method-assign]
    target.after_new_state = lambda: calls.append("state")  # type: ignore[method-assign]
    target._process_schema_message(schema_message(keys=["unique_vuln_id"]))
    state = {"type": "STATE", "value": {"bookmarks": {"a": 1}}}
    target._process_state_message(state)
    target._process_state_message(state)  # unchanged: no hook
    assert calls == ["schema", "state"]
    # hold_state keeps a STATE the SDK would write; emit_state writes it through the SDK.
    target._write_state_message({"bookmarks": {"a": 1}})
    assert target._held_state == {"bookmarks": {"a": 1}}


def test_direct_path_queues_what_the_sdk_dispatch_queues(tmp_path: Path) -> None:
    target = _target(tmp_path)
    target._process_schema_message(schema_message(keys=["unique_vuln_id"]))
    sink = target.get_sink("host_detections")
    record = {**detection(1), "_sdc_sequence": 4}
    sdk.queue_record(sink, record)
    assert "_sdc_sequence" not in record  # the SDK's metadata strip ran
    context = sink._get_context(record)
    assert context["records"] == [record]  # BatchSink's pending batch is the context
    assert sink._total_records_read == 1
    with pytest.raises(MissingKeyPropertiesError):
        sdk.queue_record(sink, {k: v for k, v in detection(2).items() if k != "unique_vuln_id"})


def test_max_record_age_clock_is_the_sdks(tmp_path: Path) -> None:
    target = _target(tmp_path)
    assert 0 <= target.seconds_since_full_drain < 60
    target._last_full_drain_at -= 3600
    drained: list[bool] = []
    target.drain_all = lambda is_endofpipe=False: drained.append(True)  # type: ignore[method-assign]
    target.drain_if_records_too_old()
    assert drained == [True]


def test_sink_hooks_replace_the_sdks(tmp_path: Path) -> None:
    target = _target(tmp_path)
    target._process_schema_message(schema_message(keys=["unique_vuln_id"]))
    sink = t.cast("SQLiteSink", target.get_sink("host_detections"))
    record = detection(1)
    # validate_record keeps date-times as text (the SDK's version parses them to datetime).
    assert sink._validate_and_parse(dict(record)) == record
    logged: list[dict[str, t.Any]] = []
    sink.after_record = logged.append  # type: ignore[method-assign]
    Target._process_record_message(target, record_message(detection(2)))  # the SDK's dispatch
    assert len(logged) == 1
    assert logged[0]["records"][-1]["unique_vuln_id"] == 2


def test_engine_is_the_connectors_one_cached_engine(tmp_path: Path) -> None:
    connector = SQLiteConnector({}, database_path=str(tmp_path / "e.db"))
    assert not sdk.has_engine(connector)
    engine = sdk.engine(connector)
    assert sdk.engine(connector) is engine
    assert sdk.has_engine(connector)
    sdk.dispose_engine(connector)
    assert not sdk.has_engine(connector)
    assert sdk.engine(connector) is not engine


def test_unknown_message_raises_the_sdks_error() -> None:
    with pytest.raises(ValueError, match="Unknown message type 'BOGUS'"):
        sdk.unknown_message(MsgspecSingerReader(), {"type": "BOGUS"})


def test_termination_hook_replaces_the_sdks_handler(tmp_path: Path) -> None:
    target = _target(tmp_path)
    assert signal.getsignal(signal.SIGTERM) == target._handle_termination
    seen: list[int] = []
    target.on_termination_signal = lambda signum, frame: seen.append(signum)  # type: ignore[method-assign]
    target._handle_termination(signal.SIGTERM, None)
    assert seen == [signal.SIGTERM]


@pytest.mark.parametrize("direct", [True, False], ids=["direct-path", "sdk-path"])
def test_key_properties_are_the_schemas_names_not_the_column_names(
    tmp_path: Path, direct: bool
) -> None:
    # SQLSink.key_properties (public) conforms the names to columns (hostId -> hostid), which
    # are not the record's keys; the key checks need the SCHEMA message's own names.
    properties = {"hostId": {"type": "integer"}, "dns": {"type": ["null", "string"]}}
    database = tmp_path / "keys.db"
    messages = [
        schema_message("hosts", properties, ["hostId"]),
        record_message({"hostId": 1, "dns": "a"}, "hosts"),
        record_message({"hostId": 1, "dns": "b"}, "hosts"),
    ]
    target = listen_in_process(database, messages, direct=direct)
    sink = target.get_sink("hosts")
    assert list(sdk.source_key_properties(sink)) == ["hostId"]
    assert list(sink.key_properties) != ["hostId"]  # else this test checks nothing
    target.process_endofpipe()
    assert query(database, "SELECT * FROM hosts") == [(1, "b")]
