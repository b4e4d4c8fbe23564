"""Typed RECORD decoding (rows.py) gives the generic path's rows, or leaves the record to it."""

from __future__ import annotations

import random
import sqlite3
import typing as t
from pathlib import Path

import msgspec
import pytest
from singer_sdk.exceptions import InvalidRecord, MissingKeyPropertiesError

from target_qualys_sqlite.errors import TargetSQLiteError
from target_qualys_sqlite.rows import compile_row_decoder, json_text
from target_qualys_sqlite.target import TargetSQLite
from target_qualys_sqlite.validation import CompiledSchemaValidator
from tests.target_sqlite.conftest import (
    detection,
    dump_database,
    listen_in_process,
    record_message,
    schema_message,
)
from tests.target_sqlite.test_validation import VALUES

SCHEMA: dict[str, t.Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": ["null", "string"], "description": "annotation only"},
        "score": {"type": ["null", "number"]},
        "flag": {"type": ["null", "boolean"]},
        "count": {"type": "integer"},
        "seen": {"type": ["null", "string"], "format": "date-time"},
        "when": {"type": ["string", "integer"], "format": "date-time"},
        "factors": {
            "type": ["null", "array"],
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "value": {"type": ["null", "string"]}},
                "required": ["name"],
                "additionalProperties": False,
            },
        },
        "asset": {"type": ["object", "null"], "properties": {"id": {"type": "integer"}}},
        "tags": {"type": "array"},
        "mixed": {"type": ["string", "object", "null"]},
    },
    "required": ["id", "name"],
}
KEYS = ["id"]
EXTRA_VALUES = [*VALUES, "2026-02-30T00:00:00Z", "2026-11-23", {"id": 1}, {"id": "x"}]


def _generic_row(record: dict[str, t.Any], schema: dict[str, t.Any]) -> tuple[t.Any, ...] | None:
    """What the generic path loads: None if validation or the key check rejects the record."""
    try:
        CompiledSchemaValidator(schema).validate(record)
    except InvalidRecord:
        return None
    if any(key not in record for key in KEYS):
        return None
    return tuple(json_text(record.get(name)) for name in schema["properties"])


def test_rows_are_the_generic_paths_rows_and_only_for_records_it_accepts() -> None:
    decoder = compile_row_decoder(SCHEMA, KEYS, validate=True)
    assert decoder is not None
    rng = random.Random(5)
    names = list(SCHEMA["properties"])
    taken = 0
    for _ in range(6000):
        record = {n: rng.choice(EXTRA_VALUES) for n in names if rng.random() < 0.85}
        if rng.random() < 0.5:  # mostly valid records, so both outcomes are common
            record.update(id=rng.randint(0, 9), name=rng.choice([None, "n"]), count=1)
            record.update(seen="2026-11-23T15:30:00Z", when="2026-11-23T15:30:00+01:00")
            record.update(factors=[{"name": "a"}], asset={"id": 2}, tags=[1, "x"])
            record.update(score=rng.choice([None, 1, 2.5]), flag=rng.choice([None, True]))
            if rng.random() < 0.5:  # and one random value again
                record[rng.choice(names)] = rng.choice(EXTRA_VALUES)
        row = decoder.row(msgspec.json.encode(record))
        if row is not None:
            taken += 1
            assert row == _generic_row(record, SCHEMA), record
    assert taken > 800


@pytest.mark.parametrize(
    "record",
    [
        {"id": 1.0, "name": None},  # an integer to JSON Schema: the generic path loads it
        {"name": "n"},  # missing key: the generic path raises the SDK's error
        {"id": None, "name": "n"},
        {"id": 1},  # "name" is required
        {"id": 1, "name": "n", "seen": "not a date"},
        {"id": 1, "name": "n", "when": 5},
        {"id": 1, "name": "n", "factors": [{"value": "x"}]},
        {"id": True, "name": "n"},
    ],
)
def test_records_it_does_not_accept_go_to_the_generic_path(record: dict[str, t.Any]) -> None:
    decoder = compile_row_decoder(SCHEMA, KEYS, validate=True)
    assert decoder is not None
    assert decoder.row(msgspec.json.encode(record)) is None


def test_without_validation_only_types_are_checked() -> None:
    decoder = compile_row_decoder(SCHEMA, KEYS, validate=False)
    assert decoder is not None
    record = {"id": 1, "name": "n", "seen": "not a date", "factors": [{"value": 2}]}
    row = decoder.row(msgspec.json.encode(record))
    assert row == tuple(json_text(record.get(name)) for name in SCHEMA["properties"])
    assert decoder.row(b'{"id": "1", "name": null}') is None


@pytest.mark.parametrize(
    "schema",
    [
        {"properties": {"id": {"type": "integer"}, "x": {}}},
        {"properties": {"id": {"type": "integer"}, "x": {"$ref": "#/definitions/x"}}},
        {"properties": {"id": {"type": "integer"}, "x": {"type": "string", "maxLength": 3}}},
        {"properties": {"id": {"type": "integer"}, "x": {"anyOf": [{"type": "string"}]}}},
        {"properties": {"id": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
        {"properties": {"id": {"type": "integer"}}, "patternProperties": {"^x": {}}},
        {"properties": {"id": {"type": "integer"}, "_sdc_extracted_at": {"type": "string"}}},
        {"properties": {"id": {"type": "integer"}, "o": {"type": "object", "minProperties": 1}}},
        {"properties": {}},
    ],
)
def test_schemas_outside_the_subset_have_no_row_decoder(schema: dict[str, t.Any]) -> None:
    assert compile_row_decoder(schema, KEYS, validate=True) is None


def test_additional_properties_false_leaves_unknown_fields_to_the_generic_path() -> None:
    schema = {"properties": {"id": {"type": "integer"}}, "additionalProperties": False}
    decoder = compile_row_decoder(schema, KEYS, validate=True)
    assert decoder is not None
    assert decoder.row(b'{"id": 1}') == (1,)
    assert decoder.row(b'{"id": 1, "other": 2}') is None


# --- through the target ----------------------------------------------------------------------

DETECTION_KEYS = ["unique_vuln_id"]


def test_typed_lines_and_fallbacks_keep_message_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[bool] = []
    original = TargetSQLite._take_record_line

    def counting(target: TargetSQLite, line: bytes | str) -> bool:
        taken.append(original(target, line))
        return taken[-1]

    monkeypatch.setattr(TargetSQLite, "_take_record_line", counting)
    messages = [
        schema_message(keys=DETECTION_KEYS),
        *(record_message(detection(i)) for i in range(1, 6)),
        # Same key within one batch: typed, then a fallback (1.0 is an integer to JSON Schema),
        # then typed again; the last one must win.
        record_message(detection(7, status="first")),
        record_message(detection(7, status="second", severity=3.0)),
        record_message(detection(7, status="third")),
        record_message(detection(8, status="fallback last", severity=4.0)),
        {"type": "STATE", "value": {"n": 1}},
        record_message({"id": 1}, "unknown_stream_is_not_taken"),
    ]
    with pytest.raises(Exception, match="unknown_stream_is_not_taken"):
        listen_in_process(tmp_path / "typed.db", messages, direct=True, batch_size_rows=4)
    assert taken == [*[True] * 6, False, True, False, False, False]
    # Without the last line, the same database as the SDK's own dispatch.
    typed = listen_in_process(tmp_path / "typed2.db", messages[:-1], direct=True, batch_size_rows=4)
    sdk = listen_in_process(tmp_path / "sdk.db", messages[:-1], direct=False, batch_size_rows=4)
    assert dump_database(tmp_path / "typed2.db") == dump_database(tmp_path / "sdk.db")
    sink, sdk_sink = typed._sinks_active["host_detections"], sdk._sinks_active["host_detections"]
    assert sink._total_records_read == sdk_sink._total_records_read == 9
    rows = sqlite3.connect(tmp_path / "typed2.db").execute(
        "SELECT unique_vuln_id, status, severity, qds_factors FROM host_detections"
        " WHERE unique_vuln_id IN (7, 8) ORDER BY 1"
    )
    factors = '[{"name":"CVSS","value":"7.5"},{"name":"EPSS","value":"0.1"}]'
    assert list(rows) == [(7, "third", 3, factors), (8, "fallback last", 4, factors)]


@pytest.mark.parametrize(
    ("record", "error", "fragment"),
    [
        (detection(9, severity="high"), TargetSQLiteError, "field 'severity'"),
        (detection(9, last_found_datetime="yesterday"), TargetSQLiteError, "'yesterday'"),
        (detection(9, qds_factors=[{"name": 1}]), TargetSQLiteError, "field 'qds_factors.0.name'"),
        (detection(9, unique_vuln_id=None), TargetSQLiteError, "field 'unique_vuln_id'"),
        ({"host_id": 1}, MissingKeyPropertiesError, "missing one or more key_properties"),
    ],
)
@pytest.mark.parametrize("typed", [True, False], ids=["typed", "sdk"])
def test_invalid_records_fail_with_the_generic_paths_error(
    tmp_path: Path,
    record: dict[str, t.Any],
    error: type[Exception],
    fragment: str,
    *,
    typed: bool,
) -> None:
    messages = [
        schema_message(keys=DETECTION_KEYS),
        record_message(detection(1)),
        record_message(record),
    ]
    with pytest.raises(error, match=fragment) as raised:
        listen_in_process(tmp_path / "out.db", messages, direct=typed, batch_size_rows=4)
    assert "\n" not in str(raised.value) or error is MissingKeyPropertiesError
