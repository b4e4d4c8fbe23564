"""Ordered, bounded parallel fetches and the adaptive concurrency limit."""

from __future__ import annotations

import threading
import time

import pytest

from tap_qualys import concurrency
from tap_qualys.concurrency import ConcurrencyLimit, OrderedPipeline


def test_limit_starts_at_one_then_follows_the_first_header() -> None:
    limit = ConcurrencyLimit(headroom=1)
    assert limit.limit == 1
    limit.observe({})
    assert limit.limit == 1
    limit.observe({"X-Concurrency-Limit-Limit": "5"})
    assert limit.limit == 4
    limit.observe({"X-Concurrency-Limit-Limit": "10"})  # only the first answer sizes it
    assert limit.limit == 4


def test_limit_respects_max_and_never_drops_below_one() -> None:
    limit = ConcurrencyLimit(maximum=3)
    limit.observe({"X-Concurrency-Limit-Limit": "10"})
    assert limit.limit == 3
    for _ in range(5):
        limit.reduce()
    assert limit.limit == 1
    tight = ConcurrencyLimit(headroom=4)
    tight.observe({"X-Concurrency-Limit-Limit": "2"})
    assert tight.limit == 1


def test_slots_cap_simultaneous_calls_and_shrink_on_reduce() -> None:
    limit = ConcurrencyLimit()
    limit.observe({"X-Concurrency-Limit-Limit": "3"})
    running = 0
    peak = 0
    lock = threading.Lock()

    def call() -> None:
        nonlocal running, peak
        with limit.slot():
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.02)
            with lock:
                running -= 1

    def wave() -> int:
        nonlocal peak
        peak = 0
        threads = [threading.Thread(target=call) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return peak

    assert wave() == 3
    limit.reduce()
    assert wave() == 2


def test_results_come_back_in_submission_order() -> None:
    # Later jobs finish first; the caller must still see 0, 1, 2, ...
    delays = [0.08, 0.01, 0.05, 0.0, 0.03, 0.02]

    def job(n: int) -> int:
        time.sleep(delays[n])
        return n

    seen: list[int] = []
    with OrderedPipeline[int](workers=4, window=lambda: 4) as pipeline:
        for n in range(len(delays)):
            seen.extend(pipeline.submit(lambda n=n: job(n)))  # type: ignore[misc]
        seen.extend(pipeline.drain())
    assert seen == list(range(len(delays)))


def test_window_bounds_results_waiting_for_the_caller() -> None:
    finished = 0
    lock = threading.Lock()

    def job(n: int) -> int:
        nonlocal finished
        with lock:
            finished += 1
        return n

    consumed: list[int] = []
    with OrderedPipeline[int](workers=8, window=lambda: 3) as pipeline:
        for n in range(20):
            consumed.extend(pipeline.submit(lambda n=n: job(n)))  # type: ignore[misc]
            time.sleep(0.005)  # let the workers run ahead if they could
            # Fetched but not yet taken by the caller: never more than the window.
            assert finished - len(consumed) <= 3
        consumed.extend(pipeline.drain())
    assert consumed == list(range(20))


def test_submit_blocks_on_the_oldest_when_the_window_is_full() -> None:
    gate = threading.Event()

    def slow() -> str:
        gate.wait(2)
        return "slow"

    with OrderedPipeline[str](workers=2, window=lambda: 1) as pipeline:
        assert pipeline.submit(slow) == []
        threading.Timer(0.1, gate.set).start()
        begin = time.monotonic()
        assert pipeline.submit(lambda: "next") == ["slow"]
        assert time.monotonic() - begin >= 0.05
        assert list(pipeline.drain()) == ["next"]


def test_close_discards_unclaimed_results() -> None:
    discarded: list[int] = []
    started = threading.Barrier(3)
    gate = threading.Event()

    def job(n: int) -> int:
        started.wait(2)
        gate.wait(2)
        return n

    pipeline = OrderedPipeline[int](workers=2, window=lambda: 4, discard=discarded.append)
    assert pipeline.submit(lambda: job(1)) == []
    assert pipeline.submit(lambda: job(2)) == []
    started.wait(2)  # both are running: close() cannot cancel them, only wait and discard
    threading.Timer(0.05, gate.set).start()
    pipeline.close()
    assert sorted(discarded) == [1, 2]


def test_close_does_not_wait_for_running_calls_when_the_tap_is_stopping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On SIGTERM a batch may still be waiting for its first byte for up to request_timeout."""
    monkeypatch.setattr(concurrency, "STOPPING", threading.Event())
    release = threading.Event()
    started = threading.Event()
    discarded: list[str] = []

    def stuck() -> str:
        started.set()
        release.wait(60)
        return "late"

    pipeline = OrderedPipeline[str](workers=2, window=lambda: 4, discard=discarded.append)
    finished = threading.Event()

    def quick() -> str:
        finished.set()
        return "done"

    assert pipeline.submit(stuck) == []
    assert pipeline.submit(quick) == []  # behind the stuck call: not handed back yet
    assert started.wait(10)
    assert finished.wait(10)
    concurrency.STOPPING.set()
    closer = threading.Thread(target=pipeline.close)
    closer.start()
    closer.join(10)
    try:
        assert not closer.is_alive(), "close() waited for the running call"
        assert discarded == ["done"]  # finished results are still released
    finally:
        release.set()
        closer.join(10)
