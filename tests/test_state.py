"""tap_qualys.bookmarks and the date readers it uses from casting: what state the tap accepts."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tap_qualys.bookmarks import beyond_horizon, check_bookmarks, read_state_file
from tap_qualys.casting import format_utc, http_date, parse_utc
from tap_qualys.errors import CastError, StateError

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
CONFIG: dict[str, Any] = {"max_clock_skew_minutes": 60}


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-01T00:00:00Z", datetime(2026, 11, 1, tzinfo=timezone.utc)),
    ("2026-11-01T00:00:00.250Z", datetime(2026, 11, 1, 0, 0, 0, 250000, tzinfo=timezone.utc)),
    ("2026-11-01T02:00:00+02:00", datetime(2026, 11, 1, tzinfo=timezone.utc)),
    ("2026-11-01T00:00:00", datetime(2026, 11, 1, tzinfo=timezone.utc)),
    ("2026-11-01", datetime(2026, 11, 1, tzinfo=timezone.utc)),
])
def test_parse_utc_reads_every_form_the_tap_writes(text: str, expected: datetime) -> None:
    assert parse_utc(text) == expected


@pytest.mark.parametrize("value", ["yesterday", "", 12345, 1.5, True, None, ["2026-11-01"]])
def test_parse_utc_refuses_what_is_not_a_date_time(value: Any) -> None:
    with pytest.raises(CastError, match="not an ISO-8601 date-time"):
        parse_utc(value)


def test_format_utc_in_both_qualys_forms() -> None:
    moment = datetime(2026, 11, 1, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=1)))
    assert format_utc(moment) == "2026-11-01T00:02:03Z"
    assert format_utc(moment, milliseconds=True) == "2026-11-01T00:02:03.456Z"


def test_http_date() -> None:
    assert http_date("Fri, 04 Dec 2026 17:25:44 GMT") == datetime(
        2026, 12, 4, 17, 25, 44, tzinfo=timezone.utc)
    assert http_date(None) is None
    assert http_date("tomorrow") is None


def test_beyond_horizon_uses_the_skew() -> None:
    soon = datetime.now(timezone.utc) + timedelta(minutes=30)
    assert not beyond_horizon(soon, CONFIG)
    assert beyond_horizon(soon, {"max_clock_skew_minutes": 10})
    assert not beyond_horizon("not a date", CONFIG)


def check(bookmarks: dict[str, Any]) -> None:
    check_bookmarks({"bookmarks": bookmarks}, CONFIG, now=NOW)


def test_plausible_bookmarks_pass() -> None:
    check({
        "knowledge_base": {"replication_key_value": "2026-12-04T12:59:00Z"},  # within the skew
        "hosts": {"vm_processed_after": "2026-11-01T00:00:00Z"},
        "csam_assets": {"replication_key_value": None, "resume": {"started": None}},
    })
    check_bookmarks({}, CONFIG, now=NOW)


@pytest.mark.parametrize(("bookmarks", "names"), [
    ({"hosts": {"vm_processed_after": "2026-12-04T13:01:00Z"}}, ("hosts", "in the future")),
    ({"csam_assets": {"resume": {"started": "2099-01-01T00:00:00+00:00"}}},
     ("csam_assets", "resume.started")),
    ({"pcrs_policies": {"partitions": [{"replication_key_value": "2099-01-01"}]}},
     ("pcrs_policies", "partitions[0].replication_key_value")),
    ({"knowledge_base": {"replication_key_value": "yesterday"}}, ("knowledge_base", "yesterday")),
    ({"hosts": "2026-11-01"}, ("hosts", "not an object")),
])
def test_bad_bookmarks_are_refused_naming_stream_and_value(
    bookmarks: dict[str, Any], names: tuple[str, ...]
) -> None:
    with pytest.raises(StateError) as raised:
        check(bookmarks)
    message = str(raised.value)
    assert all(name in message for name in names), message
    assert "meltano state clear" in message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["", "{", "[]", '{"bookmarks": []}'])
def test_a_state_file_that_is_not_a_state_is_refused(text: str) -> None:
    handle = io.StringIO(text)
    with pytest.raises(StateError, match="meltano state clear"):
        read_state_file(handle)


def test_a_good_state_file_is_handed_on_unchanged() -> None:
    state = {"bookmarks": {"hosts": {"vm_processed_after": "2026-11-01T00:00:00Z"}}}
    assert json.loads(read_state_file(io.StringIO(json.dumps(state))).read()) == state
