"""Bookmarks the tap can trust: the state it starts from, and the clocks new bookmarks come from.

A bookmark in the future freezes a stream for good: every later run asks Qualys for changes
after it, gets none, and exits 0. So no bookmark is ever later than this machine's clock plus
``max_clock_skew_minutes``:

- **Stored bookmarks** are read before any stream syncs. One that is not a date-time, or that
  lies beyond that horizon, stops the run with one line naming the stream, the value and the
  fix. It is refused rather than clamped to now: clamping would silently skip every change
  between the last good run and now, and only the user knows when that was.
- **New bookmarks** come from Qualys' clock (a Host List answer's DATETIME, the gateway's
  ``Date`` header) and from record values capped at the run's start. A server time beyond the
  horizon is not taken: the stream logs a warning naming it and keeps its previous bookmark. A
  record value beyond it gets the same warning; the cap keeps it out of the bookmark.

The default skew, 60 minutes, is the smallest overlap a stream re-reads (``hosts_overlap_minutes``,
``csam_overlap_minutes``): a server clock that far ahead costs nothing the overlap does not cover.
"""

from __future__ import annotations

import io
import json
import typing as t
from datetime import datetime, timedelta, timezone

from tap_qualys.casting import format_utc, parse_utc
from tap_qualys.errors import CastError, StateError

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

DEFAULT_MAX_CLOCK_SKEW_MINUTES = 60
#: The keys of a stream's (or partition's) state that hold a date-time bookmark.
BOOKMARK_KEYS = ("replication_key_value", "vm_processed_after")
#: How to get out of a bad state: said by every state error.
#: Earlier bookmarks are refused: Qualys holds nothing that old, and an overlap of days taken
#: from a date near year 1 is out of datetime's range.
EARLIEST_YEAR = 1900
FIX = (
    "clear it with `meltano state clear <state-id>` (every stream is then read in full) or set a "
    "correct value with `meltano state set` (or edit the --state file)"
)


def read_state_file(handle: t.IO[str]) -> io.StringIO:
    """The ``--state`` file, checked to be a JSON object of stream states, ready to re-read.

    The SDK would fail on a bad file with a bare JSONDecodeError naming neither the file nor
    the value; this reads it first and says what is wrong, in one line.
    """
    text = handle.read()
    try:
        state = json.loads(text)
    except ValueError as exc:
        msg = f"not JSON ({exc}); {FIX}"
        raise StateError(msg) from None
    problem = _shape_problem(state)
    if problem:
        msg = f"{problem}; {FIX}"
        raise StateError(msg)
    return io.StringIO(text)


def _shape_problem(state: t.Any) -> str | None:
    if not isinstance(state, dict):
        return f'a JSON {type(state).__name__}, not an object with "bookmarks"'
    bookmarks = state.get("bookmarks", {})
    if not isinstance(bookmarks, dict):
        return '"bookmarks" is not an object of stream states'
    for stream, stream_state in bookmarks.items():
        if not isinstance(stream_state, dict):
            return f"stream {stream}: its state {json.dumps(stream_state)[:60]} is not an object"
        resume = stream_state.get("resume")
        if resume is not None and not isinstance(resume, dict):
            return f"stream {stream}: its resume point {json.dumps(resume)[:60]} is not an object"
    return None


def max_clock_skew(config: Mapping[str, t.Any]) -> timedelta:
    """How far Qualys' clock may run ahead of this machine's (``max_clock_skew_minutes``)."""
    minutes = config.get("max_clock_skew_minutes", DEFAULT_MAX_CLOCK_SKEW_MINUTES)
    return timedelta(minutes=float(minutes))


def horizon(config: Mapping[str, t.Any], now: datetime | None = None) -> datetime:
    """The latest moment a bookmark may be: this machine's clock plus the allowed skew."""
    return (now or datetime.now(timezone.utc)) + max_clock_skew(config)


def beyond_horizon(value: datetime | str, config: Mapping[str, t.Any]) -> bool:
    """Whether a server time or record value is too far in the future to become a bookmark."""
    return later_than(value, horizon(config))


def later_than(value: t.Any, latest: datetime) -> bool:
    """Whether a date-time value is after ``latest``; False for anything that is not a date
    (epoch milliseconds, garbage: the record's own checks deal with those, not the bookmark's).
    """
    try:
        return value is not None and parse_utc(value) > latest
    except CastError:
        return False


def future_warning(stream: str, what: str, value: datetime | str, outcome: str) -> str:
    """The warning for a server time or record value that does not become a bookmark."""
    shown = format_utc(value) if isinstance(value, datetime) else value
    return (
        f"{stream}: {what} {shown} is ahead of this machine's clock by more than "
        f"max_clock_skew_minutes, so it does not become the bookmark: {outcome}. "
        "Check Qualys' data and both clocks (NTP)."
    )


def kept_bookmark(previous: str | None) -> str:
    """``outcome`` of :func:`future_warning` for a stream that keeps its previous bookmark."""
    if previous:
        return f"the bookmark stays {previous}"
    return "no bookmark is written, so the next run reads everything again"


def check_bookmarks(
    state: Mapping[str, t.Any],
    config: Mapping[str, t.Any],
    now: datetime | None = None,
) -> None:
    """Refuse a state whose date-time bookmarks are unreadable or in the future."""
    now = now or datetime.now(timezone.utc)
    latest = horizon(config, now)
    problem = _shape_problem(state)
    if problem:
        msg = f"{problem}; {FIX}"
        raise StateError(msg)
    for stream, stream_state in state.get("bookmarks", {}).items():
        for key, value in _date_bookmarks(stream_state):
            try:
                moment = parse_utc(value)
            except CastError as exc:
                msg = f"stream {stream}: bookmark {key} is {exc}; {FIX}"
                raise StateError(msg) from None
            if moment.year < EARLIEST_YEAR:
                # The overlap is subtracted from it: near year 1 that is out of datetime's range.
                msg = f"stream {stream}: bookmark {key} {value} is before {EARLIEST_YEAR}; {FIX}"
                raise StateError(msg)
            if moment > latest:
                msg = (
                    f"stream {stream}: bookmark {key} {value} is in the future (this "
                    f"machine's clock says {format_utc(now)}, max_clock_skew_minutes "
                    f"{max_clock_skew(config).total_seconds() / 60:g}), so every later run "
                    f"would skip the changes until then; {FIX}"
                )
                raise StateError(msg)


def _date_bookmarks(stream_state: Mapping[str, t.Any]) -> Iterator[tuple[str, t.Any]]:
    states: list[tuple[str, t.Any]] = [("", stream_state)]
    states += [
        (f"partitions[{i}].", part) for i, part in enumerate(stream_state.get("partitions") or [])
    ]
    for prefix, each in states:
        if not isinstance(each, dict):
            continue
        for key in BOOKMARK_KEYS:
            if each.get(key) is not None:
                yield prefix + key, each[key]
        # CSAM's resume point keeps the start of the interrupted run (streams/csam.py).
        resume = each.get("resume")
        if isinstance(resume, dict) and resume.get("started") is not None:
            yield prefix + "resume.started", resume["started"]
