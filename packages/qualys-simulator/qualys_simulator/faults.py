"""Fault injection, API limits and request statistics, shared by every API module.

Everything here is thread-safe: the server handles each request on its own thread. Fault rolls
are deterministic for a seed: each fault name has its own counter, and the n-th roll of a name
always draws the same number, so a sequential client sees the same faults on every run.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

# The faults the simulator knows. The VM API applies all of them; other API modules roll the
# ones that make sense for them (the gateway has no XML to cut short, for instance).
#: Calls arriving this soon after a rate-limit refusal were sent before its receiver could have
#: read it (parallel calls in flight): they neither honour nor violate its wait. Half a second:
#: on a loaded 2-core machine a call that left the client before the refusal reached it was seen
#: to arrive 0.1 s+ later. A client that ignores the wait keeps calling for all of it (seconds).
IN_FLIGHT_GRACE_SEC = 0.5

FAULT_NAMES = (
    "http_503",  # 503 maintenance page before anything else happens
    "conflict_1960",  # 409 concurrency although the limit is not reached (another tool's call)
    "conflict_1965",  # 409 rate limit although the window is not exhausted
    "drop",  # the connection dies in the middle of the body
    "error_200",  # HTTP 200 whose body is a SIMPLE_RETURN error document
    "truncated_200",  # HTTP 200, body ends early with an "incident signature" note
    "malformed_xml",  # HTTP 200, structurally broken XML in the middle of the body
    "invalid_chars",  # HTTP 200, well-formed tags but a NUL, control chars and bad UTF-8 in text
    "slow_first_byte",  # sleep `slow_first_byte_sec` before the status line
    "csam_no_cursor",  # CSAM search: SUCCESS page with hasMore=1 but no lastSeenAssetId (§8)
    # A server paging in place: no record, yet "more" with a cursor one past the one sent
    # (CSAM: hasMore=1, lastSeenAssetId+1; VM API: WARNING 1980 with id_min+1).
    "stalled_pager",
)


class DropConnection(Exception):
    """Raised by a streamed body to make the server abort the TCP connection mid-body."""


def _unit(seed: int, name: str, counter: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{name}:{counter}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class FaultInjector:
    """Decides, per request, whether a fault happens.

    ``probabilities`` maps a fault name to a probability in [0, 1]; ``budget`` optionally caps how
    many times a fault may still be injected (a test can ask for "exactly the next 2 calls").
    ``endpoints`` restricts faults to some endpoints (empty = all).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._lock = threading.Lock()
        self._counters: dict[str, int] = defaultdict(int)
        self.probabilities: dict[str, float] = {}
        self.budget: dict[str, int] = {}
        self.endpoints: set[str] = set()
        self.slow_first_byte_sec = 2.0
        self.record_delay_sec = 0.0

    def configure(self, config: dict[str, Any]) -> None:
        """Apply the fault keys of ``POST /admin/config``; an omitted key keeps its value."""
        with self._lock:
            if "faults" in config:
                for name, probability in dict(config["faults"]).items():
                    if name not in FAULT_NAMES:
                        raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
                    self.probabilities[name] = float(probability)
                    # A new probability starts unlimited, unless a budget comes with it.
                    self.budget.pop(name, None)
            if "fault_budget" in config:
                for name, count in dict(config["fault_budget"]).items():
                    if name not in FAULT_NAMES:
                        raise ValueError(f"unknown fault {name!r}")
                    self.budget[name] = int(count)
                    # A budget without a probability in the same call means "the next N calls".
                    if name not in dict(config.get("faults") or {}):
                        self.probabilities[name] = 1.0
            if "fault_endpoints" in config:
                self.endpoints = set(config["fault_endpoints"] or ())
            if "slow_first_byte_sec" in config:
                self.slow_first_byte_sec = float(config["slow_first_byte_sec"])
            if "record_delay_sec" in config:
                self.record_delay_sec = float(config["record_delay_sec"])

    def snapshot(self) -> dict[str, Any]:
        """The fault settings, as ``GET /admin/config`` shows them."""
        with self._lock:
            return {
                "faults": dict(self.probabilities),
                "fault_budget": dict(self.budget),
                "fault_endpoints": sorted(self.endpoints),
                "slow_first_byte_sec": self.slow_first_byte_sec,
                "record_delay_sec": self.record_delay_sec,
            }

    def roll(self, name: str, endpoint: str | None = None) -> bool:
        """True when fault ``name`` must be injected now (and counts it against the budget)."""
        with self._lock:
            probability = self.probabilities.get(name, 0.0)
            if probability <= 0.0:
                return False
            if endpoint is not None and self.endpoints and endpoint not in self.endpoints:
                return False
            if name in self.budget and self.budget[name] <= 0:
                return False
            counter = self._counters[name]
            self._counters[name] = counter + 1
            hit = _unit(self.seed, name, counter) < probability
            if hit and name in self.budget:
                self.budget[name] -= 1
            return hit

    def cut_point(self, name: str, size: int) -> int:
        """A deterministic offset in [1, size) where a body is cut or broken."""
        with self._lock:
            counter = self._counters[name + ".cut"]
            self._counters[name + ".cut"] = counter + 1
        return 1 + int(_unit(self.seed, name + ".cut", counter) * max(size - 1, 1))


def drop_after(body: Iterable[bytes], cut_at: int) -> Iterator[bytes]:
    """Stream ``body`` up to ``cut_at`` bytes, then make the server kill the connection."""
    sent = 0
    for chunk in body:
        if sent + len(chunk) >= cut_at:
            yield chunk[: cut_at - sent]
            raise DropConnection
        sent += len(chunk)
        yield chunk
    raise DropConnection


@dataclass
class _Window:
    calls: deque[float] = field(default_factory=deque)


class Limits:
    """Qualys' per-API limits: concurrent calls and calls per sliding window (doc §2).

    Rate windows run on real (monotonic) time, not the simulated clock, so that
    X-RateLimit-ToWait-Sec is a wait a client can actually honour.
    """

    def __init__(self, concurrency: int = 2, rate_limit: int = 300, rate_window_sec: int = 3600):
        self._lock = threading.Lock()
        self.concurrency = concurrency
        self.concurrency_per_api: dict[str, int] = {}
        self.rate_limit = rate_limit
        self.rate_window_sec = rate_window_sec
        self.held_slots: dict[str, int] = {}
        self._running: dict[str, int] = defaultdict(int)
        self._windows: dict[str, _Window] = defaultdict(_Window)
        # api -> monotonic time before which a call violates a 1965 ToWait we gave.
        self._blocked_until: dict[str, float] = {}
        self._blocked_at: dict[str, float] = {}

    def configure(self, config: dict[str, Any]) -> None:
        """Apply the limit keys of ``POST /admin/config``; an omitted key keeps its value."""
        with self._lock:
            if "concurrency_limit" in config:
                value = config["concurrency_limit"]
                if isinstance(value, dict):
                    self.concurrency_per_api.update({k: int(v) for k, v in value.items()})
                else:
                    self.concurrency = int(value)
            if "rate_limit" in config:
                self.rate_limit = int(config["rate_limit"])
            if "rate_window_sec" in config:
                self.rate_window_sec = int(config["rate_window_sec"])
            if "held_slots" in config:
                self.held_slots = {k: int(v) for k, v in dict(config["held_slots"]).items()}
            if config.get("reset_rate_windows"):
                self._windows.clear()
                self._blocked_until.clear()

    def snapshot(self) -> dict[str, Any]:
        """The limit settings, as ``GET /admin/config`` shows them."""
        with self._lock:
            return {
                "concurrency_limit": self.concurrency,
                "concurrency_limit_per_api": dict(self.concurrency_per_api),
                "rate_limit": self.rate_limit,
                "rate_window_sec": self.rate_window_sec,
                "held_slots": dict(self.held_slots),
            }

    def limit_for(self, api: str) -> int:
        """The concurrency limit of ``api``: its own, else the subscription's."""
        return self.concurrency_per_api.get(api, self.concurrency)

    def _prune(self, api: str, now: float) -> deque[float]:
        calls = self._windows[api].calls
        while calls and calls[0] <= now - self.rate_window_sec:
            calls.popleft()
        return calls

    def admit(self, api: str) -> LimitDecision:
        """Try to start a call. On success the caller must call ``release(api)`` when done."""
        now = time.monotonic()
        with self._lock:
            limit = self.limit_for(api)
            running = self._running[api] + self.held_slots.get(api, 0)
            calls = self._prune(api, now)
            # Did the caller honour the last ToWait we gave for this API?
            towait: bool | None = None
            if api in self._blocked_until:
                towait = now >= self._blocked_until[api]
                if towait:
                    del self._blocked_until[api]
                elif now - self._blocked_at.get(api, 0.0) < IN_FLIGHT_GRACE_SEC:
                    towait = None
            if running >= limit:
                # Concurrency wins over rate when both apply (doc §2).
                return LimitDecision(False, 1960, limit, running + 1, self.rate_limit,
                                     self.rate_window_sec, max(self.rate_limit - len(calls), 0),
                                     0, calls_to_finish=running - limit + 1, towait=towait)
            if len(calls) >= self.rate_limit:
                to_wait = max(int(calls[0] + self.rate_window_sec - now + 0.999), 1)
                if now >= self._blocked_until.get(api, 0.0):  # a new 1965, not a repeat
                    self._blocked_at[api] = now
                self._blocked_until[api] = now + to_wait
                return LimitDecision(False, 1965, limit, running, self.rate_limit,
                                     self.rate_window_sec, 0, to_wait, towait=towait)
            calls.append(now)
            self._running[api] += 1
            return LimitDecision(True, None, limit, running + 1, self.rate_limit,
                                 self.rate_window_sec, self.rate_limit - len(calls), 0,
                                 towait=towait)

    def refusal(self, api: str, code: int) -> LimitDecision:
        """A refusal as if the limit had been hit: for injected 409 faults."""
        now = time.monotonic()
        with self._lock:
            limit = self.limit_for(api)
            running = max(self._running[api] + self.held_slots.get(api, 0) + 1, limit)
            if code == 1960:
                return LimitDecision(False, 1960, limit, running + 1, self.rate_limit,
                                     self.rate_window_sec, 0, 0, calls_to_finish=1)
            to_wait = 5
            self._blocked_until[api] = now + to_wait
            return LimitDecision(False, 1965, limit, running, self.rate_limit,
                                 self.rate_window_sec, 0, to_wait)

    def release(self, api: str) -> None:
        """Free the concurrency slot a call on ``api`` held."""
        with self._lock:
            self._running[api] = max(self._running[api] - 1, 0)

    def headers(self, api: str) -> dict[str, str]:
        """Limit headers for answers that did not go through ``admit`` (auth/param errors)."""
        now = time.monotonic()
        with self._lock:
            calls = self._prune(api, now)
            return {
                "X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Window-Sec": str(self.rate_window_sec),
                "X-RateLimit-Remaining": str(max(self.rate_limit - len(calls), 0)),
                "X-RateLimit-ToWait-Sec": "0",
                "X-Concurrency-Limit-Limit": str(self.limit_for(api)),
                "X-Concurrency-Limit-Running": str(
                    self._running[api] + self.held_slots.get(api, 0) + 1
                ),
            }


@dataclass
class LimitDecision:
    """The limits' verdict on one call (admitted, or refused: 1960/1965) and its header values."""
    admitted: bool
    code: int | None  # 1960 or 1965 when refused
    concurrency_limit: int
    running: int
    rate_limit: int
    window_sec: int
    remaining: int
    to_wait: int
    calls_to_finish: int = 0
    towait: bool | None = None  # a ToWait was pending: did the caller wait it out?

    def headers(self) -> dict[str, str]:
        """The X-RateLimit-* and X-Concurrency-Limit-* headers of the answer."""
        headers = {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Window-Sec": str(self.window_sec),
            "X-Concurrency-Limit-Limit": str(self.concurrency_limit),
            "X-Concurrency-Limit-Running": str(self.running),
        }
        # A concurrency 409 carries no ToWait or Remaining header (doc §2); Limit and Window stay.
        if self.code != 1960:
            headers.update({
                "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-ToWait-Sec": str(self.to_wait),
            })
        return headers


class Stats:
    """Counters served at ``GET /admin/stats``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Set every counter back to zero (``POST /admin/stats/reset``)."""
        with self._lock:
            self._requests: dict[str, int] = defaultdict(int)
            self._responses: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            self._faults: dict[str, int] = defaultdict(int)
            self._records: dict[str, int] = defaultdict(int)
            self._running: dict[str, int] = defaultdict(int)
            self._peak: dict[str, int] = defaultdict(int)
            self._towait = {"honoured": 0, "violated": 0}

    def request(self, endpoint: str) -> None:
        with self._lock:
            self._requests[endpoint] += 1

    def response(self, endpoint: str, status: int, code: int | str | None = None) -> None:
        """Count an answer of ``endpoint`` by HTTP status, or status/code for a Qualys error."""
        key = str(status) if code is None else f"{status}/{code}"
        with self._lock:
            self._responses[endpoint][key] += 1

    def fault(self, name: str) -> None:
        with self._lock:
            self._faults[name] += 1

    def records(self, endpoint: str, count: int = 1) -> None:
        """Count records served by ``endpoint``."""
        with self._lock:
            self._records[endpoint] += count

    def towait(self, *, honoured: bool) -> None:
        """Count a call made after a ToWait: waited out (``honoured``) or not."""
        with self._lock:
            self._towait["honoured" if honoured else "violated"] += 1

    def enter(self, api: str) -> None:
        """A request of ``api`` started running (admitted or not): tracks peak parallelism."""
        with self._lock:
            self._running[api] += 1
            self._peak[api] = max(self._peak[api], self._running[api])

    def leave(self, api: str) -> None:
        """A call on ``api`` ended (the pair of ``enter``)."""
        with self._lock:
            self._running[api] -= 1

    def snapshot(self) -> dict[str, Any]:
        """Every counter, as ``GET /admin/stats`` shows them."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "responses": {k: dict(v) for k, v in self._responses.items()},
                "faults": dict(self._faults),
                "records": dict(self._records),
                "peak_concurrency": dict(self._peak),
                "running": {k: v for k, v in self._running.items() if v},
                "towait": dict(self._towait),
            }
