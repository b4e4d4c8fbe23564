"""Singer message reader that parses input lines with msgspec."""

from __future__ import annotations

import sys
import typing as t
from collections import Counter

import msgspec
from singer_sdk.io_base import SingerReader
from singer_sdk.singerlib.exceptions import InvalidInputLine

from target_qualys_sqlite.sdk import unknown_message

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

_decoder = msgspec.json.Decoder()


class MsgspecSingerReader(SingerReader):
    """The SDK's reader with a faster JSON parser (the SDK's ``message_reader_class`` hook).

    The stdlib parser was the largest single per-record cost after validation. msgspec keeps
    integers of any size exact (Qualys ids above 2^53 included) and yields floats instead of
    Decimals, which is what SQLite stores for a REAL column anyway.
    """

    def __init__(self) -> None:
        super().__init__()
        # Raw bytes from the pipe: msgspec parses UTF-8 itself, so decoding every line to str
        # first would be wasted work.
        self.default_input = t.cast("t.IO[str]", getattr(sys.stdin, "buffer", sys.stdin))
        # Set by the target: takes a line that may be a RECORD it can load without the generic
        # parse and dispatch; False means the line takes the usual way.
        self.take_record_line: t.Callable[[bytes | str], bool] | None = None

    @override
    def deserialize_json(self, line: str | bytes) -> dict[str, t.Any]:
        try:
            message = _decoder.decode(line)
        except msgspec.DecodeError as exc:
            msg = f"input line is not valid JSON ({exc}): {line[:200]!r}"
            raise InvalidInputLine(msg) from exc
        if not isinstance(message, dict):
            msg = f"Singer message is not a JSON object: {line[:200]!r}"
            raise InvalidInputLine(msg)
        return message

    @override
    def process_lines(
        self,
        file_input: t.IO[str] | None,
        callbacks: dict[str, t.Callable[[dict[str, t.Any]], None]],
    ) -> t.Counter[str]:
        # The SDK's loop builds a set of every message's keys for its "type" check (~1 us a line,
        # measured). Here a plain `in` test comes first and the SDK's check runs only to raise
        # its error; same callbacks, errors and counts (tests/target_sqlite/test_reader.py).
        # Lines the target takes as they are (typed RECORD decoding, rows.py) skip all of that.
        stats: t.Counter[str] = Counter()
        deserialize = self.deserialize_json
        for line in file_input or self.default_input:
            take_record_line = self.take_record_line  # changes with SCHEMA messages
            if take_record_line is not None and take_record_line(line):
                stats["RECORD"] += 1
                continue
            message = deserialize(line)
            if "type" not in message:
                self.assert_line_requires(message, requires={"type"})
            message_type = message["type"]
            callback = callbacks.get(message_type)
            if callback is None:
                unknown_message(self, message)
            else:
                callback(message)
            stats[message_type] += 1
        return stats
