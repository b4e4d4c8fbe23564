"""The simulated gateway over real HTTP: JWT auth, CSAM search/count, PCRS posture, limits.

Each test talks to a real ``python -m qualys_simulator`` subprocess. Tests that change server
state (clock, config, faults) start their own simulator so test order never matters.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from qualys_simulator.testing import SimulatorProcess

SEARCH = "/rest/2.0/search/am/asset"
COUNT = "/rest/2.0/count/am/asset"
POLICY_LIST = "/pcrs/2.0/posture/policy/list"
HOST_IDS = "/pcrs/5.0/posture/hostids"
POSTURE = "/pcrs/5.0/posture/postureInfo"
POSTURE_FIELDS = {
    "id", "instance", "policyId", "policyTitle", "netBios", "controlId", "controlStatement",
    "rationale", "remediation", "controlReference", "technologyId", "status", "previousStatus",
    "firstFailDate", "lastFailDate", "firstPassDate", "lastPassDate", "postureModifiedDate",
    "lastEvaluatedDate", "created", "hostId", "ip", "trackingMethod", "os", "osCpe",
    "domainName", "dns", "qgHostid", "networkId", "networkName", "complianceLastScanDate",
    "customerUuid", "customerId", "assetId", "technology", "criticality", "evidence",
    "causeOfFailure", "currentBatch", "totalBatches", "qds", "scanSource",
    "agentLastDetectedDate", "scannerLastDetectedDate",
}


class Gateway:
    """A tiny gateway client for the tests: one token, JSON helpers."""

    def __init__(self, sim: SimulatorProcess) -> None:
        self.sim = sim
        self.session = requests.Session()
        self.token = self.login()

    def login(self) -> str:
        response = self.session.post(self.sim.url + "/auth", data={
            "username": self.sim.username, "password": self.sim.password, "token": "true"})
        assert response.status_code == 201, response.text
        return response.text

    def post(self, path: str, body: Any = None, **params: Any) -> requests.Response:
        return self.session.post(
            self.sim.url + path, params=params,
            data=None if body is None else json.dumps(body),
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.sim.url + path, params=params,
                                headers={"Authorization": f"Bearer {self.token}"})

    def all_assets(self, body: Any = None, page_size: int = 50,
                   **params: Any) -> Iterator[dict[str, Any]]:
        last_seen = 0
        while True:
            page = self.post(SEARCH, body, pageSize=page_size, lastSeenAssetId=last_seen,
                             **params)
            assert page.status_code == 200, page.text
            doc = page.json()
            assets = doc["assetListData"]["asset"]
            yield from assets
            if doc["hasMore"] != 1:
                return
            assert doc["lastSeenAssetId"] == assets[-1]["assetId"]
            last_seen = doc["lastSeenAssetId"]

    def policies(self) -> list[dict[str, Any]]:
        response = self.get(POLICY_LIST)
        assert response.status_code == 200
        return list(response.json()["policyList"])

    def postures(self, policy_id: int, host_ids: list[str], **params: Any) -> list[Any]:
        response = self.post(POSTURE, [{"policyId": str(policy_id), "subscriptionId": "x",
                                         "hostIds": host_ids}], **params)
        assert response.status_code == 200, response.text
        return list(response.json())

    def host_ids(self, policy_id: int, **params: Any) -> list[str]:
        response = self.get(HOST_IDS, policyId=policy_id, **params)
        assert response.status_code == 200, response.text
        return list(response.json()[0]["hostIds"])


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    # 220 hosts -> 330 CSAM assets: enough to exceed the 300 pageSize cap.
    with SimulatorProcess(hosts=220, seed=7) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def gw(sim: SimulatorProcess) -> Gateway:
    return Gateway(sim)


def _jwt_part(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def _truth(sim: SimulatorProcess, stream: str) -> list[dict[str, Any]]:
    return list(sim.ground_truth(stream))


# ---- auth ---------------------------------------------------------------------------------------


def test_auth_answers_201_with_a_raw_jwt(sim: SimulatorProcess) -> None:
    response = requests.post(sim.url + "/auth", data={
        "username": sim.username, "password": sim.password, "token": "true",
        "permissions": "true"})
    assert response.status_code == 201
    assert "json" not in response.headers["Content-Type"]
    token = response.text
    assert token.count(".") == 2
    assert _jwt_part(token, 0) == {"alg": "HS256", "typ": "JWT"}
    payload = _jwt_part(token, 1)
    assert payload["sub"] == sim.username
    assert payload["exp"] - payload["iat"] == 4 * 3600


def test_auth_rejects_bad_credentials(sim: SimulatorProcess) -> None:
    response = requests.post(sim.url + "/auth", data={
        "username": sim.username, "password": "wrong", "token": "true"})
    assert response.status_code == 401


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-jwt", "forged"])
def test_requests_without_a_valid_token_get_401(gw: Gateway, authorization: str | None) -> None:
    if authorization == "forged":
        header, payload, signature = gw.token.split(".")
        authorization = f"Bearer {header}.{payload}.{signature[::-1]}"
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.post(gw.sim.url + SEARCH, headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["status"] == 401
    assert body["error"] == "Unauthorized"
    assert body["message"] != "JWT expired"


def test_token_expires_in_real_time_with_a_short_lifetime() -> None:
    with SimulatorProcess(hosts=5, seed=2, token_lifetime=1) as short:
        gw = Gateway(short)
        assert gw.post(COUNT).status_code == 200
        time.sleep(1.3)
        expired = gw.post(COUNT)
        assert expired.status_code == 401
        assert expired.json() == {"status": 401, "error": "Unauthorized",
                                  "message": "JWT expired"}
        gw.token = gw.login()  # a fresh token works again
        assert gw.post(COUNT).status_code == 200


# ---- CSAM ---------------------------------------------------------------------------------------


def test_csam_pages_to_the_end_in_asset_id_order(sim: SimulatorProcess, gw: Gateway) -> None:
    pages = []
    last_seen = 0
    while True:
        doc = gw.post(SEARCH, pageSize=40, lastSeenAssetId=last_seen).json()
        assert doc["responseCode"] == "SUCCESS"
        assert doc["responseMessage"] == "Valid API Access"
        assert doc["hasMore"] in (0, 1)
        assert doc["count"] == len(doc["assetListData"]["asset"])
        pages.append(doc)
        if not doc["hasMore"]:
            break
        last_seen = doc["lastSeenAssetId"]
    ids = [a["assetId"] for p in pages for a in p["assetListData"]["asset"]]
    assert ids == sorted(set(ids))
    assert len(ids) == 330  # 1.5 x 220 hosts
    assert [p["count"] for p in pages[:-1]] == [40] * (len(pages) - 1)
    assert gw.post(COUNT).json() == {"responseCode": "SUCCESS", "count": 330,
                                     "responseMessage": "Valid API Access"}


def test_csam_page_size_is_capped_at_300(gw: Gateway) -> None:
    doc = gw.post(SEARCH, pageSize=1000, lastSeenAssetId=0).json()
    assert doc["count"] == 300
    assert doc["hasMore"] == 1


def test_csam_assets_match_ground_truth(sim: SimulatorProcess, gw: Gateway) -> None:
    served = {a["assetId"]: a for a in gw.all_assets(page_size=300)}
    truth = _truth(sim, "csam_assets")
    assert len(truth) == len(served)
    for record in truth:
        asset = served[record["assetId"]]
        assert asset["hostId"] == record["hostId"]
        assert asset["lastModifiedDate"] == record["lastModifiedDate"]
        assert asset["assetName"] == record["assetName"]
        agent = asset["agent"]
        expected = None if agent is None else {"version": agent["version"],
                                               "lastCheckedIn": agent["lastCheckedIn"]}
        assert record["agent"] == expected


def test_csam_assets_share_identity_with_vm_hosts(sim: SimulatorProcess, gw: Gateway) -> None:
    hosts = {h["ID"]: h for h in _truth(sim, "hosts")}
    linked = [a for a in gw.all_assets(page_size=300) if a["hostId"] is not None]
    assert len(linked) == len(hosts)
    for asset in linked:
        host = hosts[asset["hostId"]]
        assert asset["assetId"] == host["ASSET_ID"]
        assert asset["address"] == host["IP"]
        assert asset["dnsName"] == host["DNS"]
        assert asset["netbiosName"] == host["NETBIOS"]


def test_csam_documents_carry_the_nested_inventory(gw: Gateway) -> None:
    response = gw.post(SEARCH, pageSize=300)
    assets = response.json()["assetListData"]["asset"]
    software_ids = [s["id"] for a in assets for s in a["softwareListData"]["software"]]
    big = [i for i in software_ids if i > 2**53]
    assert big, "some software ids must exceed 2**53"
    assert str(big[0]) in response.text  # exact digits on the wire, not a float
    agents = [a["agent"] for a in assets if a["agent"]]
    assert agents
    assert all(isinstance(a["lastCheckedIn"], int) for a in agents)
    assert any(a["version"] == "6.1.0.28" for a in agents)
    sample = assets[0]
    assert sample["lastModifiedDate"].endswith("Z")
    assert len(sample["lastModifiedDate"]) == len("2025-07-11T14:21:10.000Z")
    assert "lifecycle" in sample["operatingSystem"]
    interfaces = sample["networkInterfaceListData"]["networkInterface"]
    assert {"addressIpV4", "addressIpV6", "macAddress", "interfaceName"} <= interfaces[0].keys()
    assert isinstance(sample["inventory"]["created"], int)
    assert any(a["cloudProvider"] for a in assets)


def test_csam_last_updated_filter_and_query_parameter(sim: SimulatorProcess, gw: Gateway) -> None:
    truth = _truth(sim, "csam_assets")
    dates = sorted(r["lastModifiedDate"] for r in truth)
    pivot = dates[len(dates) // 2]
    expected = {r["assetId"] for r in truth if r["lastModifiedDate"] > pivot}
    body = {"filters": [{"field": "asset.lastUpdated", "operator": "GREATER", "value": pivot}]}
    by_filter = {a["assetId"] for a in gw.all_assets(body)}
    assert by_filter == expected
    assert {a["assetId"] for a in gw.all_assets(assetLastUpdated=pivot)} == expected
    assert gw.post(COUNT, body).json()["count"] == len(expected)
    inclusive = {"filters": [{"field": "asset.lastUpdated", "operator": "GREATER_THAN_OR_EQUAL",
                              "value": pivot}]}
    assert gw.post(COUNT, inclusive).json()["count"] == len(expected) + dates.count(pivot)


def test_csam_tag_filter(gw: Gateway) -> None:
    body = {"filters": [{"field": "tags.name", "operator": "EQUALS", "value": "PCI"}]}
    tagged = list(gw.all_assets(body))
    assert tagged
    assert all(any(t["tagName"] == "PCI" for t in a["tagList"]["tag"]) for a in tagged)
    assert gw.post(COUNT, body).json()["count"] == len(tagged)


def test_csam_include_fields_nulls_the_rest(gw: Gateway) -> None:
    doc = gw.post(SEARCH, pageSize=5, includeFields="assetName,agent").json()
    for asset in doc["assetListData"]["asset"]:
        assert asset["assetName"]
        assert asset["assetId"]
        assert asset["operatingSystem"] is None
        assert asset["softwareListData"] is None
        assert asset["lastModifiedDate"] is None


def test_csam_bad_filter_is_a_400(gw: Gateway) -> None:
    body = {"filters": [{"field": "asset.lastUpdated", "operator": "GREATER", "value": "soon"}]}
    response = gw.post(SEARCH, body)
    assert response.status_code == 400
    assert response.json()["responseCode"] != "SUCCESS"


# ---- PCRS ---------------------------------------------------------------------------------------


def test_pcrs_policy_list(gw: Gateway) -> None:
    response = gw.get(POLICY_LIST)
    doc = response.json()
    assert doc["subscriptionId"]
    policies = doc["policyList"]
    assert len(policies) == 8
    assert {p["status"] for p in policies} == {"active", "inactive"}
    assert any("DISA" in p["title"] for p in policies)
    assert set(policies[0]) == {"id", "title", "createdBy", "createdDate", "modifiedBy",
                                "modifiedDate", "lastEvaluatedDate", "status", "locked"}
    # the 1.0 path and POST answer the same
    assert gw.post("/pcrs/1.0/posture/policy/list").json() == doc


def test_pcrs_host_ids_are_strings_and_unknown_policy_is_a_200(gw: Gateway) -> None:
    active = [p for p in gw.policies() if p["status"] == "active"]
    ids = gw.host_ids(active[0]["id"])
    assert ids
    assert all(isinstance(i, str) and i.isdigit() for i in ids)
    unknown = gw.get(HOST_IDS, policyId=999)
    assert unknown.status_code == 200
    [item] = unknown.json()
    assert item["hostIds"] == []
    assert item["error"]


def test_pcrs_posture_info_fields_and_evidence(gw: Gateway) -> None:
    policy = next(p for p in gw.policies() if p["status"] == "active")
    host_ids = gw.host_ids(policy["id"])[:3]
    plain = gw.postures(policy["id"], host_ids)
    assert plain
    assert {str(r["hostId"]) for r in plain} == set(host_ids)
    for record in plain:
        assert set(record) == POSTURE_FIELDS
        assert record["evidence"] is None
        assert record["policyTitle"] == policy["title"]
        for key in ("firstFailDate", "lastFailDate", "firstPassDate", "lastPassDate"):
            assert record[key] == "" or record[key].endswith("Z")
    assert {r["status"] for r in plain} <= {"Passed", "Failed", "Error"}
    assert {"Passed", "Failed"} <= {r["status"] for r in plain}
    failed = next(r for r in plain if r["status"] == "Failed")
    assert failed["lastFailDate"]
    assert failed["causeOfFailure"]
    with_evidence = gw.postures(policy["id"], host_ids, evidenceRequired=1)
    assert [r["id"] for r in with_evidence] == [r["id"] for r in plain]
    assert all(r["evidence"] for r in with_evidence)


def test_pcrs_compressed_posture_info_is_a_gzip_body(gw: Gateway) -> None:
    policy = next(p for p in gw.policies() if p["status"] == "active")
    host_ids = gw.host_ids(policy["id"])[:2]
    body = [{"policyId": str(policy["id"]), "subscriptionId": "x", "hostIds": host_ids}]
    response = gw.post(POSTURE, body, compressionRequired=1)
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert response.content[:2] == b"\x1f\x8b"
    assert json.loads(gzip.decompress(response.content)) == gw.postures(policy["id"], host_ids)


def test_pcrs_error_bodies(gw: Gateway) -> None:
    bad_id = gw.get(HOST_IDS, policyId="abc")
    assert bad_id.status_code == 400
    [item] = bad_id.json()
    assert item["response"]["code"] == 1905
    assert "abc" in item["response"]["text"]
    bad_flag = gw.post(POSTURE, [], evidenceRequired=2)
    assert bad_flag.status_code == 404
    assert bad_flag.json() == {"message": "Invalid input Parameter."}
    bad_body = gw.post(POSTURE, {"policyId": "1"})
    assert bad_body.status_code == 400
    assert bad_body.json()[0]["response"]["code"] == 1905


def test_pcrs_ground_truth_matches_the_api(sim: SimulatorProcess, gw: Gateway) -> None:
    policies = gw.policies()
    assert [(p["id"], p["title"], p["status"], p["lastEvaluatedDate"]) for p in policies] == [
        (t["id"], t["title"], t["status"], t["lastEvaluatedDate"])
        for t in _truth(sim, "pcrs_policies")]
    pairs = {(p["id"], int(h)) for p in policies for h in gw.host_ids(p["id"])}
    truth_pairs = {(t["policyId"], t["hostId"]) for t in _truth(sim, "pcrs_policy_host_ids")}
    assert pairs == truth_pairs
    served = {}
    for policy in policies:
        ids = gw.host_ids(policy["id"])
        if ids:
            for record in gw.postures(policy["id"], ids):
                served[record["id"]] = (record["policyId"], record["hostId"],
                                        record["controlId"], record["status"],
                                        record["postureModifiedDate"])
    truth = {t["id"]: (t["policyId"], t["hostId"], t["controlId"], t["status"],
                       t["postureModifiedDate"]) for t in _truth(sim, "pcrs_posture_info")}
    assert served == truth


# ---- limits, faults, stats ----------------------------------------------------------------------


def test_gateway_throttles_with_429_and_retry_after() -> None:
    with SimulatorProcess(hosts=5, seed=3, gateway_rate_limit=3, gateway_rate_window=30) as limited:
        gw = Gateway(limited)
        statuses = [gw.post(COUNT).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        throttled = gw.post(COUNT)
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["Retry-After"]) <= 30
        assert limited.stats()["responses"]["csam_count"]["429"] == 2
        limited.configure(gateway_rate_limit=0)
        assert gw.post(COUNT).status_code == 200


RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Window-Sec", "X-RateLimit-Remaining",
                "X-RateLimit-ToWait-Sec")


def test_gateway_answers_carry_the_rate_headers() -> None:
    with SimulatorProcess(hosts=5, seed=3, gateway_rate_limit=5, gateway_rate_window=30) as limited:
        gw = Gateway(limited)
        answers = [gw.post(COUNT) for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        for answer in answers:
            assert all(name in answer.headers for name in RATE_HEADERS), answer.headers
            assert answer.headers["X-RateLimit-Limit"] == "5"
            assert answer.headers["X-RateLimit-Window-Sec"] == "30"
        assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["4", "3", "2", "1", "0",
                                                                         "0"]
        assert [a.headers["X-RateLimit-ToWait-Sec"] for a in answers[:5]] == ["0"] * 5
        throttled = answers[-1].headers
        assert throttled["X-RateLimit-ToWait-Sec"] == throttled["Retry-After"]
        assert 1 <= int(throttled["Retry-After"]) <= 30


def test_every_gateway_endpoint_sends_rate_headers(sim: SimulatorProcess) -> None:
    gw = Gateway(sim)
    answers = [gw.post(COUNT), gw.post(SEARCH, pageSize=5),
               gw.get(POLICY_LIST)]
    for answer in answers:
        assert answer.status_code == 200
        assert all(name in answer.headers for name in RATE_HEADERS), answer.url


def test_gateway_faults_and_concurrency_stats() -> None:
    with SimulatorProcess(hosts=20, seed=4) as faulty:
        gw = Gateway(faulty)
        faulty.configure(fault_budget={"http_503": 1}, fault_endpoints=["csam_search"])
        assert gw.post(SEARCH).status_code == 503
        assert gw.post(SEARCH).status_code == 200
        faulty.configure(fault_budget={"truncated_200": 1})
        broken = gw.post(SEARCH)
        assert broken.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(broken.content)
        faulty.configure(fault_budget={"conflict_1965": 1})
        throttled = gw.post(SEARCH)
        assert throttled.status_code == 429
        assert int(throttled.headers["Retry-After"]) >= 1
        assert gw.post(SEARCH).status_code == 200
        faulty.configure(fault_budget={"error_200": 1}, fault_endpoints=["auth"])
        no_token = requests.post(faulty.url + "/auth", data={
            "username": faulty.username, "password": faulty.password, "token": "true"})
        assert no_token.status_code == 200
        assert no_token.text == ""
        faulty.configure(fault_budget={"drop": 1}, fault_endpoints=["pcrs_posture_info"])
        policy = next(p for p in gw.policies() if p["status"] == "active")
        ids = gw.host_ids(policy["id"])
        with pytest.raises(requests.exceptions.RequestException):
            gw.postures(policy["id"], ids)
        assert faulty.stats()["faults"]["drop"] == 1

        faulty.configure(record_delay_sec=0.002)
        with ThreadPoolExecutor(4) as pool:
            batches = list(pool.map(lambda i: gw.postures(policy["id"], ids[i::4]), range(4)))
        assert sum(len(b) for b in batches) > 0
        stats = faulty.stats()
        assert stats["peak_concurrency"]["pcrs_posture_info"] >= 2
        assert stats["running"] == {}  # streamed and dropped calls all released their slot


# ---- clock advances -----------------------------------------------------------------------------


def test_advance_changes_assets_postures_and_expires_tokens() -> None:
    with SimulatorProcess(hosts=40, seed=5) as moving:
        gw = Gateway(moving)
        before_assets = {r["assetId"]: r for r in _truth(moving, "csam_assets")}
        before_postures = {r["id"]: r for r in _truth(moving, "pcrs_posture_info")}
        before_policies = {r["id"]: r for r in _truth(moving, "pcrs_policies")}
        now = moving.admin_get("/admin/clock")["now"]

        moving.advance(5 * 3600)
        expired = gw.post(COUNT)
        assert expired.status_code == 401
        assert expired.json()["message"] == "JWT expired"
        gw.token = gw.login()

        after_assets = {r["assetId"]: r for r in _truth(moving, "csam_assets")}
        assert set(before_assets) < set(after_assets)  # new assets, none lost
        changed = {i for i in before_assets
                   if after_assets[i]["lastModifiedDate"] != before_assets[i]["lastModifiedDate"]}
        assert changed
        recent = {"filters": [{"field": "asset.lastUpdated", "operator": "GREATER",
                               "value": now}]}
        served = {a["assetId"] for a in gw.all_assets(recent)}
        assert served == changed | (set(after_assets) - set(before_assets))

        after_postures = {r["id"]: r for r in _truth(moving, "pcrs_posture_info")}
        # Postures of the memberships that ended at the advance are gone with them.
        ended = {(r["policyId"], r["hostId"])
                 for r in _truth(moving, "pcrs_policy_host_ids_removed")}
        assert ended
        assert {i for i, r in before_postures.items()
                if (r["policyId"], r["hostId"]) in ended}.isdisjoint(after_postures)
        flipped = [i for i, r in before_postures.items()
                   if i in after_postures and after_postures[i]["status"] != r["status"]]
        assert flipped
        assert all(after_postures[i]["postureModifiedDate"] > now
                   for i in flipped)
        after_policies = {r["id"]: r for r in _truth(moving, "pcrs_policies")}
        assert any(after_policies[i]["lastEvaluatedDate"] > r["lastEvaluatedDate"]
                   for i, r in before_policies.items())
        # statusChangedSince serves exactly the flipped postures of a policy
        policy_id, host_id = (after_postures[flipped[0]]["policyId"],
                              after_postures[flipped[0]]["hostId"])
        since = gw.postures(policy_id, [str(host_id)], statusChangedSince=now)
        assert {r["id"] for r in since} == {
            i for i in flipped if after_postures[i]["policyId"] == policy_id
            and after_postures[i]["hostId"] == host_id}


def test_csam_has_more_as_string_and_no_cursor_fault() -> None:
    """§8 envelope edge cases: hasMore as the string "1", hasMore=1 without lastSeenAssetId."""
    with SimulatorProcess(hosts=20, seed=5) as edge:
        gw = Gateway(edge)
        assert edge.admin_get("/admin/config")["csam_has_more_as_string"] is False
        assert gw.post(SEARCH, pageSize=10, lastSeenAssetId=0).json()["hasMore"] == 1
        edge.configure(csam_has_more_as_string=True)
        first = gw.post(SEARCH, pageSize=10, lastSeenAssetId=0).json()
        assert first["hasMore"] == "1"
        assert first["lastSeenAssetId"] == first["assetListData"]["asset"][-1]["assetId"]
        last = gw.post(SEARCH, pageSize=300, lastSeenAssetId=0).json()
        assert last["hasMore"] == "0"
        assert last["count"] == 30
        edge.configure(csam_has_more_as_string=False)

        edge.configure(fault_budget={"csam_no_cursor": 1}, fault_endpoints=["csam_search"])
        broken = gw.post(SEARCH, pageSize=300, lastSeenAssetId=0)
        assert broken.status_code == 200
        doc = broken.json()
        assert doc["responseCode"] == "SUCCESS"
        assert doc["hasMore"] == 1
        assert "lastSeenAssetId" not in doc
        assert edge.stats()["faults"]["csam_no_cursor"] == 1
        # A retry gets the real page: the last one, with its cursor.
        retried = gw.post(SEARCH, pageSize=300, lastSeenAssetId=0).json()
        assert retried["hasMore"] == 0
        assert "lastSeenAssetId" in retried


def test_csam_has_more_as_string_flag() -> None:
    with SimulatorProcess(hosts=4, seed=5, csam_has_more_as_string=True) as edge:
        assert Gateway(edge).post(SEARCH, pageSize=2, lastSeenAssetId=0).json()["hasMore"] == "1"
