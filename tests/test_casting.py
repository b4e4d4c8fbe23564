"""Value casting and the schema -> converter table compilation."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest

from tap_qualys.casting import (
    Kind,
    compile_schema,
    load_stream_spec,
    to_boolean,
    to_datetime,
    to_integer,
    to_number,
    to_string,
)
from tap_qualys.errors import CastError

STREAMS = ("knowledge_base", "hosts", "host_detections")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("42", 42), ("0", 0), (" 7\n", 7), ("-3", -3), ("", None), ("  \n ", None)],
)
def test_to_integer(text, expected):
    assert to_integer(text) == expected


@pytest.mark.parametrize("text", ["abc", "1_000", "+1", "4.0", "\u0663", "1 2", "-", "0x1F"])
def test_to_integer_rejects(text):
    with pytest.raises(CastError, match="not an integer"):
        to_integer(text)


@pytest.mark.parametrize(
    ("text", "expected"), [("7.5", 7.5), ("10", 10.0), (" 0.125 ", 0.125), ("-1.5", -1.5)]
)
def test_to_number(text, expected):
    value = to_number(text)
    assert value == expected
    assert isinstance(value, float)


def test_to_number_keeps_the_decimal_text():
    # The float's shortest repr round-trips the text, so JSON shows what Qualys sent.
    assert repr(to_number("7.3")) == "7.3"
    assert repr(to_number("0.97")) == "0.97"


@pytest.mark.parametrize("text", ["nan", "inf", "1e5", "1_0", "7,5", "7.", ".5", "N/A"])
def test_to_number_rejects(text):
    with pytest.raises(CastError, match="not a decimal number"):
        to_number(text)


@pytest.mark.parametrize("text", ["9" * 400, "-" + "9" * 400 + ".5"])
def test_to_number_rejects_what_overflows_a_float(text):
    with pytest.raises(CastError, match="out of range"):
        to_number(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", False), ("1", True), (" 1 ", True), ("true", True), ("False", False), ("", None)],
)
def test_to_boolean(text, expected):
    assert to_boolean(text) is expected


@pytest.mark.parametrize("text", ["2", "yes", "-1", "on"])
def test_to_boolean_rejects(text):
    with pytest.raises(CastError, match="boolean"):
        to_boolean(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T03:12:45Z", "2026-11-20T03:12:45Z"),
        ("\n  2026-11-20T03:12:45Z\n", "2026-11-20T03:12:45Z"),
        ("2026-11-20", "2026-11-20T00:00:00Z"),
        ("2026-11-20T05:12:45+02:00", "2026-11-20T03:12:45Z"),
        ("2026-11-20T03:12:45", "2026-11-20T03:12:45Z"),
        ("2026-11-20T03:12:45.123Z", "2026-11-20T03:12:45Z"),
        ("", None),
    ],
)
def test_to_datetime(text, expected):
    assert to_datetime(text) == expected


@pytest.mark.parametrize(
    "text",
    ["2026-13-01T00:00:00Z", "2026-02-30", "yesterday", "20/11/2026", "2026-11-20T25:00:00Z"],
)
def test_to_datetime_rejects(text):
    with pytest.raises(CastError, match="date-time"):
        to_datetime(text)


def test_to_datetime_cache_does_not_hide_errors():
    assert to_datetime("2026-11-20T03:12:45Z") == "2026-11-20T03:12:45Z"
    with pytest.raises(CastError):
        to_datetime("2026-11-20T03:12:99Z")
    with pytest.raises(CastError):
        to_datetime("2026-11-20T03:12:99Z")  # not cached as valid by the first attempt


def test_to_string_strips_padding_only():
    assert to_string("\n   Windows Server 2019\n  ") == "Windows Server 2019"
    assert to_string("a\tb\nc") == "a\tb\nc"
    assert to_string("  ") is None


def test_compile_schema_kinds():
    spec = compile_schema(
        {
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {"type": "integer"},
                "score": {"type": ["null", "number"]},
                "seen": {"type": ["null", "string"], "format": "date-time"},
                "results": {"type": ["null", "string"]},
                "qds": {"type": ["null", "integer"]},
                "qds_severity": {"type": ["null", "string"]},
                "qds_factors": {
                    "type": ["null", "array"],
                    "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
                    },
                },
                "labels": {"type": ["null", "array"], "items": {"type": "string"}},
                "blob": {"type": ["null", "object"], "additionalProperties": True},
                "change_date": {"type": ["null", "string"], "format": "date-time"},
            },
        },
        "demo",
    )
    fields = spec.fields
    assert fields["ID"].cast is to_integer
    assert fields["SCORE"].cast is to_number
    assert fields["SEEN"].cast is to_datetime
    assert fields["RESULTS"].kind is Kind.VERBATIM
    assert fields["QDS"].attribute == ("severity", "qds_severity")
    assert "QDS" not in spec.scalars  # has an attribute: not on the fast path
    assert spec.scalars["ID"] == ("id", to_integer)
    factors = fields["QDS_FACTORS"]
    assert factors.kind is Kind.LIST
    assert factors.item is not None
    assert factors.item.kind is Kind.TEXT_OBJECT
    assert factors.item.spec is not None
    assert factors.item.spec.text_key == "value"
    assert factors.item.spec.attributes == (("name", "name", to_string),)
    assert fields["LABELS"].item is not None
    assert fields["LABELS"].item.kind is Kind.SCALAR
    assert fields["BLOB"].kind is Kind.RAW
    assert fields["CHANGES_DATE"] is fields["CHANGE_DATE"]  # the other spelling
    assert spec.required == ("id",)
    assert list(spec.template) == [
        "id", "score", "seen", "results", "qds", "qds_severity", "qds_factors", "labels",
        "blob", "change_date",
    ]  # fmt: skip


def test_unsupported_type_fails_at_compile_time():
    with pytest.raises(TypeError, match="no caster"):
        compile_schema({"properties": {"x": {"type": ["integer", "string"]}}}, "demo")


@pytest.mark.parametrize("stream", STREAMS)
def test_stream_schemas_are_valid_draft7_and_compile(stream):
    text = resources.files("tap_qualys.schemas").joinpath(f"{stream}.json").read_text()
    schema = json.loads(text)
    jsonschema.Draft7Validator.check_schema(schema)
    spec = load_stream_spec(stream)
    assert spec.required
    for key in spec.required:  # keys are never null
        assert schema["properties"][key]["type"] == "integer"


def test_stream_keys_and_special_fields():
    detections = load_stream_spec("host_detections")
    assert detections.required == ("host_id", "unique_vuln_id", "qid")
    assert detections.fields["RESULTS"].kind is Kind.VERBATIM
    assert detections.fields["IS_IGNORED"].cast is to_boolean
    hosts = load_stream_spec("hosts")
    assert hosts.required == ("id",)
    vuln_count = hosts.fields["TRURISK_SCORE_FACTORS"].spec
    assert vuln_count is not None
    assert vuln_count.fields["VULN_COUNT"].kind is Kind.REPEATED
    kb = load_stream_spec("knowledge_base")
    assert kb.required == ("qid",)
    assert "last_service_modification_datetime" in kb.template
    assert kb.fields["CVSS_V4"].kind is Kind.RAW
    assert kb.fields["THREAT_INTELLIGENCE"].item is not None
    assert kb.fields["THREAT_INTELLIGENCE"].item.kind is Kind.TEXT_OBJECT


def test_comma_separated_lists_become_arrays_of_their_item_type():
    kb = load_stream_spec("knowledge_base")
    hosts = load_stream_spec("hosts")
    assert kb.fields["SUPPORTED_MODULES"].cast("CA-Windows Agent, VM,") == [
        "CA-Windows Agent",
        "VM",
    ]
    assert kb.fields["SUPPORTED_MODULES"].cast("  ") is None
    assert hosts.fields["ASSET_GROUP_IDS"].cast("12,34") == [12, 34]
    with pytest.raises(CastError):
        hosts.fields["ASSET_GROUP_IDS"].cast("12,x")


def test_open_object_casts_its_declared_scores_and_keeps_the_rest():
    cvss_v4 = load_stream_spec("knowledge_base").fields["CVSS_V4"]
    assert cvss_v4.kind is Kind.RAW
    raw = {"base": "9.3", "threat": "8.1", "threat_metrics": {"exploit_maturity": "A"}}
    assert cvss_v4.cast(raw) == {
        "base": 9.3, "threat": 8.1, "threat_metrics": {"exploit_maturity": "A"},
    }  # fmt: skip
    with pytest.raises(CastError):
        cvss_v4.cast({"base": {"value": "9.3"}})
