"""The Asset Management tag API: ``POST /qps/rest/2.0/search/am/tag`` (QPS XML, docs §12).

The tag tree is the one the hosts' ``TAGS`` come from (``datagen.TAGS`` keep their ids and
names, placed under parent tags), with dynamic rule tags, four levels deep at most. Like
everything in the world it is a pure function of the seed and the advances: each advance edits
the rule text of one dynamic tag and adds one child tag, so an incremental sync by ``updated``
has something to find.

QPS conventions served here: Basic auth only, an XML ``ServiceRequest`` body with
``filters/Criteria`` and ``preferences/limitResults`` (default 100, at most 1,000), results in
ascending id order, ``hasMoreRecords`` and ``lastId`` for the next page (``id GREATER lastId``),
and errors as a ``ServiceResponse`` whose ``responseCode`` is not SUCCESS.
"""

from __future__ import annotations

import base64
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from xml.sax.saxutils import escape

from qualys_simulator.datagen import TAGS
from qualys_simulator.faults import FaultInjector, Stats, drop_after
from qualys_simulator.http import Request, Response
from qualys_simulator.model import Epoch, fmt, mix
from qualys_simulator.world import World

PATH = "/qps/rest/2.0/search/am/tag"
ENDPOINT = "tag_search"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
XSD = "https://qualysapi.qualys.com/qps/xsd/2.0/am/tag.xsd"
#: Tags added by advances get ids from here on (above every tag of the initial tree).
NEW_TAG_BASE = 7_400_000
#: QPS operators per searchable field (the AM&T guide's Tag search fields).
OPERATORS: dict[str, frozenset[str]] = {
    "id": frozenset({"EQUALS", "NOT EQUALS", "GREATER", "LESSER", "IN"}),
    "name": frozenset({"EQUALS", "NOT EQUALS", "CONTAINS", "IN"}),
    "parent": frozenset({"EQUALS", "NOT EQUALS", "GREATER", "LESSER", "IN"}),
    "ruleType": frozenset({"EQUALS", "NOT EQUALS", "IN"}),
    "color": frozenset({"EQUALS", "NOT EQUALS", "CONTAINS"}),
    "provider": frozenset({"EQUALS", "NOT EQUALS", "IN"}),
    "updated": frozenset({"EQUALS", "GREATER", "LESSER"}),
}


@dataclass(frozen=True)
class TagDef:
    """One asset tag as the tag API shows it."""

    id: int
    name: str
    parent: int | None
    rule_type: str  # STATIC, OS_REGEX, NETWORK_RANGE, GROOVY, ...
    rule_text: str | None
    color: str
    criticality: int | None
    created: datetime
    modified: datetime


_BY_ID = {t.tag_id: t for t in TAGS}


def _host_tag(
    tag_id: int,
    parent: int | None,
    rule_type: str = "STATIC",
    *,
    rule_text: str | None = None,
    criticality: int | None = None,
    age_days: int = 400,
) -> tuple[Any, ...]:
    tag = _BY_ID[tag_id]  # the host tags' ids, names and colours stay what hosts show
    return (
        tag.tag_id,
        tag.name,
        parent,
        rule_type,
        rule_text,
        tag.background_color,
        criticality,
        age_days,
    )


# (id, name, parent, rule type, rule text, colour, criticality, days before the start it was made)
_TREE: tuple[tuple[Any, ...], ...] = (
    (7_000_001, "Business Units", None, "STATIC", None, "#455A64", None, 900),
    (7_000_002, "Environments", None, "STATIC", None, "#455A64", None, 900),
    (7_000_003, "Owners", None, "STATIC", None, "#455A64", None, 900),
    (7_000_004, "Zones", None, "STATIC", None, "#455A64", None, 900),
    (7_000_005, "Operating Systems", None, "STATIC", None, "#455A64", None, 900),
    (7_000_006, "Cloud Providers", None, "STATIC", None, "#455A64", None, 700),
    (7_000_011, "Business Unit: Finance", 7_000_001, "STATIC", None, "#607D8B", 4, 850),
    (7_000_021, "Staging", 7_000_002, "NAME_CONTAINS", "stg", "#FFC107", 2, 600),
    (7_000_031, "Owner: Platform Team", 7_000_003, "STATIC", None, "#795548", None, 500),
    (
        7_000_041,
        "PCI: Cardholder Data",
        7_100_005,
        "GROOVY",
        "if (asset.getAssetType() != Asset.AssetType.HOST) return false;\n"
        'return asset.hasVulnsWithSeverity(4, 5) && asset.getName().contains("pay");',
        "#9C27B0",
        5,
        300,
    ),
    _host_tag(7_100_001, None, "CLOUD_AGENT", rule_text=None, criticality=None, age_days=1000),
    _host_tag(
        7_100_002,
        7_000_002,
        "ASSET_SEARCH",
        rule_text="operatingSystem.category1:`Windows` or operatingSystem.category1:`Linux`",
        criticality=4,
    ),
    _host_tag(7_100_003, 7_000_005, "OS_REGEX", rule_text="(?i)linux", criticality=3),
    _host_tag(7_100_004, 7_000_005, "OS_REGEX", rule_text="(?i)windows server", criticality=3),
    _host_tag(7_100_005, 7_100_002, "STATIC", rule_text=None, criticality=5),
    _host_tag(7_100_006, 7_100_002, "OPEN_PORTS", rule_text="80,443,8443", criticality=4),
    _host_tag(7_100_007, 7_000_004, "NETWORK_RANGE", rule_text="10.10.0.0-10.10.255.255"),
    _host_tag(7_100_008, 7_000_004, "NETWORK_RANGE", rule_text="10.20.0.0-10.20.255.255"),
    _host_tag(7_100_009, 7_000_001, "STATIC", rule_text=None, criticality=3),
    _host_tag(7_100_010, 7_000_003, "STATIC", rule_text=None),
    _host_tag(7_100_011, 7_000_005, "OS_REGEX", rule_text="(?i)windows 1[01]", criticality=2),
    _host_tag(7_100_012, 7_000_002, "STATIC", rule_text=None, criticality=1, age_days=120),
    # CSAM's cloud assets carry these (gateway_data._tags): 7_300_000 + index of the provider.
    (7_300_000, "Cloud Asset AWS", 7_000_006, "CLOUD_ASSET", "aws", "#FF9800", None, 650),
    (7_300_001, "Cloud Asset AZURE", 7_000_006, "CLOUD_ASSET", "azure", "#FF9800", None, 650),
    (7_300_002, "Cloud Asset GCP", 7_000_006, "CLOUD_ASSET", "gcp", "#FF9800", None, 650),
)
#: The dynamic tags an advance may edit (their rule text changes; the rule type stays).
_EDITABLE = tuple(row[0] for row in _TREE if row[3] not in ("STATIC", "CLOUD_AGENT"))


class TagTree:
    """The tags now: the initial tree, then each advance's edit and new tag replayed."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._lock = threading.Lock()
        self._cache: tuple[int, list[TagDef]] | None = None

    def tags(self) -> list[TagDef]:
        """Every tag, in ascending id order (computed once per epoch)."""
        with self._lock:
            epoch = self.world.epoch
            if self._cache is None or self._cache[0] != epoch:
                self._cache = (epoch, self._build(list(self.world.epochs)))
            return self._cache[1]

    def _build(self, epochs: list[Epoch]) -> list[TagDef]:
        start = self.world.options.start
        seed = self.world.seed
        tags: dict[int, TagDef] = {}
        for tag_id, name, parent, rule_type, rule_text, color, crit, age in _TREE:
            created = start - timedelta(days=age, seconds=mix(seed, 50, tag_id) % 86400)
            modified = created + timedelta(days=mix(seed, 51, tag_id) % max(age // 2, 1))
            tags[tag_id] = TagDef(
                tag_id, name, parent, rule_type, rule_text, color, crit, created, modified
            )
        for epoch in epochs:
            span = max(int((epoch.end - epoch.start).total_seconds()), 2)
            # One dynamic tag's rule is edited within the advance...
            edited = _EDITABLE[mix(seed, 52, epoch.number) % len(_EDITABLE)]
            when = epoch.start + timedelta(seconds=1 + mix(seed, 53, epoch.number) % (span - 1))
            old = tags[edited]
            tags[edited] = replace(
                old, modified=when, rule_text=f"{old.rule_text or ''} /* rev {epoch.number} */"
            )
            # ...and one tag is added under an existing one (R&D projects: four levels deep).
            new_id = NEW_TAG_BASE + epoch.number
            added = epoch.start + timedelta(seconds=1 + mix(seed, 54, epoch.number) % (span - 1))
            tags[new_id] = TagDef(
                new_id,
                f"R&D Project {epoch.number:03d}",
                7_100_009,
                "STATIC",
                None,
                "#607D8B",
                None,
                added,
                added,
            )
        return [tags[k] for k in sorted(tags)]

    def children(self, tag_id: int) -> list[TagDef]:
        """The direct children of ``tag_id``."""
        return [t for t in self.tags() if t.parent == tag_id]


def ground_truth(tree: TagTree) -> Callable[[], Iterator[dict[str, Any]]]:
    """The ground truth of the ``tags`` stream: every tag as a full sync must load it."""

    def records() -> Iterator[dict[str, Any]]:
        for tag in tree.tags():
            yield {
                "id": tag.id,
                "name": tag.name,
                "parentTagId": tag.parent,
                "ruleType": tag.rule_type,
                "ruleText": tag.rule_text,
                "color": tag.color,
                "criticalityScore": tag.criticality,
                "created": fmt(tag.created),
                "modified": fmt(tag.modified),
            }

    return records


# ---- the request --------------------------------------------------------------------------------
class QPSError(Exception):
    """A QPS error answer: HTTP status, responseCode and errorMessage."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _bad(message: str) -> QPSError:
    return QPSError(400, "INVALID_REQUEST", message)


def _date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _bad(f"Invalid date value: {text.strip()}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _long(text: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit()):
        raise _bad(f"Invalid long value: {value}")
    return int(value)


@dataclass(frozen=True)
class Criterion:
    """One ``<Criteria field=... operator=...>value</Criteria>``."""

    field: str
    operator: str
    value: str

    def matches(self, tag: TagDef) -> bool:
        """Whether ``tag`` passes this criterion."""
        values = (
            [v.strip() for v in self.value.split(",")]
            if self.operator == "IN"
            else [self.value.strip()]
        )
        if self.field in ("id", "parent"):
            actual = tag.id if self.field == "id" else tag.parent
            wanted = [_long(v) for v in values]
            if actual is None:
                return self.operator == "NOT EQUALS"
            return _compare(actual, self.operator, wanted)
        if self.field == "updated":
            return _compare(tag.modified, self.operator, [_date(self.value)])
        # No simulated tag comes from a provider (connector-made tags carry one).
        actual_text = {
            "name": tag.name,
            "ruleType": tag.rule_type,
            "color": tag.color,
            "provider": "",
        }[self.field]
        if self.operator == "CONTAINS":
            return self.value.strip().lower() in actual_text.lower()
        return _compare(actual_text, self.operator, values)


def _compare(actual: Any, operator: str, wanted: list[Any]) -> bool:
    if operator in ("EQUALS", "IN"):
        return actual in wanted
    if operator == "NOT EQUALS":
        return actual not in wanted
    if operator == "GREATER":
        return bool(actual > wanted[0])
    return bool(actual < wanted[0])  # LESSER


def parse_request(body: bytes) -> tuple[list[Criterion], int]:
    """The criteria and page size of a ServiceRequest body (an empty body: all, 100)."""
    if not body.strip():
        return [], DEFAULT_LIMIT
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise _bad("DOCTYPE is not allowed in a ServiceRequest")
    try:
        root = ET.fromstring(body)  # noqa: S314 - no DTD (checked above), so no entities
    except ET.ParseError as exc:
        raise _bad(f"Invalid XML in the request body: {exc}") from None
    if root.tag != "ServiceRequest":
        raise _bad(f"Unexpected root element <{root.tag}>, expected <ServiceRequest>")
    criteria = []
    for element in root.iterfind("filters/Criteria"):
        field = element.get("field") or ""
        operator = (element.get("operator") or "").upper()
        if field not in OPERATORS:
            raise _bad(f"Unknown field '{field}' for the Tag search")
        if operator not in OPERATORS[field]:
            raise _bad(f"Operator '{operator}' is not supported for field '{field}'")
        criterion = Criterion(field, operator, element.text or "")
        # Check values now: a bad value is a 400 even when no tag would be compared with it.
        if field in ("id", "parent"):
            for value in criterion.value.split(","):
                _long(value)
        elif field == "updated":
            _date(criterion.value)
        criteria.append(criterion)
    limit_text = root.findtext("preferences/limitResults")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        limit = _long(limit_text)
        if not 1 <= limit <= MAX_LIMIT:
            raise _bad(f"limitResults must be between 1 and {MAX_LIMIT}")
    return criteria, limit


# ---- the answer ---------------------------------------------------------------------------------
def _head() -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<ServiceResponse '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:noNamespaceSchemaLocation="{XSD}">\n'
    )


def error_body(code: str, message: str) -> bytes:
    """A QPS error document."""
    return (
        f"{_head()}  <responseCode>{code}</responseCode>\n  <responseErrorDetails>\n"
        f"    <errorMessage>{escape(message)}</errorMessage>\n  </responseErrorDetails>\n"
        "</ServiceResponse>\n"
    ).encode()


def _text(name: str, value: object) -> str:
    return "" if value is None else f"<{name}>{escape(str(value))}</{name}>"


def tag_xml(tag: TagDef, children: list[TagDef]) -> str:
    """One ``<Tag>`` element, its direct children as a TagSimple list."""
    parts = [
        "    <Tag>",
        _text("id", tag.id),
        _text("name", tag.name),
        _text("parentTagId", tag.parent),
        _text("created", fmt(tag.created)),
        _text("modified", fmt(tag.modified)),
        _text("color", tag.color),
        _text("ruleType", tag.rule_type),
        _text("ruleText", tag.rule_text),
        _text("criticalityScore", tag.criticality),
    ]
    if children:
        simple = "".join(
            f"<TagSimple><id>{c.id}</id><name>{escape(c.name)}</name></TagSimple>" for c in children
        )
        parts.append(f"<children><list>{simple}</list></children>")
    parts.append("</Tag>\n")
    return "".join(parts)


class TagAPI:
    """Answers the tag search: auth, request checks, faults, then one page of tags."""

    def __init__(
        self,
        world: World,
        faults: FaultInjector,
        stats: Stats,
        credentials: Callable[[], tuple[str, str]],
    ) -> None:
        self.world = world
        self.faults = faults
        self.stats = stats
        self.credentials = credentials
        self.tree = TagTree(world)
        world.register_ground_truth("tags", ground_truth(self.tree))

    def handle(self, req: Request) -> Response | None:
        """The answer for a tag search; None for any other path."""
        if req.path.rstrip("/") != PATH:
            return None
        self.stats.request(ENDPOINT)
        try:
            return self._answer(req)
        except QPSError as exc:
            self.stats.response(ENDPOINT, exc.status, exc.code)
            return Response(exc.status, error_body(exc.code, exc.message), "application/xml")

    def _authorized(self, req: Request) -> bool:
        auth = req.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (user, password) == self.credentials()

    def _answer(self, req: Request) -> Response:
        if self.faults.roll("http_503", ENDPOINT):
            self.stats.fault("http_503")
            self.stats.response(ENDPOINT, 503)
            return Response(
                503, b"<html><body><h1>503 Service Unavailable</h1></body></html>", "text/html"
            )
        if not self._authorized(req):
            raise QPSError(
                401,
                "INVALID_CREDENTIALS",
                "Authentication Failure: the user name or password is incorrect",
            )
        if req.method != "POST":
            raise QPSError(
                405,
                "INVALID_REQUEST",
                f"Method {req.method} is not supported; use POST with a ServiceRequest body",
            )
        criteria, limit = parse_request(req.body)
        if self.faults.roll("error_200", ENDPOINT):
            self.stats.fault("error_200")
            raise QPSError(200, "INTERNAL_ERROR", "An internal error has occurred")
        matched = [t for t in self.tree.tags() if all(c.matches(t) for c in criteria)]
        page, more = matched[:limit], len(matched) > limit
        self.stats.records(ENDPOINT, len(page))
        self.stats.response(ENDPOINT, 200)
        head = (
            f"{_head()}  <responseCode>SUCCESS</responseCode>\n  <count>{len(page)}</count>\n"
            f"  <hasMoreRecords>{'true' if more else 'false'}</hasMoreRecords>\n"
        )
        if more:
            head += f"  <lastId>{page[-1].id}</lastId>\n"
        pieces = [head, "  <data>\n" if page else "  <data/>\n"]
        pieces += [tag_xml(t, self.tree.children(t.id)) for t in page]
        pieces.append("  </data>\n</ServiceResponse>\n" if page else "</ServiceResponse>\n")
        body: Any = [p.encode() for p in pieces]
        if self.faults.roll("drop", ENDPOINT):
            self.stats.fault("drop")
            size = sum(len(p) for p in body)
            body = drop_after(iter(body), self.faults.cut_point("drop", size))
        return Response(200, body, "application/xml")
