"""What a new user sees on the demo: the README's queries answer, and a healthy run logs calmly.

The world is the demo's (`scripts/demo.sh`: seed 7, 100 hosts, the default KnowledgeBase).
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from qualys_simulator.testing import SimulatorProcess
from tests.e2e.test_pipeline import readme_queries
from tests.reliability.harness import ALL_STREAMS, LOG_LINE, Pipeline, RunResult, simulator

#: The one end-of-stream line (tap_qualys/summary.py).
SUMMARY = re.compile(
    r"^(?P<stream>\w+): done: (?P<records>[\d,]+) records, (?P<requests>\d+) requests, "
    r"(?P<retries>\d+) retries, (?P<limited>\d+) (?:409s|429s), (?P<seconds>[\d.]+) s, "
    r"(?P<rate>[\d,]+) records/s$"
)
#: Lines that contradicted the README on a healthy run.
MISLEADING = (
    "in full_table mode",
    "Stream is assumed to be unsorted",
    "could not be detected",
    "returned no records",
)


@pytest.fixture(scope="module")
def demo_sim() -> Iterator[SimulatorProcess]:
    with simulator(hosts=100, seed=7) as sim:
        yield sim


@pytest.fixture
def pipeline(demo_sim: SimulatorProcess, tmp_path: Path) -> Pipeline:
    # The demo's settings: Meltano passes none but the credentials and the simulator's URLs.
    return Pipeline(demo_sim, tmp_path, truncation_limit=None, host_batch_size=None,
                    csam_page_size=None, pcrs_batch_size=None)


def messages(result: RunResult) -> list[tuple[str, str]]:
    """(level, message) of every log line of the tap and the target."""
    lines = []
    for text in (result.tap_stderr, result.target_stderr):
        for line in text.splitlines():
            if match := LOG_LINE.match(line):
                lines.append((match["level"], match["message"]))
    return lines


def summaries(result: RunResult) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for _, message in messages(result):
        if match := SUMMARY.match(message):
            found.setdefault(match["stream"], []).append(match.groupdict())
    return found


def assert_healthy(result: RunResult) -> None:
    logged = messages(result)
    assert logged, result.describe()
    warnings = [m for level, m in logged if level not in {"INFO", "DEBUG"}]
    assert not warnings, "a healthy run logged:\n" + "\n".join(warnings)
    misleading = [m for _, m in logged if any(text in m for text in MISLEADING)]
    assert not misleading, "misleading lines:\n" + "\n".join(misleading)
    emitted = Counter(m["stream"] for m in result.tap_messages() if m.get("type") == "RECORD")
    lines = summaries(result)
    assert sorted(lines) == sorted(ALL_STREAMS), lines
    for stream, (line, *more) in lines.items():
        assert not more, f"{stream}: more than one summary line: {lines[stream]}"
        records = int(line["records"].replace(",", ""))
        assert records == emitted[stream], (stream, line, emitted[stream])
        assert int(line["requests"]) >= (1 if records else 0), line
        assert int(line["retries"]) == 0, line
        assert int(line["limited"]) == 0, line
        assert float(line["seconds"]) >= 0, line


def test_readme_queries_answer_on_the_demo_world(pipeline: Pipeline) -> None:
    pipeline.sync()
    connection = sqlite3.connect(pipeline.database)
    try:
        for query in readme_queries():
            assert connection.execute(query).fetchall(), f"no rows for:\n{query}"
    finally:
        connection.close()


def test_a_healthy_run_and_its_rerun_log_what_they_do(pipeline: Pipeline) -> None:
    first = pipeline.sync()
    assert_healthy(first)
    loaded = pipeline.loaded()
    for stream, (line,) in summaries(first).items():
        assert int(line["records"].replace(",", "")) == len(loaded[stream]), (stream, line)
    # Nothing changed upstream: the incremental rerun finds little or nothing, calmly.
    second = pipeline.sync(state=first.last_state)
    assert_healthy(second)
    log = "\n".join(m for _, m in messages(second))
    assert "Beginning incremental sync of 'hosts'" in log, log
