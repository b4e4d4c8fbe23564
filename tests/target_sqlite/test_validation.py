"""The compiled validator accepts exactly what the SDK's jsonschema validator accepts."""

from __future__ import annotations

import random
from typing import Any

import jsonschema
import pytest
from singer_sdk.exceptions import InvalidRecord

from target_qualys_sqlite.validation import CompiledSchemaValidator, compile_check

SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": ["null", "string"], "description": "annotation only"},
        "score": {"type": ["null", "number"]},
        "flag": {"type": ["null", "boolean"]},
        "seen": {"type": ["null", "string"], "format": "date-time"},
        "factors": {
            "type": ["null", "array"],
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "value": {"type": ["null", "string"]}},
                "required": ["name"],
                "additionalProperties": False,
            },
        },
        "anything": {},
    },
    "required": ["id"],
}

VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -3,
    2**70,
    1.0,
    2.5,
    "",
    "text",
    "2026-11-23T15:30:00Z",
    [],
    [1],
    [{"name": "a"}],
    [{"name": "a", "value": None}],
    [{"value": "x"}],
    [{"name": "a", "extra": 1}],
    {},
    {"name": "a"},
]


def test_fast_check_never_accepts_what_jsonschema_rejects() -> None:
    fast = compile_check(SCHEMA)
    assert fast is not None
    reference = jsonschema.Draft7Validator(SCHEMA)
    rng = random.Random(42)
    properties = list(SCHEMA["properties"])
    accepted = 0
    for _ in range(20_000):
        record: dict[str, Any] = {}
        for name in rng.sample(properties, rng.randint(0, len(properties))):
            record[name] = rng.choice(VALUES)
        if fast(record):
            accepted += 1
            assert reference.is_valid(record), record
    assert accepted > 100  # the fast path is actually exercised


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"id": True}, "field 'id': True is not of type 'integer'"),
        ({"id": 1, "score": "7.5"}, "field 'score'"),
        ({"id": 1, "factors": [{"value": "x"}]}, "'name' is a required property"),
        ({"name": "x"}, "'id' is a required property"),
        ({"id": 1, "seen": "last tuesday"}, "'last tuesday' in field 'seen'"),
    ],
)
def test_invalid_records_are_named(record: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidRecord, match=expected.replace("(", r"\(")):
        CompiledSchemaValidator(SCHEMA).validate(record)


def test_integer_valued_float_is_left_to_jsonschema() -> None:
    # Draft 7 counts 1.0 as an integer; the fast path says no, the full validator says yes.
    CompiledSchemaValidator(SCHEMA).validate({"id": 1.0})


def test_unsupported_keywords_fall_back_to_jsonschema() -> None:
    schema = {"type": "object", "properties": {"status": {"enum": ["Active", "Fixed"]}}}
    validator = CompiledSchemaValidator(schema)
    validator.validate({"status": "Active"})
    with pytest.raises(InvalidRecord, match="field 'status'"):
        validator.validate({"status": "Gone"})
