"""The direct RECORD path (TargetSQLite.take_record_message) against the SDK's own dispatch.

The direct path replaces a private SDK method for speed; these tests pin what it relies on and
check that it leaves exactly what the SDK's path leaves: the same database, the same STATE
messages in the same order, the same counters, the same errors.
"""

from __future__ import annotations

import inspect
import json
import sqlite3
import typing as t
from pathlib import Path

import pytest
from singer_sdk.exceptions import MissingKeyPropertiesError
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.sinks.batch import BatchSink
from singer_sdk.sinks.core import Sink
from singer_sdk.target_base import Target

from target_qualys_sqlite.errors import TargetSQLiteError
from target_qualys_sqlite.target import TargetSQLite
from tests.target_sqlite.conftest import (
    DETECTION_PROPERTIES,
    detection,
    dump_database,
    listen_in_process,
    record_message,
    schema_message,
)

KEYS = ["unique_vuln_id"]
EVOLVED = {**DETECTION_PROPERTIES, "qds": {"type": ["null", "integer"]}}
HOST_PROPERTIES = {"id": {"type": "integer"}, "dns": {"type": ["null", "string"]}}


def _state(n: int) -> dict[str, t.Any]:
    return {"type": "STATE", "value": {"bookmarks": {"host_detections": {"n": n}}}}


# Two interleaved streams, replays of the same key within and across batches, STATE between
# records, a schema change mid-stream (new column, same keys), and a repeated identical SCHEMA.
MESSAGES: list[dict[str, t.Any]] = [
    schema_message(keys=KEYS),
    schema_message("hosts", HOST_PROPERTIES, ["id"]),
    *(record_message(detection(i)) for i in range(1, 8)),
    record_message({"id": 1, "dns": "a.example"}, "hosts"),
    _state(1),
    record_message(detection(3, status="Fixed")),
    record_message(detection(3, status="Reopened", _sdc_sequence=5)),
    schema_message(keys=KEYS),
    _state(2),
    schema_message(properties=EVOLVED, keys=KEYS),
    *(record_message(detection(i, qds=i * 10)) for i in range(5, 12)),
    record_message({"id": 1, "dns": "b.example"}, "hosts"),
    _state(3),
    record_message(detection(12, qds=None, cvss=None, asset=None)),
]


def _counters(target: TargetSQLite) -> dict[str, tuple[int, int]]:
    return {
        name: (sink._total_records_read, sink._total_records_written)
        for name, sink in target._sinks_active.items()
    }


class _SDKDispatchCounter:
    """Counts calls of the SDK's own RECORD dispatch."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = Target._process_record_message

        def counting(target: Target, message_dict: dict) -> None:
            self.calls += 1
            original(target, message_dict)

        monkeypatch.setattr(Target, "_process_record_message", counting)


def test_sdk_methods_the_direct_path_relies_on_are_unchanged() -> None:
    # If this fails after an SDK upgrade, re-read Target._process_record_message and update
    # sdk.queue_record and TargetSQLite.take_record_message (or drop them) before changing this
    # test.
    signature = inspect.signature(Target._process_record_message)
    assert list(signature.parameters) == ["self", "message_dict"]
    source = inspect.getsource(Target._process_record_message)
    steps = [
        "sink._get_context(",
        "sink._add_sdc_metadata_to_record(",
        "sink._remove_sdc_metadata_from_record(",
        "sink._validate_and_parse(",
        "sink.preprocess_record(",
        "sink._singer_validate_message(",
        "sink.tally_record_read()",
        "sink.process_record(",
        "sink.record_counter_metric.increment()",
        "sink._after_process_record(",
        "if sink.is_full:",
        "self.drain_one(sink)",
        "self._handle_max_record_age()",
    ]
    positions = [source.find(step) for step in steps]
    assert -1 not in positions, [s for s, p in zip(steps, positions, strict=True) if p == -1]
    assert positions == sorted(positions)
    assert list(inspect.signature(Target._process_schema_message).parameters) == [
        "self",
        "message_dict",
    ]
    for name in ("_get_context", "process_record"):
        assert name in BatchSink.__dict__
    for name in (
        "_remove_sdc_metadata_from_record",
        "_singer_validate_message",
        "preprocess_record",
        "tally_record_read",
        "current_size",
        "max_size",
    ):
        assert name in Sink.__dict__
    target = TargetSQLite(config={"database": ":memory:"})
    for attribute in ("_sinks_active", "_last_full_drain_at", "_MAX_RECORD_AGE_IN_MINUTES"):
        assert hasattr(target, attribute)
    assert isinstance(target.mapper.stream_maps, dict)
    assert issubclass(SameRecordTransform, object)


@pytest.mark.parametrize("max_age_minutes", [None, 0.0], ids=["batch-size-drains", "every-record"])
def test_direct_path_leaves_what_the_sdk_path_leaves(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    max_age_minutes: float | None,
) -> None:
    # max age 0 makes every record trigger the SDK's full drain, which emits STATE: the STATE
    # lines then interleave with the records, so their order is compared too.
    sdk_calls = _SDKDispatchCounter(monkeypatch)
    sdk = listen_in_process(
        tmp_path / "sdk.db", MESSAGES, direct=False, max_age_minutes=max_age_minutes
    )
    sdk_states = capsys.readouterr().out
    assert sdk_calls.calls == 19
    direct = listen_in_process(
        tmp_path / "direct.db", MESSAGES, direct=True, max_age_minutes=max_age_minutes
    )
    direct_states = capsys.readouterr().out
    assert sdk_calls.calls == 19  # no record took the SDK's dispatch

    assert dump_database(tmp_path / "direct.db") == dump_database(tmp_path / "sdk.db")
    assert direct_states == sdk_states
    assert json.loads(direct_states.splitlines()[-1]) == _state(3)["value"]
    if max_age_minutes == 0:
        assert len(direct_states.splitlines()) > 3
    assert _counters(direct) == _counters(sdk) == {"host_detections": (8, 8), "hosts": (2, 2)}
    rows = sqlite3.connect(tmp_path / "direct.db").execute(
        "SELECT unique_vuln_id, status, qds FROM host_detections WHERE unique_vuln_id IN (3, 5)"
    )
    assert sorted(rows) == [(3, "Reopened", None), (5, "Active", 50)]


@pytest.mark.parametrize(
    "config",
    [
        {"add_record_metadata": True},
        {"flattening_enabled": True, "flattening_max_depth": 1},
        {"stream_maps": {"host_detections": {"severity": "__NULL__"}}},
        {"stream_maps": {"detections_copy": {"__source__": "host_detections"}}},
    ],
    ids=["record-metadata", "flattening", "stream-map", "aliased-copy"],
)
def test_features_the_direct_path_does_not_cover_take_the_sdk_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: dict[str, t.Any]
) -> None:
    sdk_calls = _SDKDispatchCounter(monkeypatch)
    messages = [schema_message(keys=KEYS), *(record_message(detection(i)) for i in (1, 2))]
    listen_in_process(tmp_path / "out.db", messages, direct=True, **config)
    assert sdk_calls.calls == 2


def test_sdc_metadata_columns_are_still_written_with_add_record_metadata(tmp_path: Path) -> None:
    messages = [schema_message(keys=KEYS), record_message(detection(1))]
    listen_in_process(tmp_path / "out.db", messages, direct=True, add_record_metadata=True)
    conn = sqlite3.connect(tmp_path / "out.db")
    received = conn.execute("SELECT _sdc_received_at FROM host_detections").fetchone()[0]
    assert received is not None


@pytest.mark.parametrize(
    ("record", "error", "fragment"),
    [
        ({"host_id": 1}, MissingKeyPropertiesError, "missing one or more key_properties"),
        (detection(9, severity="high"), TargetSQLiteError, "violates its schema"),
    ],
    ids=["missing-key", "invalid-record"],
)
@pytest.mark.parametrize("direct", [True, False], ids=["direct", "sdk"])
def test_bad_records_fail_the_same_way_on_both_paths(
    tmp_path: Path,
    record: dict[str, t.Any],
    error: type[Exception],
    fragment: str,
    *,
    direct: bool,
) -> None:
    messages = [schema_message(keys=KEYS), record_message(detection(1)), record_message(record)]
    with pytest.raises(error, match=fragment):
        listen_in_process(tmp_path / "out.db", messages, direct=direct)
