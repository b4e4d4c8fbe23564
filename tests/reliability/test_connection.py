"""Nothing listening: a wrong URL fails fast, a server lost mid-run is waited for.

A connection refused, or a host name that does not resolve, on a run's first call to a server
(nothing has answered from it yet) is a configuration or availability problem: the run fails
within about 30 seconds, with the default retry settings, in one line naming the URL. Once that
server has answered, the same failures are transient and keep the whole retry budget.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.errors import assert_one_clear_line, has_traceback
from tests.reliability.harness import SMALL_WORLD, Pipeline, simulator, wait_until

#: The tap's own retry defaults (max_retries 8, retry_backoff_seconds 2): 4 to 8.5 minutes of
#: retries for a transient failure.
DEFAULT_RETRIES = {"max_retries": None, "retry_backoff_seconds": None}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


#: (streams, URL or None for a free loopback port, what the error line says). The VM API and the
#: gateway, each with nothing listening and with a name that does not resolve.
NOTHING_CASES = [
    (streams, url, says)
    for streams in (("hosts",), ("csam_assets",))
    for url, says in (
        (None, "connection refused"),
        ("https://qualysapi.nowhere.invalid", "does not resolve"),
    )
]


def run_at_once(cases: list[Any], one: Callable[[Path, Any], Any], tmp_path: Path) -> list[Any]:
    """``one(workdir, case)`` for every case in parallel threads: each run spends its ~20-60 s
    waiting on timeouts, not on the CPU, so the cases take the time of the slowest."""
    workdirs = [tmp_path / f"case{i}" for i in range(len(cases))]
    for workdir in workdirs:
        workdir.mkdir()
    with ThreadPoolExecutor(len(cases)) as pool:
        return list(pool.map(one, workdirs, cases))


def test_a_first_call_to_nothing_fails_in_seconds(tmp_path: Path) -> None:
    with simulator(hosts=2, seed=1) as sim:  # for the discovery run only

        def one(workdir: Path, case: tuple[tuple[str, ...], str | None, str]) -> Any:
            streams, url, says = case
            url = url or f"http://127.0.0.1:{free_port()}"
            pipeline = Pipeline(sim, workdir, **DEFAULT_RETRIES)
            config = pipeline.config(api_server=url, gateway_url=url)
            # Bounded: the full retry budget would take 4 to 8.5 minutes.
            return streams, url, says, pipeline.run(config=config, streams=streams, timeout=75)

        results = run_at_once(NOTHING_CASES, one, tmp_path)
    for streams, url, says, result in results:
        line = assert_one_clear_line(result, names=(url, "api_server"), says=(says,))
        assert not has_traceback(result), (streams, result.describe())
        assert "gateway_url" in line, (streams, line)


def test_a_server_lost_after_it_answered_keeps_the_full_retry_budget(tmp_path: Path) -> None:
    port = free_port()
    options = {**SMALL_WORLD, "port": port, "record_delay_sec": 0.05}
    first = simulator(**options).start()
    try:
        pipeline = Pipeline(first, tmp_path, **DEFAULT_RETRIES)
        running = pipeline.start(streams=("knowledge_base",))
        wait_until(lambda: "knowledge_base: page 1" in (running.directory / "tap.stderr")
                   .read_text(errors="replace"), 120, "the first KnowledgeBase page", running)
        first.stop()
        down_since = time.monotonic()
        # Longer than a first call may spend on a server that never answered.
        wait_until(lambda: time.monotonic() - down_since > 30 or not running.alive(), 60,
                   "30 s of retries")
        assert running.alive(), running.wait(10).describe()
        with simulator(**options) as second:
            result = running.wait(240)
            assert (result.tap_rc, result.target_rc) == (0, 0), result.describe()
            pipeline.sim = second
            pipeline.assert_ground_truth(("knowledge_base",), context=result.describe())
        assert "retry" in result.tap_stderr, result.describe()
    finally:
        first.stop()


@pytest.fixture
def dropping_port() -> Iterator[int]:
    """A port whose SYNs go unanswered, like a firewall that drops them: a listener that never
    accepts, its accept queue already full."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for each in [*fillers, listener]:
            each.close()


def test_a_first_call_into_a_firewall_that_drops_fails_in_seconds(
        tmp_path: Path, dropping_port: int) -> None:
    """Connecting waited as long as a read may (request_timeout, 30 min; 60 s for /auth), so a
    dropping firewall took 3 minutes (gateway) or more (VM API) to fail instead of ~30 s.
    The VM API (hosts) and the gateway (csam_assets) at once."""
    url = f"http://127.0.0.1:{dropping_port}"
    with simulator(hosts=2, seed=1) as sim:  # for the discovery run only

        def one(workdir: Path, streams: tuple[str, ...]) -> Any:
            pipeline = Pipeline(sim, workdir, **DEFAULT_RETRIES)
            config = pipeline.config(api_server=url, gateway_url=url)
            return pipeline.run(config=config, streams=streams, timeout=90)

        results = run_at_once([("hosts",), ("csam_assets",)], one, tmp_path)
    for result in results:
        assert_one_clear_line(result, names=(url, "api_server"), says=("timed out",))
        assert not has_traceback(result), result.describe()
