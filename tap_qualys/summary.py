"""What a run says about each stream: how it syncs when it begins, and one line when it is done.

A healthy run logs no warning. The SDK's own start line names the replication method, which is
``full_table`` for ``hosts`` (it keeps its own ``vm_processed_after`` bookmark, not a replication
key) and for the child streams; and the SDK warns, once per unsorted incremental stream, that
progress is not resumable. Both contradict what the streams do, so the start line is written
here from what the stream says of itself, and the SDK's warning is dropped.
"""

from __future__ import annotations

import logging
import sys
import time
import typing as t
from dataclasses import dataclass

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from tap_qualys.retries import RequestStats

#: The SDK's start line (``Stream.sync``); a child stream's adds its context keys.
SDK_START = "Beginning sync of '%s' in %s mode"
#: The SDK's warning for an incremental stream with ``is_sorted = False`` (helpers._state).
SDK_UNSORTED = "Stream is assumed to be unsorted"


class _DropUnsortedWarning(logging.Filter):
    """Drop the SDK's unsorted-stream warning. Unsorted streams here move their bookmark only
    when they complete (CSAM also saves a resume point after every page), which is the design
    the README's "Resume points" describe, not a fault; the stream's start line says so."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(SDK_UNSORTED)


_FILTER = _DropUnsortedWarning()


def drop_sdk_unsorted_warning() -> None:
    """Install the filter on the SDK's logger, once."""
    sdk_logger = logging.getLogger("singer_sdk")
    if _FILTER not in sdk_logger.filters:
        sdk_logger.addFilter(_FILTER)


@dataclass
class SyncClock:
    """When a stream's sync began: its first start line (a child stream begins once per
    context, a batch of hosts or a policy; its clock starts with the first)."""

    started: float | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def seconds(self) -> float:
        return time.monotonic() - self.started if self.started is not None else 0.0


def summary_line(
    name: str, records: int, stats: RequestStats, seconds: float, limited: str
) -> tuple[str, tuple[t.Any, ...]]:
    """The one end-of-stream line: records, requests, retries, rate-limit answers, time, rate.

    ``limited`` names the rate-limit answer the API sends: ``409s`` (VM API, concurrency and
    rate limits together) or ``429s`` (gateway).
    """
    rate = records / seconds if seconds > 0 else 0.0
    return (
        "%s: done: %s records, %d requests, %d retries, %d %s, %.1f s, %s records/s",
        (
            name,
            f"{records:,}",
            stats.requests,
            stats.retries,
            stats.concurrency_409s + stats.rate_409s,
            limited,
            seconds,
            f"{rate:,.0f}",
        ),
    )
