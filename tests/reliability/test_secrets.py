"""Scenario 6: no password, Basic credential or gateway token in anything the pipeline writes.

Every reliability test already has its outputs scanned (``conftest.py``). This module adds the
runs most likely to leak: DEBUG logging everywhere, gateway tokens that expire and are renewed
many times during the run, a token the gateway rejects, and a wrong password. It also checks
that the scan itself would see a leak, so that zero hits mean something.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import requests

from tests.reliability.errors import assert_one_clear_line, has_traceback
from tests.reliability.harness import (
    BASIC_CREDENTIAL,
    JWT_PATTERN,
    PASSWORD,
    SMALL_WORLD,
    Pipeline,
    run_files,
    secret_hits,
    simulator,
)

DEBUG = {"LOGLEVEL": "DEBUG", "TAP_QUALYS_LOGLEVEL": "DEBUG", "TARGET_SQLITE_LOGLEVEL": "DEBUG"}


def test_the_scan_sees_each_kind_of_secret(tmp_path: Path) -> None:
    with simulator(hosts=2, seed=1) as sim:
        token = requests.post(sim.url + "/auth", data={"username": sim.username,
                                                       "password": sim.password,
                                                       "token": "true"}, timeout=30).text
    assert JWT_PATTERN.search(token.encode()), f"the JWT pattern misses this token: {token}"
    leak = tmp_path / "leak.log"
    for secret in (PASSWORD, BASIC_CREDENTIAL, token):
        leak.write_text(f"INFO something {secret} else\n")
        assert secret_hits([leak]), f"the scan misses {secret[:12]}..."
    leak.unlink()


def test_debug_logging_with_token_renewals_leaks_nothing(tmp_path: Path) -> None:
    with simulator(**SMALL_WORLD) as sim:
        # Tokens live 1000 s of the simulator's clock, and every gateway call moves that clock
        # 300 s: every fourth call finds its token expired and the tap renews it, however fast
        # the run goes (a real-time lifetime raced the run's own speed).
        sim.configure(token_lifetime_sec=1000, gateway_clock_step_sec=300)
        pipeline = Pipeline(sim, tmp_path)
        result = pipeline.sync(env=DEBUG)
        pipeline.assert_ground_truth(context=result.describe())
        stats = sim.stats()
        gateway_calls = sum(sum(stats["responses"].get(name, {}).values()) for name in (
            "csam_search", "csam_count", "pcrs_policy_list", "pcrs_hostids", "pcrs_posture_info"))
        assert gateway_calls >= 8, f"too few gateway calls to expire a token: {stats['responses']}"
        # 300 s per call, 1000 s per token: a token serves at most four calls (parallel
        # posture calls can share one renewal), so 8+ calls need at least two renewals.
        assert stats["responses"]["auth"].get("201", 0) >= 3, (
            f"tokens were not renewed: {stats['responses']}")
        assert "DEBUG" in result.tap_stderr, "DEBUG logging was not on"
    files = list(run_files(tmp_path))
    scanned = sum(path.stat().st_size for path in files)
    assert scanned > 1_000_000, f"only {scanned} bytes were written: the scan proves little"
    assert not secret_hits(files)


def test_rejected_credentials_and_tokens_leak_nothing(tmp_path: Path) -> None:
    wrong = "Wr0ng-Pa55word-PLUGH"
    with simulator(**SMALL_WORLD) as sim:
        pipeline = Pipeline(sim, tmp_path, max_retries=1)
        for streams in (("hosts",), ("csam_assets",)):
            result = pipeline.run(config=pipeline.config(password=wrong), streams=streams,
                                  env=DEBUG)
            assert result.tap_rc not in (0, None), result.describe()
        # The gateway refuses every token, the freshly renewed one too.
        refusal = b'{"status":401,"error":"Unauthorized","message":"Invalid JWT token"}'
        sim.admin_post("/admin/inject", {
            "endpoint": "csam_search", "status": 401, "content_type": "application/json",
            "body_b64": base64.b64encode(refusal).decode(), "times": 50})
        result = pipeline.run(streams=("csam_assets",), env=DEBUG)
        assert result.tap_rc not in (0, None), result.describe()
        assert sim.stats()["responses"]["auth"].get("201", 0) >= 2, "the token was not renewed"
    outputs = b"".join(path.read_bytes() for path in run_files(tmp_path))
    assert wrong.encode() not in outputs
    assert base64.b64encode(f"{sim.username}:{wrong}".encode()) not in outputs
    assert not secret_hits(run_files(tmp_path))


def _token_with(separator: str) -> str:
    """A token with a readable header and payload, and ``separator`` inside its signature."""
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(
        b'{"sub":"qa_sim_user","iat":1700000000,"exp":1700014400}').rstrip(b"=").decode()
    return f"{header}.{payload}.c2lnbmF0dXJl{separator}LXBMVUdIc2lnbmF0dXJl"


@pytest.mark.parametrize("separator", ["\n", "\r\n", " ", '"'])
def test_a_malformed_gateway_token_is_refused_and_never_printed(
        tmp_path: Path, separator: str) -> None:
    token = _token_with(separator)
    with simulator(**SMALL_WORLD) as sim:
        sim.admin_post("/admin/inject", {
            "endpoint": "auth", "status": 201, "content_type": "text/plain;charset=UTF-8",
            "body_b64": base64.b64encode(token.encode()).decode(), "times": 20})
        pipeline = Pipeline(sim, tmp_path, max_retries=3)
        result = pipeline.run(streams=("csam_assets",), env=DEBUG, timeout=180)
        pending = sim.admin_get("/admin/inject")["pending"]
    assert_one_clear_line(result, names=("gateway", "token"), says=("characters",))
    assert not has_traceback(result), result.describe()
    outputs = b"".join(path.read_bytes() for path in run_files(tmp_path))
    for fragment in token.split(separator):
        assert fragment.encode() not in outputs, f"part of the token was printed: {fragment}"
    # Refused at once: a gateway that issued such a token would issue it again.
    assert pending, "the injected answer was never used"
    assert pending[0]["remaining"] == 19, pending
