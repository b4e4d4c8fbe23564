"""Scenario 1: a full sync of every stream through a storm of every fault Qualys produces.

The storm: 409/1960 (another tool's call), 409/1965 (rate limit, with ToWait), 503 maintenance
pages, connections reset mid-body, HTTP 200 error documents, bodies cut short with an incident
note, slow first bytes, and the gateway's 429s, all at once, on every endpoint. The run must
succeed and load exactly the fault-free record set: nothing missing, nothing twice.
"""

from __future__ import annotations

from pathlib import Path

from tests.reliability.harness import SMALL_WORLD, Pipeline, simulator

VM_ENDPOINTS = ("knowledge_base", "host_list", "host_detection")
STORM = {
    "http_503": 0.06,
    "conflict_1960": 0.06,
    "conflict_1965": 0.15,
    "drop": 0.06,
    "error_200": 0.06,
    "truncated_200": 0.06,
    "slow_first_byte": 0.06,
}
CONCURRENCY_LIMIT = 2
#: Every endpoint the tap calls except the gateway's /auth, which has its own test below.
STORM_ENDPOINTS = ["knowledge_base", "host_list", "host_detection", "csam_search", "csam_count",
                   "pcrs_policy_list", "pcrs_hostids", "pcrs_posture_info"]


def test_full_sync_through_a_fault_storm_loads_exactly_the_ground_truth(tmp_path: Path) -> None:
    # Small pages and batches: enough calls per endpoint for every fault to hit each API.
    world = {**SMALL_WORLD, "hosts": 40, "kb_page_size": 10}
    with simulator(**world, concurrency_limit=CONCURRENCY_LIMIT) as sim:
        sim.configure(
            faults=STORM,
            fault_endpoints=STORM_ENDPOINTS,
            # Every injected 1965 asks for 5 s; two of them prove ToWait is honoured without
            # making the test slow.
            fault_budget={"conflict_1965": 2},
            slow_first_byte_sec=0.4,
            # A real (not injected) rate limit as well: 6 calls per 3 s per API gives ToWait
            # values of 1-3 s that the tap must wait out.
            rate_limit=6, rate_window_sec=3,
            # The gateway's own throttle: 429 with Retry-After.
            gateway_rate_limit=6, gateway_rate_window_sec=2,
        )
        pipeline = Pipeline(sim, tmp_path, truncation_limit=5, host_batch_size=3,
                            csam_page_size=8, pcrs_batch_size=4)
        result = pipeline.sync(timeout=400)
        stats = sim.stats()

        pipeline.assert_ground_truth(context=result.describe())

        # The storm really happened: every fault fired, and the limits were hit.
        missing = [name for name in STORM if not stats["faults"].get(name)]
        assert not missing, f"faults that never fired: {missing}; stats: {stats['faults']}"
        gateway_429s = sum(responses.get("429", 0) for responses in stats["responses"].values())
        assert gateway_429s > 0, f"no gateway 429 was answered: {stats['responses']}"
        rate_409s = sum(responses.get("409/1965", 0) for responses in stats["responses"].values())
        assert rate_409s >= 2, f"fewer than two 409/1965 answered: {stats['responses']}"

        # ToWait (1965) and Retry-After (429) were honoured, every time.
        assert stats["towait"]["violated"] == 0, f"ToWait/Retry-After not honoured: {stats}"
        assert stats["towait"]["honoured"] >= 2, f"no ToWait was put to the test: {stats}"

        # The tap never ran more calls in parallel than Qualys allows, on any VM API.
        peaks = {endpoint: stats["peak_concurrency"].get(endpoint, 0)
                 for endpoint in VM_ENDPOINTS}
        assert all(peak <= CONCURRENCY_LIMIT for peak in peaks.values()), (
            f"more than {CONCURRENCY_LIMIT} parallel calls: {peaks}")


# --- focused storms: one fault kind, the streams it matters for ---------------------------------


def test_http_200_error_documents_are_retried(tmp_path: Path) -> None:
    """HTTP 200 whose body is a SIMPLE_RETURN error (CODE 999, "Internal error"): transient."""
    with simulator(**SMALL_WORLD) as sim:
        sim.configure(faults={"error_200": 0.3}, fault_endpoints=list(VM_ENDPOINTS))
        pipeline = Pipeline(sim, tmp_path)
        result = pipeline.sync(streams=("knowledge_base", "hosts", "host_detections"))
        assert sim.stats()["faults"].get("error_200", 0) >= 2, sim.stats()["faults"]
        pipeline.assert_ground_truth(("knowledge_base", "hosts", "host_detections"),
                                     context=result.describe())


def test_gateway_429_pauses_every_parallel_call(tmp_path: Path) -> None:
    """The gateway's rate window is shared: after a 429 no parallel call may come before its
    Retry-After (PCRS postures run up to pcrs_max_concurrency calls at once)."""
    # Four policies (three active) in batches of 4 hosts: ~20 posture calls, 5 at a time.
    with simulator(**{**SMALL_WORLD, "hosts": 40, "policies": 4}) as sim:
        sim.configure(gateway_rate_limit=6, gateway_rate_window_sec=2)
        pipeline = Pipeline(sim, tmp_path, pcrs_batch_size=4)
        streams = ("pcrs_policies", "pcrs_policy_host_ids", "pcrs_posture_info")
        result = pipeline.sync(streams=streams)
        stats = sim.stats()
        pipeline.assert_ground_truth(streams, context=result.describe())
        assert stats["responses"]["pcrs_posture_info"].get("429", 0) >= 1, stats["responses"]
        assert stats["towait"]["violated"] == 0, (
            f"calls came before the Retry-After of an earlier 429: {stats['towait']}")


def test_gateway_token_requests_survive_transient_faults(tmp_path: Path) -> None:
    """`/auth` answering 503, dropping the connection, or 200 with an empty or cut-short token
    now and then must not end the sync: the token request is retried like any other call."""
    with simulator(**SMALL_WORLD) as sim:
        # Tokens live 3 s, so the sync asks for many; one fault of each kind hits /auth.
        sim.configure(token_lifetime_sec=3, record_delay_sec=0.003,
                      faults={"http_503": 1.0, "drop": 1.0, "error_200": 1.0,
                              "truncated_200": 1.0},
                      fault_budget={"http_503": 1, "drop": 1, "error_200": 1,
                                    "truncated_200": 1},
                      fault_endpoints=["auth"])
        pipeline = Pipeline(sim, tmp_path, token_refresh_margin=1)
        streams = ("csam_assets", "pcrs_policies", "pcrs_policy_host_ids", "pcrs_posture_info")
        result = pipeline.sync(streams=streams)
        faults = sim.stats()["faults"]
        assert sum(faults.values()) >= 3, f"the faults did not hit /auth: {faults}"
        pipeline.assert_ground_truth(streams, context=result.describe())
