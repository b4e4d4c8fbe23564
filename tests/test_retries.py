"""The retry policy: what is retried, how long it waits, and the one-line failure."""

from __future__ import annotations

import typing as t

import pytest
import requests

from tap_qualys.errors import QualysAPIError, QualysTruncatedResponseError, QualysXMLError
from tap_qualys.retries import (
    FailedAttempt,
    Kind,
    RequestStats,
    RetryPolicy,
    Verdict,
    classify_exception,
    classify_response,
    pacing_delay,
)
from tap_qualys.tap import TapQualys
from tests.conftest import tap_config

if t.TYPE_CHECKING:
    from qualys_simulator.testing import SimulatorProcess


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (409, 1960, Kind.CONCURRENCY),
        (409, 1965, Kind.RATE_LIMIT),
        (409, 1920, Kind.BACKOFF),
        (409, 2003, Kind.FATAL),
        (409, 2011, Kind.FATAL),
        (400, 1901, Kind.FATAL),
        (400, 1905, Kind.FATAL),
        (200, 1905, Kind.FATAL),
        (200, 1960, Kind.CONCURRENCY),
        (200, 999, Kind.BACKOFF),
        (503, 999, Kind.BACKOFF),
        (400, 999, Kind.FATAL),
        (202, 1999, Kind.BACKOFF),
        (429, 1999, Kind.BACKOFF),
        (503, 1905, Kind.FATAL),
        (401, None, Kind.FATAL),
        (403, None, Kind.FATAL),
        (404, None, Kind.FATAL),
        (202, None, Kind.BACKOFF),
        (429, None, Kind.BACKOFF),
        (500, None, Kind.BACKOFF),
        (502, None, Kind.BACKOFF),
        (503, None, Kind.BACKOFF),
        (504, None, Kind.BACKOFF),
        (520, None, Kind.BACKOFF),
    ],
)
def test_classification_table(status: int, code: int | None, kind: Kind) -> None:
    assert classify_response(status, code, "text", {}).kind is kind


def test_rate_limit_waits_what_qualys_says() -> None:
    verdict = classify_response(409, 1965, "wait", {"X-RateLimit-ToWait-Sec": "17"})
    assert verdict.wait == 17
    verdict = classify_response(409, 1965, "wait", {}, {"SECONDS_TO_WAIT": "42"})
    assert verdict.wait == 42
    policy = RetryPolicy(max_retries=3, jitter=lambda: 0.99)
    assert policy.wait_for(Verdict(Kind.RATE_LIMIT, "r", 17.0), attempt=5) == 17.0


def test_reason_has_status_code_and_text() -> None:
    verdict = classify_response(400, 1905, "parameter ids has invalid value", {})
    assert verdict.reason == "HTTP 400 CODE 1905: parameter ids has invalid value"


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
        requests.exceptions.ConnectionError("reset"),
        requests.exceptions.ReadTimeout("timed out"),
        QualysTruncatedResponseError("body ended before </RESPONSE>"),
    ],
)
def test_dropped_and_truncated_bodies_are_retried(exc: Exception) -> None:
    verdict = classify_exception(exc)
    assert verdict is not None
    assert verdict.kind is Kind.BACKOFF


def test_malformed_xml_is_fatal_and_other_exceptions_are_not_ours() -> None:
    verdict = classify_exception(QualysXMLError("malformed XML near line 3"))
    assert verdict == Verdict(Kind.FATAL, "malformed XML near line 3")
    assert classify_exception(KeyError("x")) is None


def test_exponential_backoff_with_jitter_is_bounded() -> None:
    low = RetryPolicy(max_retries=9, backoff_base=2, backoff_max=60, jitter=lambda: 0.0)
    high = RetryPolicy(max_retries=9, backoff_base=2, backoff_max=60, jitter=lambda: 1.0)
    verdict = Verdict(Kind.BACKOFF, "HTTP 503")
    assert [low.wait_for(verdict, n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert [high.wait_for(verdict, n) for n in (1, 2, 3)] == [2, 4, 8]
    assert high.wait_for(verdict, 10) == 60
    assert low.wait_for(Verdict(Kind.BACKOFF, "429", wait=30), 1) == 15  # Retry-After floor


class Script:
    """An attempt that fails with the given exceptions, then returns 'ok'."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_run_retries_then_succeeds_and_counts() -> None:
    sleeps: list[float] = []
    reductions: list[int] = []
    policy = RetryPolicy(max_retries=5, sleep=sleeps.append, jitter=lambda: 0.0)
    stats = RequestStats()
    attempt = Script(
        FailedAttempt(classify_response(409, 1960, "one running", {})),
        FailedAttempt(classify_response(409, 1965, "later", {"X-RateLimit-ToWait-Sec": "7"})),
        requests.exceptions.ChunkedEncodingError("dropped"),
    )
    result = policy.run(
        attempt, label="hosts: /x/", stats=stats, on_concurrency_limit=lambda: reductions.append(1)
    )
    assert result == "ok"
    assert attempt.calls == 4
    assert sleeps == [1.0, 7.0, 4.0]
    assert reductions == [1]
    assert (stats.requests, stats.retries, stats.concurrency_409s, stats.rate_409s) == (4, 3, 1, 1)


def test_fatal_error_is_one_line_without_retrying() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(max_retries=5, sleep=sleeps.append)
    attempt = Script(FailedAttempt(classify_response(400, 1905, "bad value for status", {})))
    with pytest.raises(QualysAPIError) as info:
        policy.run(
            attempt,
            label="host_detections: /api/5.0/fo/asset/host/vm/detection/",
            stats=RequestStats(),
        )
    assert str(info.value) == (
        "host_detections: /api/5.0/fo/asset/host/vm/detection/ failed: "
        "HTTP 400 CODE 1905: bad value for status"
    )
    assert "\n" not in str(info.value)
    assert sleeps == []
    assert attempt.calls == 1


def test_gives_up_after_max_retries() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(max_retries=2, sleep=sleeps.append, jitter=lambda: 0.0)
    attempt = Script(
        *(FailedAttempt(classify_response(503, None, "maintenance", {})) for _ in range(5))
    )
    with pytest.raises(
        QualysAPIError, match=r"^kb: /p/ failed after 3 attempts: HTTP 503: maintenance$"
    ):
        policy.run(attempt, label="kb: /p/", stats=RequestStats())
    assert attempt.calls == 3
    assert len(sleeps) == 2


def test_unknown_exceptions_propagate_unchanged() -> None:
    policy = RetryPolicy(max_retries=5, sleep=lambda _: None)
    with pytest.raises(KeyError):
        policy.run(Script(KeyError("x")), label="l", stats=RequestStats())


def rate_limited(wait: float) -> FailedAttempt:
    verdict = classify_response(
        409,
        1965,
        "This API cannot be run again for another 23 hours, 59 minutes and 0 seconds.",
        {"X-RateLimit-ToWait-Sec": str(wait)},
    )
    assert verdict.kind is Kind.RATE_LIMIT
    return FailedAttempt(verdict)


def test_a_day_long_rate_limit_wait_fails_at_once() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(max_retries=5, sleep=sleeps.append)
    attempt = Script(rate_limited(86340))
    with pytest.raises(QualysAPIError) as caught:
        policy.run(attempt, label="host_detections: /api/5.0/x", stats=RequestStats())
    message = str(caught.value)
    assert sleeps == []
    assert attempt.calls == 1
    assert message.startswith("host_detections: /api/5.0/x failed: Qualys asked to wait 86340 s")
    assert "(23 h 59 min)" in message
    assert "max_rate_limit_wait" in message
    assert "\n" not in message


def test_rate_limit_waits_up_to_the_limit_are_waited_out() -> None:
    sleeps: list[float] = []
    paused: list[float] = []
    policy = RetryPolicy(max_retries=5, sleep=sleeps.append, max_rate_limit_wait=60)
    attempt = Script(rate_limited(60), rate_limited(5))
    stats = RequestStats()
    assert policy.run(attempt, label="l", stats=stats, on_rate_limit=paused.append) == "ok"
    assert sleeps == [60, 5]
    assert paused == [60, 5]
    assert stats.rate_409s == 2
    # None: no limit, whatever Qualys says.
    unlimited = RetryPolicy(max_retries=1, sleep=sleeps.append, max_rate_limit_wait=None)
    assert unlimited.run(Script(rate_limited(86340)), label="l", stats=RequestStats()) == "ok"
    assert sleeps[-1] == 86340


def test_max_rate_limit_wait_setting_reaches_every_stream(sim: SimulatorProcess) -> None:
    default: dict[str, t.Any] = TapQualys(config=tap_config(sim), validate_config=False).streams
    assert {s.retry_policy.max_rate_limit_wait for s in default.values()} == {3600}
    raised: dict[str, t.Any] = TapQualys(
        config=tap_config(sim, max_rate_limit_wait=90000), validate_config=False
    ).streams
    assert {s.retry_policy.max_rate_limit_wait for s in raised.values()} == {90000}
    assert TapQualys.config_jsonschema["properties"]["max_rate_limit_wait"]["default"] == 3600


@pytest.mark.parametrize(
    ("headers", "delay"),
    [
        ({}, 0.0),
        (
            {
                "X-RateLimit-Remaining": "250",
                "X-RateLimit-Limit": "300",
                "X-RateLimit-Window-Sec": "3600",
            },
            0.0,
        ),
        (
            {
                "X-RateLimit-Remaining": "5",
                "X-RateLimit-Limit": "300",
                "X-RateLimit-Window-Sec": "3600",
            },
            12.0,
        ),
        ({"X-RateLimit-ToWait-Sec": "3", "X-RateLimit-Remaining": "0"}, 3.0),
    ],
)
def test_pacing_when_few_calls_remain(headers: dict[str, str], delay: float) -> None:
    assert pacing_delay(headers) == delay


def test_a_certificate_failure_is_fatal_and_names_the_fix() -> None:
    verdict = classify_exception(requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"))
    assert verdict is not None
    assert verdict.kind is Kind.FATAL
    assert "ca_bundle" in verdict.reason
