"""The simulated Qualys gateway: ``/auth`` (JWT), CSAM asset search/count and PCRS posture.

Wire formats follow ``docs/qualys-api.md`` §1, §8, §9 and §11; the data comes
from ``gateway_data``. The core server routes every gateway path to ``GatewayAPI.handle``; this
module does its own JWT checks, its own 429 throttling (the gateway does not use the VM API's
409 limits) and reports to the shared ``Stats`` and ``FaultInjector``.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import hashlib
import hmac
import json
import secrets
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from qualys_simulator.faults import IN_FLIGHT_GRACE_SEC, FaultInjector, Stats, drop_after
from qualys_simulator.gateway_data import (
    ASSET_FIELDS,
    SUBSCRIPTION_ID,
    AssetFilter,
    CsamConfig,
    CsamData,
    FilterError,
    PcrsConfig,
    PcrsData,
    Policy,
    epoch_ms,
    iso_ms,
    iso_s,
    parse_datetime,
)
from qualys_simulator.http import Request, Response
from qualys_simulator.model import Epoch
from qualys_simulator.world import World

JSON = "application/json"
DEFAULT_USERNAME = "qa_sim_user"
DEFAULT_PASSWORD = "sim-password"  # noqa: S105 - the simulator's documented test credential

CSAM_SEARCH = "/rest/2.0/search/am/asset"
CSAM_COUNT = "/rest/2.0/count/am/asset"
PCRS_POLICY_LIST = ("/pcrs/1.0/posture/policy/list", "/pcrs/2.0/posture/policy/list")
PCRS_HOST_IDS = ("/pcrs/1.0/posture/hostids", "/pcrs/5.0/posture/hostids")
PCRS_POSTURE = ("/pcrs/1.0/posture/postureInfo", "/pcrs/5.0/posture/postureInfo")
# Endpoint names in /admin/stats and fault_endpoints, like the VM API's "host_detection".
AUTH = "auth"
CSAM_SEARCH_NAME = "csam_search"
CSAM_COUNT_NAME = "csam_count"
PCRS_POSTURE_NAME = "pcrs_posture_info"


@dataclass
class GatewayConfig:
    """The gateway's settings: credentials, token lifetime, sizes, its 429 window and quirks."""
    username: str = DEFAULT_USERNAME
    password: str = DEFAULT_PASSWORD
    token_lifetime_sec: float = 4 * 3600.0  # §1: tokens live about four hours
    assets: int | None = None  # None: 1.5 x --hosts
    policies: int = 8
    csam_page_max: int = 300  # §8: larger pageSize values are capped
    csam_page_default: int = 100
    csam_inventory_key: str = "inventory"
    rate_limit: int = 0  # gateway calls per window before 429; 0 = unlimited
    rate_window_sec: float = 60.0
    pcrs_gzip_header: bool = False  # §11 unsure: send Content-Encoding with compressed bodies?
    csam_has_more_as_string: bool = False  # §8: hasMore "may arrive as the string \"1\""
    # Simulated seconds each authorized gateway call moves the clock (tests: tokens expire
    # after a known number of calls, however fast the client runs).
    clock_step_sec: float = 0.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> GatewayConfig:
        """The settings the command line gives (see ``add_arguments``)."""
        return cls(
            username=getattr(args, "username", None) or DEFAULT_USERNAME,
            password=getattr(args, "password", None) or DEFAULT_PASSWORD,
            token_lifetime_sec=float(args.token_lifetime),
            assets=args.assets,
            policies=int(args.policies),
            csam_page_max=int(args.csam_page_max),
            csam_inventory_key=str(args.csam_inventory_key),
            rate_limit=int(args.gateway_rate_limit),
            rate_window_sec=float(args.gateway_rate_window),
            pcrs_gzip_header=bool(args.pcrs_gzip_header),
            csam_has_more_as_string=bool(args.csam_has_more_as_string),
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the gateway's flags to the simulator's command line."""
    group = parser.add_argument_group("gateway (JWT, CSAM, PCRS)")
    group.add_argument("--assets", type=int, default=None,
                       help="CSAM assets (default: 1.5 x --hosts; one per VM host first)")
    group.add_argument("--policies", type=int, default=8,
                       help="PCRS policies; every fourth one is inactive (default 8)")
    group.add_argument("--token-lifetime", type=float, default=4 * 3600.0,
                       help="JWT lifetime in seconds, on both the simulated and the real clock")
    group.add_argument("--csam-page-max", type=int, default=300,
                       help="largest CSAM pageSize honoured; bigger requests are capped")
    group.add_argument("--csam-inventory-key", default="inventory",
                       choices=("inventory", "inventoryListData", "inventory_list_data"),
                       help="spelling of the CSAM inventory key (the sources disagree)")
    group.add_argument("--gateway-rate-limit", type=int, default=0,
                       help="gateway calls allowed per window before HTTP 429 (0 = unlimited)")
    group.add_argument("--gateway-rate-window", type=float, default=60.0,
                       help="length of the gateway rate window in seconds")
    group.add_argument("--pcrs-gzip-header", action="store_true",
                       help="send Content-Encoding: gzip with compressionRequired=1 bodies")
    group.add_argument("--csam-has-more-as-string", action="store_true",
                       help='send CSAM hasMore as the string "1"/"0" instead of a number (§8)')


# Runtime-configurable keys (POST /admin/config) -> GatewayConfig attribute.
CONFIG_KEYS = {
    "token_lifetime_sec": "token_lifetime_sec",
    "gateway_rate_limit": "rate_limit",
    "gateway_rate_window_sec": "rate_window_sec",
    "csam_page_max": "csam_page_max",
    "pcrs_gzip_header": "pcrs_gzip_header",
    "csam_has_more_as_string": "csam_has_more_as_string",
    "gateway_clock_step_sec": "clock_step_sec",
}


def _json(status: int, doc: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(doc).encode(), JSON, dict(headers or {}))


def _unauthorized(message: str) -> Response:
    return _json(401, {"status": 401, "error": "Unauthorized", "message": message})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Tokens:
    """HS256 JWTs signed with a per-run secret.

    ``exp`` is on the simulated clock, which only moves on ``/admin/advance``; the real issue
    time is kept server-side too, so a short lifetime also expires in real time mid-sync.
    """

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._secret = secrets.token_bytes(32)
        self._now = now
        self._lock = threading.Lock()
        self._issued: dict[str, tuple[float, float]] = {}  # jti -> (monotonic issue, lifetime)

    def issue(self, username: str, lifetime: float) -> str:
        now = self._now()
        jti = secrets.token_hex(16)
        payload = {
            "iss": "qualys-simulator",
            "sub": username,
            "subscriptionId": SUBSCRIPTION_ID,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=lifetime)).timestamp()),
            "jti": jti,
        }
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        signature = _b64(hmac.new(self._secret, f"{header}.{body}".encode(),
                                  hashlib.sha256).digest())
        with self._lock:
            self._issued[jti] = (time.monotonic(), lifetime)
        return f"{header}.{body}.{signature}"

    def check(self, authorization: str | None) -> str | None:
        """None when the bearer token is valid, else the 401 message."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return "Full authentication is required to access this resource"
        payload = self._verified_payload(authorization[7:].strip())
        if payload is None:
            return "Invalid JWT token"
        with self._lock:
            issued = self._issued.get(str(payload.get("jti")))
        if issued is None:
            return "Invalid JWT token"
        started, lifetime = issued
        expired_simulated = self._now().timestamp() >= payload.get("exp", 0)
        if expired_simulated or time.monotonic() - started >= lifetime:
            return "JWT expired"
        return None

    def _verified_payload(self, token: str) -> dict[str, Any] | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = _b64(hmac.new(self._secret, f"{parts[0]}.{parts[1]}".encode(),
                                 hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return None
        try:
            payload = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None


#: The window's call limit when none is configured (rate_limit 0): headers need a number,
#: and no test or benchmark comes near it.
UNLIMITED_RATE = 1_000_000


class _RateWindow:
    """Sliding window over real time: past the limit, 429 with ``Retry-After``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: deque[float] = deque()
        self._blocked_until = 0.0
        self._blocked_at = 0.0

    def admit(self, limit: int, window: float) -> tuple[int, bool | None, int]:
        """(seconds to wait or 0 when admitted, whether a previous Retry-After was honoured,
        calls left in the window)."""
        now = time.monotonic()
        with self._lock:
            honoured: bool | None = None
            if self._blocked_until:
                honoured = now >= self._blocked_until
                if honoured:
                    self._blocked_until = 0.0
                elif now - self._blocked_at < IN_FLIGHT_GRACE_SEC:
                    honoured = None
            while self._calls and self._calls[0] <= now - window:
                self._calls.popleft()
            if len(self._calls) >= limit:
                wait = max(int(self._calls[0] + window - now + 0.999), 1)
                if now >= self._blocked_until:  # a new 429, not one more during the last
                    self._blocked_at = now
                self._blocked_until = now + wait
                return wait, honoured, 0
            self._calls.append(now)
            return 0, honoured, limit - len(self._calls)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._blocked_until = 0.0


class _BadParam(Exception):  # carries a Qualys error answer
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _csam_error(message: str) -> _BadParam:
    return _BadParam(_json(400, {"responseMessage": message, "count": 0,
                                 "responseCode": "INVALID_REQUEST"}))


class GatewayAPI:
    """Serves every gateway path; ``handle`` returns None for anything else."""

    def __init__(self, world: World, faults: FaultInjector, stats: Stats,
                 config: GatewayConfig) -> None:
        self.world = world
        self.faults = faults
        self.stats = stats
        self.config = config
        self.tokens = _Tokens(world.clock.now)
        self.rate = _RateWindow()
        self.csam = CsamData(world, CsamConfig(asset_count=config.assets,
                                               inventory_key=config.csam_inventory_key))
        self.pcrs = PcrsData(world, PcrsConfig(policies=config.policies))
        world.on_advance(self._on_advance)
        world.register_ground_truth("csam_assets", self.csam_assets_truth)
        world.register_ground_truth("pcrs_policies", self.pcrs_policies_truth)
        world.register_ground_truth("pcrs_policy_host_ids", self.pcrs_policy_host_ids_truth)
        world.register_ground_truth("pcrs_posture_info", self.pcrs_posture_info_truth)
        world.register_ground_truth("pcrs_policy_host_ids_removed",
                                    self.pcrs_policy_host_ids_removed_truth)

    # -- runtime configuration ----------------------------------------------------------------

    def configure(self, config: dict[str, Any]) -> None:
        """Apply the gateway keys of a ``POST /admin/config`` body (the server passes us the keys
        it does not own); unknown keys are an error so typos do not pass silently."""
        unknown = set(config) - set(CONFIG_KEYS) - {"gateway_reset_rate_window"}
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        types = {f.name: f.type for f in fields(GatewayConfig)}
        for key, attr in CONFIG_KEYS.items():
            if key in config:
                kind = types[attr]
                cast: Callable[[Any], Any] = (
                    bool if kind == "bool" else int if kind == "int" else float
                )
                setattr(self.config, attr, cast(config[key]))
        if config.get("gateway_reset_rate_window"):
            self.rate.reset()

    def snapshot(self) -> dict[str, Any]:
        """The gateway's run-time settings, as ``GET /admin/config`` shows them."""
        return {key: getattr(self.config, attr) for key, attr in CONFIG_KEYS.items()}

    def _on_advance(self, world: World, epoch: Epoch) -> None:
        # Replaying eagerly keeps the first request after an advance as fast as the others.
        self.csam.rows()
        self.pcrs.sync()

    # -- routing ------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response | None:
        """Answer a gateway request (``/auth``, CSAM, PCRS); None for any other path."""
        route = self._route(request.path.rstrip("/") or "/")
        if route is None:
            return None
        endpoint, handler = route
        self.stats.request(endpoint)
        self.stats.enter(endpoint)
        released = False
        try:
            response = self._guarded(endpoint, request, handler)
            response = self._apply_body_faults(endpoint, response, request)
            if not isinstance(response.body, bytes | bytearray):
                # Streamed: the call is still running until the last chunk is written.
                response.body = self._leave_after(endpoint, response.body)
                released = True
            return response
        finally:
            if not released:
                self.stats.leave(endpoint)

    def _route(self, path: str) -> tuple[str, Callable[[Request], Response]] | None:
        """(endpoint name for stats and fault_endpoints, handler) for a gateway path."""
        routes: dict[str, tuple[str, Callable[[Request], Response]]] = {
            "/auth": (AUTH, self._auth),
            CSAM_SEARCH: (CSAM_SEARCH_NAME, self._csam_search),
            CSAM_COUNT: (CSAM_COUNT_NAME, self._csam_count),
            **dict.fromkeys(PCRS_POLICY_LIST, ("pcrs_policy_list", self._policy_list)),
            **dict.fromkeys(PCRS_HOST_IDS, ("pcrs_hostids", self._host_ids)),
            **dict.fromkeys(PCRS_POSTURE, (PCRS_POSTURE_NAME, self._posture_info)),
        }
        if path in routes:
            return routes[path]
        if path.startswith(("/rest/", "/pcrs/")):
            return "gateway_other", lambda _request: _json(404, {"message": "Not Found"})
        return None

    def _guarded(self, endpoint: str, request: Request,
                 handler: Callable[[Request], Response]) -> Response:
        if self.faults.roll("slow_first_byte", endpoint):
            self.stats.fault("slow_first_byte")
            time.sleep(self.faults.slow_first_byte_sec)
        if self.faults.roll("http_503", endpoint):
            self.stats.fault("http_503")
            doc = {"status": 503, "error": "Service Unavailable",
                   "message": "Service under maintenance"}
            return self._respond(endpoint, _json(503, doc))
        if endpoint != AUTH:
            if self.config.clock_step_sec:
                self.world.clock.advance(self.config.clock_step_sec)
            message = self.tokens.check(request.headers.get("Authorization"))
            if message is not None:
                return self._respond(endpoint, _unauthorized(message))
            limit = self.config.rate_limit or UNLIMITED_RATE
            window = self.config.rate_window_sec
            wait, honoured, remaining = self.rate.admit(limit, window)
            if honoured is not None:
                self.stats.towait(honoured=honoured)
            # The gateway's rate limit is a 429, never the VM API's 409 (§2); an injected
            # "conflict" fault on a gateway endpoint therefore also becomes a 429.
            injected = next((name for name in ("conflict_1965", "conflict_1960")
                             if self.faults.roll(name, endpoint)), None)
            if injected:
                self.stats.fault(injected)
                wait = max(wait, 1)
            # Every gateway answer carries the rate headers, as the VM API's do (§2): clients
            # pace themselves by them.
            rate_headers = {"X-RateLimit-Limit": str(limit),
                            "X-RateLimit-Window-Sec": str(int(window)),
                            "X-RateLimit-Remaining": str(remaining),
                            "X-RateLimit-ToWait-Sec": str(wait)}
            if wait:
                return self._respond(endpoint, _json(
                    429, {"status": 429, "error": "Too Many Requests",
                          "message": f"API rate limit exceeded. Retry after {wait} seconds."},
                    {"Retry-After": str(wait), **rate_headers, "X-RateLimit-Remaining": "0"}))
        try:
            response = handler(request)
        except _BadParam as exc:
            response = exc.response
        if endpoint != AUTH:
            response.headers = {**rate_headers, **(response.headers or {})}
        return self._respond(endpoint, response)

    def _respond(self, endpoint: str, response: Response) -> Response:
        self.stats.response(endpoint, response.status)
        return response

    # One return per fault: each replaces the whole answer.
    def _apply_body_faults(self, endpoint: str, response: Response,  # noqa: PLR0911
                           request: Request) -> Response:
        if response.status not in {200, 201}:
            return response
        if self.faults.roll("error_200", endpoint):
            self.stats.fault("error_200")
            if endpoint == AUTH:
                # 200 without a token: clients must not treat an empty body as a JWT.
                return Response(200, b"", "text/plain")
            if endpoint in (CSAM_SEARCH_NAME, CSAM_COUNT_NAME):
                # §8: a non-SUCCESS page without hasMore is a transient failure.
                return _json(200, {"responseMessage": "Internal error, please retry",
                                   "count": 0, "responseCode": "FAILED"})
            return _json(200, [{"response": {"datetime": iso_s(self.world.clock.now()),
                                             "code": 999, "text": "Internal error"}}])
        if endpoint == CSAM_SEARCH_NAME and self.faults.roll("csam_no_cursor", endpoint):
            # §8: a SUCCESS page with hasMore=1 but no lastSeenAssetId is a transient error.
            self.stats.fault("csam_no_cursor")
            doc = json.loads(_joined(response.body))
            doc.pop("lastSeenAssetId", None)
            doc["hasMore"] = self._has_more(1)
            return _json(200, doc, response.headers)
        if endpoint == CSAM_SEARCH_NAME and self.faults.roll("stalled_pager", endpoint):
            self.stats.fault("stalled_pager")
            doc = json.loads(_joined(response.body))
            doc.update(count=0, hasMore=self._has_more(1), assetListData={"asset": []},
                       lastSeenAssetId=int(request.query.get("lastSeenAssetId") or 0) + 1)
            return _json(200, doc, response.headers)
        broken = next((name for name in ("truncated_200", "malformed_xml")
                       if self.faults.roll(name, endpoint)), None)
        if broken:
            # The JSON analogue of a cut or broken document: a 200 whose body does not parse.
            self.stats.fault(broken)
            body = _joined(response.body)
            cut = self.faults.cut_point("truncated_200", max(len(body), 2))
            return Response(200, body[:cut], response.content_type, response.headers)
        if self.faults.roll("drop", endpoint):
            self.stats.fault("drop")
            chunks = [response.body] if isinstance(response.body, bytes) else response.body
            size = len(response.body) if isinstance(response.body, bytes) else 1 << 16
            response.body = drop_after(chunks, self.faults.cut_point("drop", max(size, 2)))
        return response

    def _leave_after(self, endpoint: str, body: Iterable[bytes]) -> _StreamedBody:
        return _StreamedBody(body, lambda: self.stats.leave(endpoint))

    # -- /auth ----------------------------------------------------------------------------------

    def _auth(self, request: Request) -> Response:
        if request.method != "POST":
            return _json(405, {"status": 405, "error": "Method Not Allowed"})
        form = request.form
        if form.get("username") != self.config.username or \
                form.get("password") != self.config.password:
            return _json(401, {"status": 401, "error": "Unauthorized",
                               "message": "Invalid username or password"})
        if form.get("token", "").lower() != "true":
            return _json(400, {"status": 400, "error": "Bad Request",
                               "message": "token=true is required"})
        token = self.tokens.issue(form["username"], self.config.token_lifetime_sec)
        # §1: HTTP 201 and the body is the bare JWT, not JSON.
        return Response(201, token.encode(), "text/plain;charset=UTF-8")

    # -- CSAM -----------------------------------------------------------------------------------

    def _csam_query(self, request: Request) -> tuple[list[AssetFilter], int, int]:
        try:
            filters = AssetFilter.parse_body(request.body)
        except FilterError as exc:
            raise _csam_error(str(exc)) from exc
        query = request.query
        try:
            page_size = int(query.get("pageSize") or self.config.csam_page_default)
            last_seen = int(query.get("lastSeenAssetId") or 0)
        except ValueError as exc:
            raise _csam_error(f"Invalid numeric parameter: {exc}") from exc
        if page_size < 1:
            raise _csam_error("pageSize must be positive")
        if query.get("assetLastUpdated"):
            flt = AssetFilter("asset.lastUpdated", "GREATER", query["assetLastUpdated"])
            try:
                flt.check()
            except FilterError as exc:
                raise _csam_error(str(exc)) from exc
            filters.append(flt)
        return filters, min(page_size, self.config.csam_page_max), last_seen

    def _matching(self, filters: list[AssetFilter], last_seen: int) -> Iterator[dict[str, Any]]:
        rows = self.csam.rows()
        start = bisect.bisect_right([row.asset_id for row in rows], last_seen)
        need_doc = any(f.needs_document() for f in filters)
        for row in rows[start:]:
            document = self.csam.asset(row) if need_doc else None
            if all(f.matches(row, document) for f in filters):
                yield document if document is not None else self.csam.asset(row)

    def _csam_search(self, request: Request) -> Response:
        if request.method != "POST":
            return _json(405, {"status": 405, "error": "Method Not Allowed"})
        filters, page_size, last_seen = self._csam_query(request)
        include = {name.strip().split(".")[0] for name in
                   (request.query.get("includeFields") or "").split(",") if name.strip()}
        unknown = include - set(ASSET_FIELDS)
        if unknown:
            raise _csam_error(f"Unknown includeFields: {', '.join(sorted(unknown))}")
        page: list[dict[str, Any]] = []
        has_more = 0
        for asset in self._matching(filters, last_seen):
            if len(page) == page_size:
                has_more = 1
                break
            page.append(asset)
        if include:
            # §8: includeFields nulls everything not listed; assetId stays so paging works.
            page = [{k: (v if k in include or k == "assetId" else None) for k, v in a.items()}
                    for a in page]
        self._delay(len(page))
        self.stats.records(CSAM_SEARCH_NAME, len(page))
        doc = {
            "responseMessage": "Valid API Access",
            "count": len(page),
            "responseCode": "SUCCESS",
            "lastSeenAssetId": page[-1]["assetId"] if page else last_seen,
            "hasMore": self._has_more(has_more),
            "assetListData": {"asset": page},
        }
        return _json(200, doc)

    def _has_more(self, value: int) -> int | str:
        return str(value) if self.config.csam_has_more_as_string else value

    def _csam_count(self, request: Request) -> Response:
        if request.method != "POST":
            return _json(405, {"status": 405, "error": "Method Not Allowed"})
        filters, _, _ = self._csam_query(request)
        if any(f.needs_document() for f in filters):
            count = sum(1 for _ in self._matching(filters, 0))
        else:
            count = sum(1 for row in self.csam.rows()
                        if all(f.matches(row, None) for f in filters))
        return _json(200, {"responseCode": "SUCCESS", "count": count,
                           "responseMessage": "Valid API Access"})

    # -- PCRS -----------------------------------------------------------------------------------

    def _pcrs_error(self, code: int, text: str) -> _BadParam:
        # §9: PCRS parameter errors are a 400 with a JSON array holding one "response" object.
        doc = [{"response": {"datetime": iso_s(self.world.clock.now()), "code": code,
                             "text": text}}]
        return _BadParam(_json(400, doc))

    @staticmethod
    def _param(request: Request, name: str) -> str | None:
        value = request.query.get(name) or request.form.get(name)
        return value or None

    def _date_param(self, request: Request, name: str) -> datetime | None:
        value = self._param(request, name)
        if value is None:
            return None
        try:
            return parse_datetime(value)
        except ValueError as exc:
            raise self._pcrs_error(1905, f"parameter {name} has invalid value: {value}") from exc

    def _policy_list(self, request: Request) -> Response:
        since = self._date_param(request, "lastEvaluationDate")
        self.pcrs.sync()
        policies = []
        for policy in self.pcrs.policies():
            evaluated = self.pcrs.policy_last_evaluated(policy)
            if since is not None and evaluated < since:
                continue
            policies.append({
                "id": policy.id,
                "title": policy.title,
                "createdBy": DEFAULT_USERNAME,
                "createdDate": iso_s(policy.created),
                "modifiedBy": DEFAULT_USERNAME,
                "modifiedDate": iso_s(policy.modified),
                "lastEvaluatedDate": iso_s(evaluated),
                "status": "active" if policy.active else "inactive",
                "locked": 0,
            })
        self.stats.records("pcrs_policy_list", len(policies))
        return _json(200, {"subscriptionId": SUBSCRIPTION_ID, "policyList": policies})

    def _policy_ids(self, request: Request) -> list[int]:
        raw = self._param(request, "policyId")
        if raw is None:
            raise self._pcrs_error(1903, "Missing required parameter(s): policyId")
        try:
            return [int(part) for part in raw.split(",") if part.strip()]
        except ValueError as exc:
            raise self._pcrs_error(1905, f"parameter policy_ids has invalid value: {raw}") from exc

    def _host_ids(self, request: Request) -> Response:
        policy_ids = self._policy_ids(request)
        since = self._date_param(request, "lastScanDate")
        self.pcrs.sync()
        out: list[dict[str, Any]] = []
        for policy_id in policy_ids:
            item: dict[str, Any] = {"policyId": str(policy_id), "subscriptionId": SUBSCRIPTION_ID,
                                    "hostIds": []}
            policy = self.pcrs.policy_by_id(policy_id)
            if policy is None:
                # §9: an unknown policy is a 200 with no hosts and an "error" field.
                item["error"] = f"Policy ID {policy_id} does not exist or is not accessible."
            else:
                item["hostIds"] = [str(pair.host_id) for pair in self.pcrs.pairs_of(policy)
                                   if since is None or pair.evaluations[-1][1] >= since]
            out.append(item)
        self.stats.records("pcrs_hostids", sum(len(item["hostIds"]) for item in out))
        return _json(200, out)

    def _flag(self, request: Request, name: str) -> bool:
        value = self._param(request, name)
        if value is None:
            return False
        if value not in {"0", "1"}:
            # §9: a bad flag value is a 404 with this exact body, not a 400.
            raise _BadParam(_json(404, {"message": "Invalid input Parameter."}))
        return value == "1"

    def _posture_info(self, request: Request) -> Response:
        if request.method != "POST":
            return _json(405, {"status": 405, "error": "Method Not Allowed"})
        evidence = self._flag(request, "evidenceRequired")
        compress = self._flag(request, "compressionRequired")
        since = {name: self._date_param(request, name)
                 for name in ("lastEvaluationDate", "statusChangedSince", "lastScanDate")}
        try:
            batches = json.loads(request.body or b"null")
        except ValueError as exc:
            text = "parameter request body has invalid value: not JSON"
            raise self._pcrs_error(1905, text) from exc
        if not isinstance(batches, list) or not all(
            isinstance(b, dict) and isinstance(b.get("hostIds"), list) for b in batches
        ):
            raise self._pcrs_error(1905, "parameter request body has invalid value: expected "
                                    '[{"policyId", "subscriptionId", "hostIds": [...]}]')
        wanted: list[tuple[Policy, list[int]]] = []
        for batch in batches:
            try:
                policy_id = int(batch.get("policyId"))
                host_ids = [int(h) for h in batch["hostIds"]]
            except (TypeError, ValueError) as exc:
                raise self._pcrs_error(1905, f"parameter policy_ids has invalid value: "
                                        f"{batch.get('policyId')}") from exc
            self.pcrs.sync()
            policy = self.pcrs.policy_by_id(policy_id)
            if policy is not None:
                wanted.append((policy, host_ids))
        body: Iterable[bytes] = self._posture_stream(wanted, evidence, since)
        headers: dict[str, str] = {}
        if compress:
            # §11: the body itself is gzip data; the header is optional (unsure in the docs).
            body = _gzip_stream(body)
            if self.config.pcrs_gzip_header:
                headers["Content-Encoding"] = "gzip"
        return Response(200, body, JSON, headers)

    def _posture_stream(self, wanted: list[tuple[Policy, list[int]]], evidence: bool,
                        since: dict[str, datetime | None]) -> Iterator[bytes]:
        total = sum(len(host_ids) for _, host_ids in wanted)
        batch = 0
        first = True
        yield b"["
        for policy, host_ids in wanted:
            for host_id in host_ids:
                batch += 1
                pair = self.pcrs.pair(policy, host_id)
                if pair is None:
                    continue
                chunk: list[str] = []
                for record in self.pcrs.posture_records(policy, pair, evidence=evidence,
                                                        batch=batch, batches=total):
                    if not _posture_matches(record, since):
                        continue
                    chunk.append(("" if first else ",") + json.dumps(record))
                    first = False
                self._delay(len(chunk))
                self.stats.records(PCRS_POSTURE_NAME, len(chunk))
                if chunk:
                    yield "".join(chunk).encode()
        yield b"]"

    def _delay(self, records: int) -> None:
        if self.faults.record_delay_sec > 0 and records:
            time.sleep(self.faults.record_delay_sec * records)

    # -- ground truth ---------------------------------------------------------------------------

    def csam_assets_truth(self) -> Iterator[dict[str, Any]]:
        """Ground truth of csam_assets: what a full sync must load, per asset."""
        for row in self.csam.rows():
            ident = self.csam.identity(row)
            yield {
                "assetId": row.asset_id,
                "hostId": row.host_id,
                "assetName": ident.name,
                "lastModifiedDate": iso_ms(row.last_modified),
                "agent": None if ident.agent_version is None else {
                    "version": ident.agent_version,
                    "lastCheckedIn": epoch_ms(ident.checked_in)},
            }

    def pcrs_policies_truth(self) -> Iterator[dict[str, Any]]:
        """Ground truth of pcrs_policies: what a full sync must load, per policy."""
        self.pcrs.sync()
        for policy in self.pcrs.policies():
            yield {
                "id": policy.id,
                "title": policy.title,
                "status": "active" if policy.active else "inactive",
                "lastEvaluatedDate": iso_s(self.pcrs.policy_last_evaluated(policy)),
            }

    def pcrs_policy_host_ids_truth(self) -> Iterator[dict[str, Any]]:
        """Ground truth of pcrs_policy_host_ids: one row per policy and host it evaluates."""
        self.pcrs.sync()
        for policy in self.pcrs.policies():
            for pair in self.pcrs.pairs_of(policy):
                yield {"policyId": policy.id, "hostId": pair.host_id}

    def pcrs_policy_host_ids_removed_truth(self) -> Iterator[dict[str, Any]]:
        """Ground truth of the ended memberships: one row per (policy, host) that left, which a
        destination must mark deleted."""
        self.pcrs.sync()
        for policy_id, host_id in self.pcrs.removed():
            yield {"policyId": policy_id, "hostId": host_id}

    def pcrs_posture_info_truth(self) -> Iterator[dict[str, Any]]:
        """Ground truth of pcrs_posture_info: one posture per policy, host and control."""
        self.pcrs.sync()
        for policy in self.pcrs.policies():
            for pair in self.pcrs.pairs_of(policy):
                for control_id in policy.control_ids:
                    state = self.pcrs.state(pair, control_id)
                    yield {
                        "id": self.pcrs.posture_id(policy, pair.host_id, control_id),
                        "policyId": policy.id,
                        "hostId": pair.host_id,
                        "controlId": control_id,
                        "status": state.status,
                        "postureModifiedDate": iso_s(state.modified),
                    }


class _StreamedBody:
    """A streamed body that marks its call finished once, when exhausted, dropped or closed.

    The server closes every streamed body; a generator closed before its first chunk would
    never run its ``finally``, which is why this is a class.
    """

    def __init__(self, body: Iterable[bytes], release: Callable[[], None]) -> None:
        self._body = body
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        finally:
            self.close()

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            inner_close = getattr(self._body, "close", None)
            if inner_close is not None:
                inner_close()
            release()


def _posture_matches(record: dict[str, Any], since: dict[str, datetime | None]) -> bool:
    for name, key in (("lastEvaluationDate", "lastEvaluatedDate"),
                      ("statusChangedSince", "postureModifiedDate"),
                      ("lastScanDate", "complianceLastScanDate")):
        bound = since[name]
        if bound is not None and parse_datetime(record[key]) < bound:
            return False
    return True


def _gzip_stream(body: Iterable[bytes]) -> Iterator[bytes]:
    # Level 1: the simulator must not become the bottleneck of a benchmark; 16 + MAX_WBITS
    # selects the gzip container (header and CRC), which is what §11 describes.
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for chunk in body:
        data = compressor.compress(chunk)
        if data:
            yield data
    yield compressor.flush()


def _joined(body: bytes | Iterable[bytes]) -> bytes:
    return body if isinstance(body, bytes) else b"".join(body)

