"""The gateway JWT: obtained once, shared, refreshed before expiry and on a 401, never leaked."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import typing as t

import pytest
import requests

from qualys_simulator.testing import SimulatorProcess
from tap_qualys.auth import (
    DEFAULT_TOKEN_LIFETIME,
    GatewayTokenAuthenticator,
    jwt_claims,
    jwt_lifetime,
)
from tap_qualys.errors import GatewayAuthError, QualysAPIError
from tap_qualys.retries import FailedAttempt, Kind
from tap_qualys.streams.pcrs import EPOCH, PcrsPoliciesStream, PolicyList, read_policy_list
from tap_qualys.tap import TapQualys
from tests.gateway_support import (
    GATEWAY_STREAMS,
    JWT_PATTERN,
    PCRS_STREAMS,
    gateway_config,
    keyed,
    parse_messages,
    run_tap,
    tap_command,
)

if t.TYPE_CHECKING:
    from pathlib import Path


def _jwt(payload: dict[str, t.Any]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{b64(b'{}')}.{b64(json.dumps(payload).encode())}.c2ln"


def test_jwt_payload_is_read_without_verification() -> None:
    assert jwt_claims(_jwt({"exp": 20, "iat": 10})) == {"exp": 20, "iat": 10}
    for not_a_jwt in ("", "abc", "a.b", "<html>login</html>", "a.!!!.c", _jwt({}) + ".x"):
        with pytest.raises(ValueError, match="not"):
            jwt_claims(not_a_jwt)


def test_lifetime_prefers_iat_over_our_clock() -> None:
    # exp - iat does not depend on our clock agreeing with the gateway's.
    assert jwt_lifetime({"iat": 1000, "exp": 1000 + 7200}, now=5_000_000) == 7200
    assert jwt_lifetime({"exp": 2000}, now=1500) == 500
    # Nothing usable: Qualys' documented 4 hours.
    assert jwt_lifetime({"exp": 10}, now=1500) == DEFAULT_TOKEN_LIFETIME
    assert jwt_lifetime({}, now=0) == DEFAULT_TOKEN_LIFETIME


@pytest.fixture
def own_sim() -> t.Iterator[SimulatorProcess]:
    """A simulator of the test's own: these tests change token lifetime and faults."""
    with SimulatorProcess(hosts=12, seed=5) as sim:
        yield sim


def _authenticator(sim: SimulatorProcess, **kwargs: t.Any) -> GatewayTokenAuthenticator:
    return GatewayTokenAuthenticator(
        gateway_url=sim.url, username=sim.username, password=sim.password, **kwargs
    )


def test_one_token_is_shared_by_threads(own_sim: SimulatorProcess) -> None:
    authenticator = _authenticator(own_sim)
    tokens: list[str] = []
    threads = [
        threading.Thread(target=lambda: tokens.append(authenticator.token())) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(tokens)) == 1
    assert authenticator.tokens_issued == 1
    assert own_sim.stats()["requests"]["auth"] == 1


def test_invalidate_drops_only_the_rejected_token(own_sim: SimulatorProcess) -> None:
    authenticator = _authenticator(own_sim)
    first = authenticator.token()
    stale = _request_with(f"Bearer {first}")
    authenticator.invalidate(stale)
    second = authenticator.token()
    assert second != first
    # Another thread reporting a 401 for the old token must not throw away the new one.
    authenticator.invalidate(stale)
    assert authenticator.token() == second
    assert authenticator.tokens_issued == 2


def _request_with(authorization: str) -> requests.PreparedRequest:
    request = requests.Request("GET", "http://x/").prepare()
    request.headers["Authorization"] = authorization
    return request


def test_bad_password_is_one_clear_error(own_sim: SimulatorProcess) -> None:
    authenticator = GatewayTokenAuthenticator(
        gateway_url=own_sim.url, username=own_sim.username, password="wrong-secret-123"
    )
    with pytest.raises(GatewayAuthError) as caught:
        authenticator.token()
    message = str(caught.value)
    assert "rejected the username/password" in message
    assert "HTTP 401" in message
    assert "wrong-secret-123" not in message


def test_a_201_without_a_jwt_is_a_retryable_clear_error(own_sim: SimulatorProcess) -> None:
    # error_200 on /auth: HTTP 200 with an empty body, a gateway hiccup the retry policy
    # repeats; its message is what the user reads once the retries are spent.
    own_sim.configure(faults={"error_200": 1.0}, fault_endpoints=["auth"])
    with pytest.raises(FailedAttempt, match="is not a JWT") as raised:
        _authenticator(own_sim).token()
    assert raised.value.verdict.kind is Kind.BACKOFF


def test_refreshes_before_expiry(own_sim: SimulatorProcess) -> None:
    # Tokens live 3 s (real time); the sync takes about 6 s. The authenticator renews 0.75 s
    # ahead of expiry (the margin is capped at a quarter of the lifetime): no call sees a 401.
    own_sim.configure(token_lifetime_sec=3.0, record_delay_sec=0.002)
    config = gateway_config(own_sim, pcrs_batch_size=5, pcrs_max_concurrency=1)
    records, _ = run_tap(config, PCRS_STREAMS)
    _assert_posture_complete(records, own_sim)
    stats = own_sim.stats()
    assert stats["requests"]["auth"] >= 2  # renewed at least once, and never by a 401
    assert not any("401" in str(status) for status in stats["responses"]["pcrs_posture_info"])


def test_expired_token_is_refreshed_once_and_the_call_repeated(own_sim: SimulatorProcess) -> None:
    # The token expires on the gateway's clock while ours says it is still good (the simulated
    # clock jumps 5 hours): the call gets 401 "JWT expired", is re-sent with a new token, and
    # succeeds.
    tap = TapQualys(config=gateway_config(own_sim))
    stream = t.cast("PcrsPoliciesStream", tap.streams["pcrs_policies"])

    def call() -> PolicyList:
        return stream.gateway_call(
            stream.path, read_policy_list, method="GET", params={"lastEvaluationDate": EPOCH}
        )

    assert call().policies
    own_sim.advance(5 * 3600)
    assert call().policies
    stats = own_sim.stats()
    assert stats["responses"]["pcrs_policy_list"] == {"200": 2, "401": 1}
    assert stats["requests"]["auth"] == 2
    assert stream.authenticator.tokens_issued == 2


def _assert_posture_complete(
    records: dict[str, list[dict[str, t.Any]]], sim: SimulatorProcess
) -> None:
    got = keyed(records["pcrs_posture_info"], "id")
    assert got.keys() == {(r["id"],) for r in sim.ground_truth("pcrs_posture_info")}


def test_a_second_401_is_a_credentials_error(own_sim: SimulatorProcess) -> None:
    # Every token is expired on arrival: the refresh cannot help, so stop with one clear line.
    own_sim.configure(token_lifetime_sec=0.0)
    with pytest.raises(QualysAPIError) as caught:
        run_tap(gateway_config(own_sim), ["csam_assets"])
    message = str(caught.value)
    assert message.startswith("csam_assets: POST /rest/2.0/")  # names stream and endpoint
    assert "HTTP 401 also with a newly issued token" in message
    assert own_sim.stats()["requests"]["auth"] == 2


def test_token_never_appears_in_output(own_sim: SimulatorProcess, tmp_path: Path) -> None:
    """Logs, STATE and error lines of a run that refreshes on 401 and then fails."""
    own_sim.configure(token_lifetime_sec=1.0, record_delay_sec=0.002)
    config = gateway_config(own_sim, token_refresh_margin=0, pcrs_batch_size=5, max_retries=0)
    command = tap_command(tmp_path, config, GATEWAY_STREAMS)
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    records, states = parse_messages(done.stdout)
    assert records["pcrs_posture_info"]
    assert states
    # Now make it fail for good (every token expired) and check the error output too.
    own_sim.configure(token_lifetime_sec=0.0)
    failed = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert failed.returncode != 0
    assert "newly issued token" in failed.stderr
    for output in (done.stdout, done.stderr, failed.stdout, failed.stderr):
        assert "Bearer" not in output
        assert not JWT_PATTERN.search(output)
        assert own_sim.password not in output
