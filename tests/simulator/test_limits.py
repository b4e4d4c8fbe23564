"""Concurrency and rate limits (doc §2): headers on every answer, 409 1960 / 1965."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from qualys_simulator.faults import IN_FLIGHT_GRACE_SEC
from qualys_simulator.testing import SimulatorProcess
from tests.simulator.helpers import HL, HLD, KB, LIMIT_HEADERS, call, simple_return, xml


@pytest.fixture
def limited() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(hosts=30, seed=3, detections_per_host=3, concurrency_limit=1,
                          rate_limit=50, rate_window_sec=60) as s:
        yield s


def test_every_vm_answer_carries_limit_headers(limited: SimulatorProcess) -> None:
    responses = [call(limited, HLD), call(limited, HL), call(limited, KB),
                 call(limited, HLD, {"bogus": "1"}), call(limited, HLD, auth=("a", "b"))]
    for response in responses:
        for header in LIMIT_HEADERS:
            assert header in response.headers, (response.status_code, header)
    first = responses[0].headers
    assert first["X-Concurrency-Limit-Limit"] == "1"
    assert first["X-Concurrency-Limit-Running"] == "1"
    assert first["X-RateLimit-Limit"] == "50"
    # Rate windows are per API: Host List's first call leaves 49, whatever HLD did.
    assert responses[1].headers["X-RateLimit-Remaining"] == "49"
    # Refused calls (400, 401) are not counted against the window.
    assert responses[3].headers["X-RateLimit-Remaining"] == "49"
    assert first["X-RateLimit-ToWait-Sec"] == "0"


def test_concurrency_limit_1960_while_a_body_streams(limited: SimulatorProcess) -> None:
    limited.configure(record_delay_sec=0.05)
    slow = call(limited, HLD, {"truncation_limit": "0"}, stream=True)
    assert slow.status_code == 200
    blocked = call(limited, HLD)
    assert blocked.status_code == 409
    code, text = simple_return(blocked)
    assert code == "1960"
    assert "currently running" in text
    assert xml(blocked).findtext(".//ITEM/KEY") == "CALLS_TO_FINISH"
    assert "X-RateLimit-ToWait-Sec" not in blocked.headers
    assert "X-RateLimit-Remaining" not in blocked.headers
    assert blocked.headers["X-RateLimit-Limit"] == "50"
    assert blocked.headers["X-RateLimit-Window-Sec"] == "60"
    assert blocked.headers["X-Concurrency-Limit-Running"] == "2"
    # Another API has its own slots.
    assert call(limited, HL).status_code == 200
    slow.content  # noqa: B018 - drain: the slot is held until the body is fully sent
    limited.configure(record_delay_sec=0)
    assert call(limited, HLD).status_code == 200
    stats = limited.stats()
    assert stats["peak_concurrency"]["host_detection"] == 2
    assert stats["responses"]["host_detection"]["409/1960"] == 1


def test_held_slots_simulate_a_shared_subscription(limited: SimulatorProcess) -> None:
    limited.configure(held_slots={"host_detection": 1})
    blocked = call(limited, HLD)
    assert blocked.status_code == 409
    assert simple_return(blocked)[0] == "1960"
    limited.configure(concurrency_limit=2)
    assert call(limited, HLD).status_code == 200
    limited.configure(held_slots={}, concurrency_limit=1)
    assert call(limited, HLD).status_code == 200


def test_rate_limit_1965_with_to_wait(limited: SimulatorProcess) -> None:
    limited.configure(rate_limit=3, rate_window_sec=2, reset_rate_windows=True)
    remaining = [call(limited, KB, {"ids": "10000"}).headers["X-RateLimit-Remaining"]
                 for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    blocked = call(limited, KB, {"ids": "10000"})
    assert blocked.status_code == 409
    code, text = simple_return(blocked)
    assert code == "1965"
    assert "cannot be run again for another" in text
    wait = int(blocked.headers["X-RateLimit-ToWait-Sec"])
    assert 1 <= wait <= 2
    assert blocked.headers["X-RateLimit-Remaining"] == "0"
    items = xml(blocked).findall(".//ITEM")
    assert [(i.findtext("KEY"), i.findtext("VALUE")) for i in items] == [
        ("SECONDS_TO_WAIT", str(wait))]
    # A call right after the refusal may have been in flight already: not counted either way.
    assert call(limited, KB, {"ids": "10000"}).status_code == 409
    assert limited.stats()["towait"] == {"honoured": 0, "violated": 0}
    time.sleep(IN_FLIGHT_GRACE_SEC + 0.05)  # past the in-flight grace: this caller ignored it
    assert call(limited, KB, {"ids": "10000"}).status_code == 409
    time.sleep(wait + 0.1)
    assert call(limited, KB, {"ids": "10000"}).status_code == 200  # honoured
    towait = limited.stats()["towait"]
    assert towait == {"honoured": 1, "violated": 1}


def test_concurrency_wins_over_rate(limited: SimulatorProcess) -> None:
    limited.configure(rate_limit=1, rate_window_sec=60, reset_rate_windows=True)
    assert call(limited, HL).status_code == 200
    assert simple_return(call(limited, HL))[0] == "1965"
    limited.configure(held_slots={"host_list": 1})
    assert simple_return(call(limited, HL))[0] == "1960"


def test_parallel_clients_never_exceed_the_limit() -> None:
    with SimulatorProcess(hosts=200, seed=5, detections_per_host=4, concurrency_limit=2,
                          record_delay_sec=0.002) as s:
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(
                lambda _: call(s, HLD, {"truncation_limit": "0"}).status_code, range(12)))
        assert set(statuses) <= {200, 409}
        assert 409 in statuses
        assert 200 in statuses
        stats = s.stats()
        assert stats["peak_concurrency"]["host_detection"] >= 3
        assert stats["responses"]["host_detection"]["200"] == statuses.count(200)
