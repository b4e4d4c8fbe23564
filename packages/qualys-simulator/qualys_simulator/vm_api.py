"""The VM API: KnowledgeBase, Host List, Host List Detection, session, version (doc §2-7, §11).

Every request goes through the same pipeline, in the order Qualys applies it: maintenance (503),
authentication (401), X-Requested-With, method and parameter checks (400), limits (409), then the
document, streamed host by host so a 100k-host answer never exists in memory at once.
"""

from __future__ import annotations

import base64
import bisect
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from qualys_simulator import vm_xml
from qualys_simulator.datagen import Vuln
from qualys_simulator.faults import FaultInjector, Limits, Stats, drop_after
from qualys_simulator.http import Request, Response
from qualys_simulator.model import Detection, Host, fmt
from qualys_simulator.vm_params import ARF_KEYS, ParamError, check_params
from qualys_simulator.world import World

DEFAULT_TRUNCATION_LIMIT = 1000
CHUNK_BYTES = 32 * 1024
INCIDENT_NOTE = ("\n<!-- Internal error. Please contact customer support. "
                 "[incident signature: {sig}] -->\n")


@dataclass
class VMConfig:
    """The VM API's settings: credentials and the quirks tests switch on."""
    username: str = "qa_sim_user"
    password: str = "sim-password"  # noqa: S105 - the simulator's documented test credential
    doctype: bool = True
    consultant: bool = False  # consultant subscriptions reject TruRisk/QDS parameters (doc §10)
    kb_page_size: int = 0  # >0: the KB pages with WARNING like HL/HLD; 0 = one document
    scheme: str = "http"
    # Doc §4: the WARNING URL can carry parameters the caller never sent (e.g. details=None).
    # On, the truncation URL adds WARNING_URL_EXTRAS[endpoint] for those the caller left out.
    warning_url_extra_params: bool = False
    # >0: Host List Detection answers hold at most this many hosts and end with WARNING 1980,
    # even when the caller asked for truncation_limit=0 (no limit): a server may truncate any
    # answer, and the WARNING URL then repeats truncation_limit=0 with the next id_min.
    detection_truncation_limit: int = 0


def _in_ranges(ranges: list[tuple[int, int]], value: int) -> bool:
    i = bisect.bisect_right(ranges, (value, float("inf"))) - 1
    return i >= 0 and ranges[i][0] <= value <= ranges[i][1]


def _tag_set(values: dict[str, object], name: str) -> set[str] | None:
    raw = values.get(name)
    if raw is None:
        return None
    return {t.strip() for t in str(raw).split(",") if t.strip()}


# Parameters that never filter hosts by anything but their id (output switches, paging).
_ID_ONLY_PARAMS = frozenset({
    "action", "details", "truncation_limit", "ids", "id_min", "id_max", "echo_request",
    "show_asset_id", "show_tags", "show_cloud_tags", "host_metadata", "show_trurisk",
    "show_trurisk_factors", "show_ars", "show_ars_factors", "output_format",
})


class HostFilter:
    """Host-level filters shared by Host List and Host List Detection."""

    def __init__(self, values: dict[str, object], now: datetime) -> None:
        self.v = values
        self.now = now
        self.ids: list[tuple[int, int]] | None = values.get("ids")  # type: ignore[assignment]
        self.id_min: int = int(values.get("id_min", 0))  # type: ignore[call-overload]
        self.id_max = values.get("id_max")
        self.by_name = values.get("tag_set_by") == "name"
        self.include = _tag_set(values, "tag_set_include")
        self.exclude = _tag_set(values, "tag_set_exclude")
        self.include_all = values.get("tag_include_selector") == "all"
        self.exclude_all = values.get("tag_exclude_selector") == "all"
        self.ips = {i.strip() for i in str(values["ips"]).split(",")} if "ips" in values else None

    def start_id(self) -> int:
        """The lowest host id the request can match: where the walk starts."""
        low = self.id_min
        if self.ids:
            low = max(low, self.ids[0][0])
        return low

    def past_end(self, host_id: int) -> bool:
        """True when no host from ``host_id`` on can match (past id_max or the last ids range)."""
        if self.id_max is not None and host_id > int(self.id_max):  # type: ignore[call-overload]
            return True
        return bool(self.ids) and host_id > self.ids[-1][1]  # type: ignore[index]

    def matches_ids_only(self) -> bool:
        """Whether only id filters (ids, id_min, id_max) apply: no host needs generating."""
        return set(self.v) <= _ID_ONLY_PARAMS

    def matches(self, host: Host) -> bool:  # noqa: PLR0911 - one early return per filter
        """Whether ``host`` passes every host filter of the request."""
        v = self.v
        if self.ids is not None and not _in_ranges(self.ids, host.id):
            return False
        if self.ips is not None and host.ip not in self.ips:
            return False
        pattern = v.get("os_pattern")
        if isinstance(pattern, re.Pattern) and not pattern.search(host.os):
            return False
        checks: list[tuple[str, datetime | None, bool]] = [
            ("vm_processed_after", host.last_vm_processed, True),
            ("vm_processed_before", host.last_vm_processed, False),
            ("vm_scan_since", host.last_vm_scanned, True),
            ("vm_scan_date_after", host.last_vm_scanned, True),
            ("vm_scan_date_before", host.last_vm_scanned, False),
            ("no_vm_scan_since", host.last_vm_scanned, False),
            ("vm_auth_scan_date_after", host.last_vm_auth_scanned, True),
            ("vm_auth_scan_date_before", host.last_vm_auth_scanned, False),
        ]
        for name, value, after in checks:
            bound = v.get(name)
            if isinstance(bound, datetime):
                if value is None:
                    return False
                if after and not value > bound:
                    return False
                if not after and not value < bound:
                    return False
        for name, score, low in (("trurisk_min", host.trurisk_score, True),
                                 ("trurisk_max", host.trurisk_score, False),
                                 ("ars_min", host.asset_risk_score, True),
                                 ("ars_max", host.asset_risk_score, False)):
            bound = v.get(name)
            if bound is not None and (score < bound if low else score > bound):  # type: ignore[operator]
                return False
        days = v.get("max_days_since_last_vm_scan")
        if days is not None and host.last_vm_scanned < self.now - timedelta(days=int(days)):  # type: ignore[call-overload]
            return False
        if self.include is not None or self.exclude is not None:
            keys = {t.name if self.by_name else str(t.tag_id) for t in host.tags}
            if self.include is not None:
                hit = self.include <= keys if self.include_all else bool(self.include & keys)
                if not hit:
                    return False
            if self.exclude is not None:
                hit = self.exclude <= keys if self.exclude_all else bool(self.exclude & keys)
                if hit:
                    return False
        return True


class DetectionFilter:
    """The detection filters of a Host List Detection request."""

    def __init__(self, values: dict[str, object], now: datetime) -> None:
        self.v = values
        self.now = now
        self.statuses = set(values.get("status") or ("New", "Active", "Re-Opened"))  # type: ignore[call-overload]
        self.show_igs = bool(values.get("show_igs"))
        types = values.get("include_vuln_type")
        self.types = {"Confirmed", "Potential"} if types is None else {
            t.capitalize() for t in types  # type: ignore[attr-defined]
        }
        if self.show_igs:
            self.types.add("Info")
        self.qids: list[tuple[int, int]] | None = values.get("qids")  # type: ignore[assignment]
        # (flag index in Detection.arf, arf_*_filter mode 1-4) for every active ARF filter
        self.arf: list[tuple[int, str]] = [
            (i, str(values[name])) for i, name in enumerate(
                ("arf_kernel_filter", "arf_service_filter", "arf_config_filter"))
            if values.get(name, "0") != "0"
        ]
        flags = list(ARF_KEYS.values())
        self.arf += [(flags.index(ARF_KEYS[key]), "1")
                     for key in values.get("arf_filter_keys") or ()]  # type: ignore[attr-defined]
        self.severities: list[tuple[int, int]] | None = values.get("severities")  # type: ignore[assignment]

    def matches(self, d: Detection) -> bool:  # noqa: PLR0911 - one early return per filter
        """Whether detection ``d`` passes every detection filter of the request."""
        v = self.v
        if d.status not in self.statuses or d.type not in self.types:
            return False
        if self.qids is not None and not _in_ranges(self.qids, d.qid):
            return False
        if self.severities is not None and not _in_ranges(self.severities, d.severity):
            return False
        if self.arf and not all(_arf_keeps(d.arf[i], mode) for i, mode in self.arf):
            return False
        if d.qds is not None:
            if "qds_min" in v and d.qds < int(v["qds_min"]):  # type: ignore[call-overload]
                return False
            if "qds_max" in v and d.qds > int(v["qds_max"]):  # type: ignore[call-overload]
                return False
        elif "qds_min" in v:
            return False
        for name, value, after in (
            ("detection_updated_since", d.last_update, True),
            ("detection_updated_before", d.last_update, False),
            ("detection_processed_after", d.last_processed, True),
            ("detection_processed_before", d.last_processed, False),
            ("detection_last_tested_since", d.last_test, True),
            ("detection_last_tested_before", d.last_test, False),
        ):
            bound = v.get(name)
            if isinstance(bound, datetime) and value is not None:
                if after and value < bound:
                    return False
                if not after and value >= bound:
                    return False
        for name, after in (("detection_last_tested_since_days", True),
                            ("detection_last_tested_before_days", False)):
            days = v.get(name)
            if days is not None and (d.last_test >= self.now - timedelta(days=int(days))) != after:  # type: ignore[call-overload]
                return False
        days = v.get("max_days_since_detection_updated")
        return days is None or d.last_update >= self.now - timedelta(days=int(days))  # type: ignore[call-overload]


def _arf_keeps(flag: int | None, mode: str) -> bool:
    """arf_*_filter: 1 drops the detections the flag marks harmless (0), 2 keeps only those,
    3 keeps only the affected (1), 4 keeps every detection the flag applies to."""
    if mode == "1":
        return flag != 0
    if mode == "2":
        return flag == 0
    if mode == "3":
        return flag == 1
    return flag is not None


def host_options(values: dict[str, object]) -> vm_xml.HostOptions:
    """What the request asks each HOST element to show (details, tags, TruRisk, QDS, ...)."""
    o = vm_xml.HostOptions()
    o.details = str(values.get("details", "Basic"))
    o.show_asset_id = bool(values.get("show_asset_id"))
    o.show_tags = bool(values.get("show_tags"))
    o.show_cloud_tags = bool(values.get("show_cloud_tags"))
    o.host_metadata = "host_metadata" in values
    o.show_trurisk = bool(values.get("show_trurisk"))
    o.show_trurisk_factors = bool(values.get("show_trurisk_factors"))
    o.show_results = bool(values.get("show_results", True))
    o.show_reopened_info = bool(values.get("show_reopened_info"))
    o.show_qds = bool(values.get("show_qds"))
    o.show_qds_factors = bool(values.get("show_qds_factors"))
    o.show_ars = bool(values.get("show_ars"))
    o.show_ars_factors = bool(values.get("show_ars_factors"))
    o.show_arf_data = bool(values.get("show_arf_data"))
    o.mitre_attack_details = bool(values.get("mitre_attack_details"))
    return o


# ---- streaming helpers -----------------------------------------------------------------------
def chunked(pieces: Iterable[str]) -> Iterator[bytes]:
    """Encode text pieces and group them into chunks of about CHUNK_BYTES."""
    buffer: list[bytes] = []
    size = 0
    for piece in pieces:
        data = piece.encode("utf-8")
        buffer.append(data)
        size += len(data)
        if size >= CHUNK_BYTES:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)


class TrackedBody:
    """A streamed body that releases its concurrency slot when the server closes it."""

    def __init__(self, body: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self._body = body
        self._on_close: Callable[[], None] | None = on_close

    def __iter__(self) -> Iterator[bytes]:
        yield from self._body
        # Release before the server writes the terminating chunk: a client that starts its
        # next call the moment this body ends must find the slot free.
        self._release()

    def _release(self) -> None:
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()

    def close(self) -> None:
        """Close the body and free its call's concurrency slot."""
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
        self._release()


def _break_xml(body: Iterable[bytes], cut_at: int) -> Iterator[bytes]:
    """Insert a mismatched closing tag at ``cut_at``: not well-formed, unrecoverable."""
    sent = 0
    inserted = False
    for chunk in body:
        if not inserted and sent + len(chunk) >= cut_at:
            # Cut at a '>' so the broken tag does not land inside a multi-byte character.
            pos = chunk.find(b">", cut_at - sent)
            pos = len(chunk) - 1 if pos < 0 else pos
            broken = chunk[: pos + 1] + b"</BROKEN_ELEMENT><<&\x01" + chunk[pos + 1:]
            inserted = True
            sent += len(chunk)
            yield broken
            continue
        sent += len(chunk)
        yield chunk


BAD_TEXT = b"bad\x00char\x0b and bad UTF-8 \xff\xfe\xc3("


def _dirty_text(body: Iterable[bytes]) -> Iterator[bytes]:
    """Put invalid XML characters and bad UTF-8 into every CDATA text, as real data has now
    and then (doc §4); the tags stay intact, so a client that repairs text can go on."""
    for chunk in body:
        yield chunk.replace(b"<![CDATA[", b"<![CDATA[" + BAD_TEXT)


def _truncate(body: Iterable[bytes], cut_at: int, signature: int) -> Iterator[bytes]:
    """Stop at ``cut_at`` (on a tag boundary) and append the incident note, as Qualys does."""
    sent = 0
    for chunk in body:
        if sent + len(chunk) >= cut_at:
            pos = chunk.find(b">", cut_at - sent)
            pos = len(chunk) - 1 if pos < 0 else pos
            yield chunk[: pos + 1]
            yield INCIDENT_NOTE.format(sig=signature).encode()
            return
        sent += len(chunk)
        yield chunk
    yield INCIDENT_NOTE.format(sig=signature).encode()


_ROUTES = [
    (re.compile(r"^/api/[2-5]\.0/fo/asset/host/vm/detection/?$"), "host_detection"),
    (re.compile(r"^/api/[2-5]\.0/fo/asset/host/?$"), "host_list"),
    (re.compile(r"^/api/(2|4)\.0/fo/knowledge_base/vuln/?$"), "knowledge_base"),
    (re.compile(r"^/api/2\.0/fo/session/?$"), "session"),
    (re.compile(r"^/qps/rest/portal/version/?$"), "portal_version"),
    (re.compile(r"^/msp/about\.php$"), "about"),
]
# The VM API proper, where X-Requested-With is mandatory (doc §1).
FO_PATH = re.compile(r"^/api/[^/]+/fo/")
_VERSION = re.compile(r"^/api/(\d+\.\d+)/")


def api_version(path: str) -> str:
    """The API version a VM path names (``/api/5.0/fo/...`` -> ``5.0``)."""
    match = _VERSION.match(path)
    return match.group(1) if match else "2.0"


# Parameters a truncation URL may add on its own (doc §4). Each is valid for its endpoint, so a
# client that follows the URL verbatim gets a 200, only with less data than it asked for.
WARNING_URL_EXTRAS: dict[str, tuple[tuple[str, str], ...]] = {
    "knowledge_base": (("details", "None"),),
    "host_list": (("details", "None"),),
    "host_detection": (("show_results", "0"),),
}


class VMAPI:
    """The VM API: KnowledgeBase, Host List, Host List Detection, session and version checks."""

    def __init__(self, world: World, faults: FaultInjector, limits: Limits, stats: Stats,
                 config: VMConfig) -> None:
        self.world = world
        self.faults = faults
        self.limits = limits
        self.stats = stats
        self.config = config
        self._sessions: dict[str, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def endpoint_of(path: str) -> str | None:
        """The endpoint name of ``path``; None when it is not a VM API path."""
        for pattern, name in _ROUTES:
            if pattern.match(path):
                return name
        return None

    # ---- entry point -------------------------------------------------------------------------
    def handle(self, req: Request) -> Response | None:
        """Answer a VM API request; None for a path that is not the VM API's."""
        endpoint = self.endpoint_of(req.path)
        if endpoint is None:
            return None
        self.stats.request(endpoint)
        self.stats.enter(endpoint)
        released = False

        def leave() -> None:
            nonlocal released
            if not released:
                released = True
                self.stats.leave(endpoint)

        try:
            response = self._handle(req, endpoint)
        except BaseException:
            leave()
            raise
        if isinstance(response.body, bytes):
            leave()
        else:
            previous = response.body
            if isinstance(previous, TrackedBody):
                inner_close = previous.close

                def both() -> None:
                    inner_close()
                    leave()
                response.body = TrackedBody(previous, both)
            else:
                response.body = TrackedBody(previous, leave)
        return response

    def _error(self, endpoint: str, status: int, text: str, code: int | None = None, *,
               items: Iterable[tuple[str, str]] = (),
               headers: dict[str, str] | None = None) -> Response:
        self.stats.response(endpoint, status, code)
        body = vm_xml.simple_return(self.world.clock.now(), text, code, items=items,
                                    doctype=self.config.doctype)
        return Response(status, body, headers=headers or self.limits.headers(endpoint))

    def _missing_xrw(self, endpoint: str) -> Response:
        # Qualys refuses API calls without this header; its error code is not documented,
        # 1903 (missing required parameter) is the nearest documented one.
        return self._error(endpoint, 400, "Missing required parameter(s): X-Requested-With "
                           "header", 1903)

    def _user(self, req: Request) -> str | None:
        auth = req.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            ok = user == self.config.username and password == self.config.password
            return user if ok else None
        for cookie in req.headers.get("Cookie", "").split(";"):
            name, _, value = cookie.strip().partition("=")
            if name == "QualysSession":
                with self._lock:
                    return self._sessions.get(value)
        return None

    # The checks run in Qualys' order and each ends the request: one return per check.
    def _handle(self, req: Request, endpoint: str) -> Response:  # noqa: PLR0911
        if self.faults.roll("http_503", endpoint):
            self.stats.fault("http_503")
            self.stats.response(endpoint, 503)
            # Every VM API answer carries the limit headers (doc §2, §11), maintenance included.
            return Response(503, b"<html><body><h1>503 Service Unavailable</h1>Qualys is "
                            b"undergoing maintenance.</body></html>", "text/html",
                            headers=self.limits.headers(endpoint))
        # X-Requested-With is mandatory on /api/<ver>/fo/... only (doc §1); the version
        # checks need only Basic auth (doc §11).
        needs_xrw = FO_PATH.match(req.path) is not None
        if endpoint == "session":
            if needs_xrw and "X-Requested-With" not in req.headers:
                return self._missing_xrw(endpoint)
            return self._session(req)
        user = self._user(req)
        if user is None:
            return self._error(endpoint, 401, "Bad Login/Password")
        if needs_xrw and "X-Requested-With" not in req.headers:
            return self._missing_xrw(endpoint)
        if endpoint == "portal_version":
            return self._version(endpoint)
        if endpoint == "about":
            return self._about(endpoint)
        if req.method not in ("GET", "POST"):
            return self._error(endpoint, 400, "Request method (GET or POST) is incompatible with "
                               "specified parameter(s): action", 1908)
        try:
            values = check_params(req.form, endpoint, api_version(req.path),
                                  self.config.consultant)
        except ParamError as exc:
            return self._error(endpoint, 400, exc.text, exc.code)
        return self._limited(req, endpoint, values, user)

    def _limited(self, req: Request, endpoint: str, values: dict[str, object],
                 user: str) -> Response:
        decision = self.limits.admit(endpoint)
        if decision.towait is not None:
            self.stats.towait(honoured=decision.towait)
        forced = None
        if decision.admitted:
            if self.faults.roll("conflict_1960", endpoint):
                forced = 1960
            elif self.faults.roll("conflict_1965", endpoint):
                forced = 1965
            if forced is not None:
                self.stats.fault(f"conflict_{forced}")
                self.limits.release(endpoint)
                decision = self.limits.refusal(endpoint, forced)
        if not decision.admitted:
            if decision.code == 1960:
                return self._error(
                    endpoint, 409, "This API cannot be run again until "
                    f"{decision.calls_to_finish} currently running API instance has finished.",
                    1960, items=[("CALLS_TO_FINISH", str(decision.calls_to_finish))],
                    headers=decision.headers())
            wait = decision.to_wait
            hours, rest = divmod(wait, 3600)
            minutes, seconds = divmod(rest, 60)
            return self._error(
                endpoint, 409, f"This API cannot be run again for another {hours} hours, "
                f"{minutes} minutes and {seconds} seconds.", 1965,
                items=[("SECONDS_TO_WAIT", str(wait))], headers=decision.headers())
        headers = decision.headers()
        try:
            if self.faults.roll("error_200", endpoint):
                self.stats.fault("error_200")
                self.limits.release(endpoint)
                return self._error(endpoint, 200, "Internal error. Please contact customer "
                                   "support.", 999, headers=headers)
            if self.faults.roll("slow_first_byte", endpoint):
                self.stats.fault("slow_first_byte")
                time.sleep(self.faults.slow_first_byte_sec)
            pieces = self._document(req, endpoint, values, user)
        except BaseException:
            self.limits.release(endpoint)
            raise
        body: Iterable[bytes] = chunked(pieces)
        if self.faults.roll("truncated_200", endpoint):
            self.stats.fault("truncated_200")
            body = _truncate(body, self.faults.cut_point("truncated_200", 4096),
                             self.faults.cut_point("signature", 10**9))
        elif self.faults.roll("malformed_xml", endpoint):
            self.stats.fault("malformed_xml")
            body = _break_xml(body, self.faults.cut_point("malformed_xml", 4096))
        elif self.faults.roll("invalid_chars", endpoint):
            self.stats.fault("invalid_chars")
            body = _dirty_text(body)
        if self.faults.roll("drop", endpoint):
            self.stats.fault("drop")
            body = drop_after(body, self.faults.cut_point("drop", 4096))
        self.stats.response(endpoint, 200)
        return Response(200, TrackedBody(body, lambda: self.limits.release(endpoint)),
                        headers=headers)

    # ---- documents ---------------------------------------------------------------------------
    def _echo(self, req: Request, user: str, values: dict[str, object]) -> str:
        if not values.get("echo_request"):
            return ""
        post = req.body.decode("utf-8", "replace") if req.method == "POST" and req.body else None
        return vm_xml.request_echo(self.world.clock.now(), user, req.path,
                                   list(req.form.items()), post)

    def _next_url(self, req: Request, limit: int, next_id: int) -> str:
        host = req.headers.get("Host", "127.0.0.1")
        params = [("action", req.form.get("action", "list"))]
        if "truncation_limit" not in req.form:
            params.append(("truncation_limit", str(limit)))
        params += [(k, v) for k, v in req.form.items() if k not in ("action", "id_min")]
        if self.config.warning_url_extra_params:
            endpoint = self.endpoint_of(req.path) or ""
            params += [(k, v) for k, v in WARNING_URL_EXTRAS.get(endpoint, ())
                       if k not in req.form]
        params.append(("id_min", str(next_id)))  # always last (doc §11)
        query = "&".join(f"{k}={quote(v, safe=',-:')}" for k, v in params)
        return f"{self.config.scheme}://{host}{req.path}?{query}"

    def _document(self, req: Request, endpoint: str, values: dict[str, object],
                  user: str) -> Iterator[str]:
        now = self.world.clock.now()
        echo = self._echo(req, user, values)
        if self.faults.roll("stalled_pager", endpoint):
            self.stats.fault("stalled_pager")
            return self._stalled_page(req, endpoint, values, now, echo)
        if endpoint == "knowledge_base":
            return self._kb(req, values, now, echo)
        return self._hosts(req, endpoint, values, now=now, echo=echo)

    def _stalled_page(self, req: Request, endpoint: str, values: dict[str, object],
                      now: datetime, echo: str) -> Iterator[str]:
        """No record, but a WARNING 1980 whose id_min is one past the one asked for."""
        root = {"knowledge_base": "KNOWLEDGE_BASE_VULN_LIST_OUTPUT",
                "host_detection": "HOST_LIST_VM_DETECTION_OUTPUT"}.get(endpoint,
                                                                        "HOST_LIST_OUTPUT")
        limit = int(values.get("truncation_limit") or DEFAULT_TRUNCATION_LIMIT)  # type: ignore[call-overload]
        next_id = int(values.get("id_min", 0)) + 1  # type: ignore[call-overload]
        yield vm_xml.document_head(root, None, now, echo)
        yield vm_xml.warning(limit, self._next_url(req, limit, next_id))
        yield f"  </RESPONSE>\n</{root}>\n"

    def _hosts(self, req: Request, endpoint: str, values: dict[str, object], *, now: datetime,
               echo: str) -> Iterator[str]:
        detections = endpoint == "host_detection"
        root = "HOST_LIST_VM_DETECTION_OUTPUT" if detections else "HOST_LIST_OUTPUT"
        dtd = ("fo/asset/host/vm/detection/host_list_vm_detection_output.dtd" if detections
               else "fo/asset/host/host_list_output.dtd")
        limit = int(values.get("truncation_limit", DEFAULT_TRUNCATION_LIMIT))  # type: ignore[call-overload]
        cap = self.config.detection_truncation_limit
        if detections and cap and (not limit or limit > cap):
            limit = cap
        host_filter = HostFilter(values, now)
        det_filter = DetectionFilter(values, now) if detections else None
        options = host_options(values)
        world = self.world
        if not detections and options.details == "None":
            head = vm_xml.document_head(root, dtd if self.config.doctype else None, now, echo)
            return self._id_set(req, host_filter, limit, head, root)
        delay = self.faults.record_delay_sec

        def records() -> Iterator[tuple[Host, list[Detection]]]:
            for host in world.hosts_from(host_filter.start_id()):
                if host_filter.past_end(host.id):
                    return
                if not host_filter.matches(host):
                    continue
                if det_filter is None:
                    yield host, []
                    continue
                found = [d for d in world.detections(host) if det_filter.matches(d)]
                if found:  # hosts without (matching) detections are skipped by this API
                    yield host, found

        def generate() -> Iterator[str]:
            yield vm_xml.document_head(root, dtd if self.config.doctype else None, now, echo)
            count = 0
            it = records()
            opened = False
            for host, found in it:
                if limit and count >= limit:
                    if opened:
                        yield "    </HOST_LIST>\n"
                    yield vm_xml.warning(limit, self._next_url(req, limit, host.id))
                    break
                if not opened:
                    yield "    <HOST_LIST>\n"
                    opened = True
                if delay:
                    time.sleep(delay)
                count += 1
                yield (vm_xml.detection_host(host, found, options) if detections
                       else vm_xml.host_list_host(host, options))
            else:
                if opened:
                    yield "    </HOST_LIST>\n"
            self.stats.records(endpoint, count)
            yield f"  </RESPONSE>\n</{root}>\n"

        return generate()

    def _id_set(self, req: Request, host_filter: HostFilter, limit: int, head: str,
                root: str) -> Iterator[str]:
        """A ``details=None`` Host List: the matching ids as one ID_SET (doc §6), paged like
        HOST elements (``truncation_limit`` counts ids; 0 = all in one answer)."""
        ids = self.world.host_ids()
        # Only id filters: a host is never generated, so a full id list stays cheap.
        plain = host_filter.matches_ids_only()

        def generate() -> Iterator[str]:
            yield head
            page: list[int] = []
            next_id: int | None = None
            for host_id in ids[bisect.bisect_left(ids, host_filter.start_id()):]:
                if host_filter.past_end(host_id):
                    break
                if not plain:
                    host = self.world.host(host_id)
                    if host is None or not host_filter.matches(host):
                        continue
                elif host_filter.ids is not None and not _in_ranges(host_filter.ids, host_id):
                    continue
                if limit and len(page) >= limit:
                    next_id = host_id
                    break
                page.append(host_id)
            if page:
                yield vm_xml.id_set(page)
            if next_id is not None:
                yield vm_xml.warning(limit, self._next_url(req, limit, next_id))
            self.stats.records("host_list", len(page))
            yield f"  </RESPONSE>\n</{root}>\n"

        return generate()

    def _kb(self, req: Request, values: dict[str, object], now: datetime,
            echo: str) -> Iterator[str]:
        details = str(values.get("details", "Basic"))
        flags = {k for k in ("show_disabled_flag", "show_qid_change_log",
                             "show_supported_modules_info", "show_pci_reasons") if values.get(k)}
        ids: list[tuple[int, int]] | None = values.get("ids")  # type: ignore[assignment]
        id_min = int(values.get("id_min", 0))  # type: ignore[call-overload]
        id_max = values.get("id_max")
        bounds = [(name, field, after) for name, field, after in (
            ("last_modified_after", "last_modified", True),
            ("last_modified_by_service_after", "last_modified", True),
            ("last_modified_before", "last_modified", False),
            ("last_modified_by_service_before", "last_modified", False),
            ("published_after", "published", True),
            ("published_before", "published", False),
            ("code_modified_after", "code_modified", True),
            ("code_modified_before", "code_modified", False),
        ) if name in values]
        patchable = values.get("is_patchable")
        user_modified = ("last_modified_by_user_after" in values
                         or "last_modified_by_user_before" in values)
        limit = self.config.kb_page_size
        world = self.world
        delay = self.faults.record_delay_sec
        total = world.kb_total()

        def matches(v: Vuln) -> bool:
            for name, field, after in bounds:
                value: datetime = getattr(v, field)
                bound: datetime = values[name]  # type: ignore[assignment]
                if (after and value < bound) or (not after and value > bound):
                    return False
            if user_modified:
                return False  # no QID of the simulated KB has a user customization
            return patchable is None or v.patchable == int(patchable)  # type: ignore[call-overload]

        def generate() -> Iterator[str]:
            yield vm_xml.document_head("KNOWLEDGE_BASE_VULN_LIST_OUTPUT",
                                       "fo/knowledge_base/vuln/knowledge_base_vuln_list_output.dtd"
                                       if self.config.doctype else None, now, echo)
            count = 0
            opened = False
            for k in range(total):
                qid = world.qid_of(k)
                if qid < id_min or (ids is not None and not _in_ranges(ids, qid)):
                    continue
                if id_max is not None and qid > int(id_max):  # type: ignore[call-overload]
                    break
                v = world.vuln(k)
                if not matches(v):
                    continue
                if limit and count >= limit:
                    yield "    </VULN_LIST>\n"
                    yield vm_xml.warning(limit, self._next_url(req, limit, qid))
                    break
                if not opened:
                    yield "    <VULN_LIST>\n"
                    opened = True
                if delay:
                    time.sleep(delay)
                count += 1
                yield vm_xml.vuln(v, details, flags)
            else:
                if opened:
                    yield "    </VULN_LIST>\n"
            self.stats.records("knowledge_base", count)
            yield "  </RESPONSE>\n</KNOWLEDGE_BASE_VULN_LIST_OUTPUT>\n"

        return generate()

    # ---- session and version (doc §11) -------------------------------------------------------
    def _session(self, req: Request) -> Response:
        action = req.form.get("action")
        now = self.world.clock.now()
        if action == "login":
            if (req.form.get("username") != self.config.username
                    or req.form.get("password") != self.config.password):
                return self._error("session", 401, "Bad Login/Password")
            token = secrets.token_hex(16)
            with self._lock:
                self._sessions[token] = self.config.username
            self.stats.response("session", 200)
            # Two Set-Cookie lines: the server sends one header line per "\n"-separated value.
            cookies = (f"QualysSession={token}; path=/api; HttpOnly\n"
                       f"DWRSESSIONID={secrets.token_hex(12)}; path=/")
            return Response(200, vm_xml.simple_return(now, "Logged in"),
                            headers={**self.limits.headers("session"), "Set-Cookie": cookies})
        if action == "logout":
            token = ""
            for cookie in req.headers.get("Cookie", "").split(";"):
                name, _, value = cookie.strip().partition("=")
                if name == "QualysSession":
                    token = value
            with self._lock:
                known = self._sessions.pop(token, None)
            if known is None:
                return self._error("session", 401, "Bad Login/Password")
            self.stats.response("session", 200)
            return Response(200, vm_xml.simple_return(now, "Logged out"),
                            headers=self.limits.headers("session"))
        if action is None:
            return self._error("session", 400, "Missing required parameter(s): action", 1903)
        return self._error("session", 400, f"parameter action has invalid value: {action}", 1905)

    def _version(self, endpoint: str) -> Response:
        self.stats.response(endpoint, 200)
        body = (vm_xml.XML_DECL + "<ServiceResponse><responseCode>SUCCESS</responseCode>"
                "<count>1</count><data><Portal-Version><PortalApplication-VERSION>3.19.1.0-1"
                "</PortalApplication-VERSION></Portal-Version><Module-Version><Name>VM</Name>"
                "<Version>10.32.0.0-1</Version></Module-Version></data></ServiceResponse>\n")
        return Response(200, body.encode(), "application/xml",
                        headers=self.limits.headers(endpoint))

    def _about(self, endpoint: str) -> Response:
        self.stats.response(endpoint, 200)
        body = (vm_xml.XML_DECL + "<ABOUT>\n  <API-VERSION MAJOR=\"2\" MINOR=\"0\"/>\n"
                "  <WEB-VERSION>10.32.0.0-1</WEB-VERSION>\n  <SCANNER-VERSION>13.5.22-1"
                "</SCANNER-VERSION>\n  <VULNSIGS-VERSION>2.6.210-2</VULNSIGS-VERSION>\n"
                f"  <XML-OUTPUT-VERSION>{fmt(self.world.clock.now())}</XML-OUTPUT-VERSION>\n"
                "</ABOUT>\n")
        return Response(200, body.encode(), headers=self.limits.headers(endpoint))
