"""The msgspec reader's line loop counts and fails exactly like the SDK's."""

from __future__ import annotations

import io
import typing as t

import pytest
from singer_sdk.singerlib.encoding.base import GenericSingerReader
from singer_sdk.singerlib.exceptions import InvalidInputLine

from target_qualys_sqlite.reader import MsgspecSingerReader

LINES = b"".join(
    [
        b'{"type": "SCHEMA", "stream": "s", "schema": {"properties": {}}}\n',
        b'{"type": "RECORD", "stream": "s", "record": {"id": 1}}\n',
        b'{"type": "RECORD", "stream": "s", "record": {"id": 2}}\n',
        b'{"type": "STATE", "value": {}}\n',
    ]
)


def _run(
    loop: t.Callable[..., t.Counter[str]], data: bytes
) -> tuple[t.Counter[str], list[dict[str, t.Any]]]:
    seen: list[dict[str, t.Any]] = []
    callbacks = dict.fromkeys(("SCHEMA", "RECORD", "STATE"), seen.append)
    counts = loop(MsgspecSingerReader(), io.BytesIO(data), callbacks)
    return counts, seen


def test_same_messages_and_counts_as_the_sdk_loop() -> None:
    ours = _run(MsgspecSingerReader.process_lines, LINES)
    assert ours == _run(GenericSingerReader.process_lines, LINES)
    assert ours[0] == {"SCHEMA": 1, "RECORD": 2, "STATE": 1}


@pytest.mark.parametrize(
    ("line", "error", "fragment"),
    [
        (b'{"stream": "s"}\n', InvalidInputLine, "missing required type"),
        (b'{"type": "NOPE"}\n', ValueError, "Unknown message type 'NOPE'"),
        (b"[1]\n", InvalidInputLine, "not a JSON object"),
    ],
)
@pytest.mark.parametrize(
    "loop", [MsgspecSingerReader.process_lines, GenericSingerReader.process_lines]
)
def test_same_errors_as_the_sdk_loop(
    loop: t.Callable[..., t.Counter[str]], line: bytes, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        _run(loop, LINES + line)
