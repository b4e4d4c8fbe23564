"""The one place where Qualys XML text becomes typed values.

Every stream schema is compiled once into an ``ObjectSpec``: a table from XML element name to
the record key, the kind of element (scalar, nested object, list, ...) and the converter for its
JSON schema type. ``qualys_xml`` walks the parsed elements and looks each one up here, so adding a
field to a stream is a schema change only.

Choices:

- ``number`` becomes a ``float`` after the text has been checked to be plain decimal syntax
  (``7.5``, ``-1``, ``0.125``). Qualys numbers are CVSS scores and percentages with a handful of
  significant digits, so the float's shortest repr round-trips the text exactly, and floats
  serialise with every JSON library (``Decimal`` does not with orjson, and would be slower).
- ``date-time`` becomes ``YYYY-MM-DDTHH:MM:SSZ`` (UTC). ``YYYY-MM-DD`` is accepted as midnight UTC.
  Bookmarks, settings and HTTP ``Date`` headers are read here too (:func:`parse_utc`,
  :func:`http_date`), and written back as text with :func:`format_utc`. Gateway (JSON) records
  get their dates rewritten here as well (:class:`DateNormalizer`, :func:`iso_utc`): every date
  the tap reads or writes is parsed and formatted in this module.
- ``boolean`` accepts ``0``/``1`` (what Qualys sends) and ``true``/``false``.
- Text that does not fit its type raises ``CastError``; nothing is coerced silently.
- A list Qualys sends as one comma-separated text (``COMMA_SEPARATED``) becomes an array of its
  item type. An object whose shape is not settled (``additionalProperties``, CVSS_V4) keeps its
  subtree as text, except the scalar properties its schema declares, which are cast.
- Whitespace around a value is padding (pretty-printed CDATA) and is stripped; an empty or
  whitespace-only element is ``None``. ``RESULTS`` is the exception: see ``VERBATIM``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from email.utils import parsedate_to_datetime
from enum import Enum
from importlib import resources
from typing import Any, ClassVar, Final

from tap_qualys.errors import CastError

__all__ = [
    "DATETIME_CACHE",
    "DateNormalizer",
    "Field",
    "Kind",
    "ObjectSpec",
    "compile_schema",
    "format_utc",
    "http_date",
    "iso_utc",
    "load_stream_spec",
    "parse_utc",
    "qualys_filter_datetime",
    "to_boolean",
    "to_datetime",
    "to_integer",
    "to_number",
    "to_string",
]

Caster = Callable[[str], Any]


# --- scalar converters --------------------------------------------------------------------------
# Each takes the element's raw text (never None) and returns the typed value, or None for
# empty/whitespace-only text.


def to_string(text: str) -> str | None:
    return text.strip() or None


def to_integer(text: str) -> int | None:
    if text.isdigit() and text.isascii():  # fast path: the usual unpadded value
        return int(text)
    value = text.strip()
    if not value:
        return None
    # int() alone would accept "1_000", "+1" and non-ASCII digits such as "٣".
    digits = value[1:] if value[0] == "-" else value
    if digits.isdigit() and digits.isascii():
        return int(value)
    msg = f"not an integer: {value!r}"
    raise CastError(msg)


_DECIMAL_RE: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def to_number(text: str) -> float | None:
    value = text.strip()
    if not value:
        return None
    # float() alone would accept "nan", "inf", "1e400" and "1_0".
    if _DECIMAL_RE.fullmatch(value) is None:
        msg = f"not a decimal number: {value!r}"
        raise CastError(msg)
    number = float(value)
    # 310+ digits overflow to inf, which JSON cannot carry (the streams skip the SDK's
    # conformance pass, which would have turned it into null).
    if not math.isfinite(number):
        msg = f"decimal number out of range: {value[:40]!r}"
        raise CastError(msg)
    return number


_BOOLEANS: Final = {"0": False, "1": True, "false": False, "true": True}


def to_boolean(text: str) -> bool | None:
    value = text.strip()
    if not value:
        return None
    result = _BOOLEANS.get(value.lower())
    if result is None:
        msg = f"not a 0/1 boolean: {value!r}"
        raise CastError(msg)
    return result


#: Recently validated date-times: a detection page repeats the same scan times many times over.
DATETIME_CACHE: dict[str, str] = {}
DATETIME_CACHE_MAX: Final = 4096


def to_datetime(text: str) -> str | None:
    cached = DATETIME_CACHE.get(text)
    if cached is not None:
        return cached
    result = _to_datetime(text)
    if result is not None:
        if len(DATETIME_CACHE) >= DATETIME_CACHE_MAX:
            DATETIME_CACHE.clear()
        DATETIME_CACHE[text] = result
    return result


def _to_datetime(text: str) -> str | None:
    value = text.strip()
    if not value:
        return None
    try:
        # Fast path: the form Qualys documents. fromisoformat (C) validates the calendar values,
        # and the text is already the output form.
        if len(value) == 20 and value[10] == "T" and value[19] == "Z":
            datetime.fromisoformat(value[:19])  # Python 3.10's fromisoformat rejects "Z"
            return value
        if len(value) == 10:
            return date.fromisoformat(value).isoformat() + "T00:00:00Z"
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        msg = f"not an ISO-8601 date-time: {value!r}"
        raise CastError(msg) from None
    if parsed.tzinfo is None:
        # Qualys documents every datetime as UTC; an offset-less value is UTC too.
        parsed = parsed.replace(tzinfo=timezone.utc)
    return format_utc(parsed)


_JSON_TYPES: Final = {
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
    list: "array",
    dict: "object",
}


def parse_utc(value: datetime | str) -> datetime:
    """A bookmark, setting or record date-time as an aware UTC datetime.

    Accepts what the tap itself writes (``...Z``, ``...+00:00``, with or without fractions) and a
    bare ``YYYY-MM-DD``; an offset-less value is UTC, as everywhere in Qualys. Anything else,
    including a number, raises ``CastError``.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            msg = f"not an ISO-8601 date-time: {value!r}"
            raise CastError(msg) from None
    else:
        kind = _JSON_TYPES.get(type(value), type(value).__name__)
        msg = f"not an ISO-8601 date-time: {json.dumps(value)[:60]} (a JSON {kind})"
        raise CastError(msg)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def qualys_filter_datetime(value: datetime | str) -> str:
    """A bookmark as a gateway filter value: UTC to the second, floored (so the window overlaps)."""
    return format_utc(parse_utc(value))


def format_utc(value: datetime, *, milliseconds: bool = False) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``, the form of Qualys' VM API; ``.mmmZ`` that of its gateway."""
    value = value.astimezone(timezone.utc)
    if milliseconds:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def http_date(value: str | None) -> datetime | None:
    """An HTTP ``Date`` header (``Fri, 04 Dec 2026 17:25:44 GMT``) in UTC; None if unusable."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parse_utc(parsed)


class DateNormalizer:
    """Rewrites the ``date-time`` fields of gateway records to ISO-8601 UTC strings.

    CSAM mixes ISO strings with milliseconds (``2025-07-11T14:21:10.000Z``) and integer epoch
    milliseconds (agent, sensor, inventory, activity); PCRS writes ``""`` for dates that never
    happened. Every ``format: date-time`` field of the stream's schema, at any depth, comes out
    as an ISO-8601 UTC string or null: epoch milliseconds become ``YYYY-MM-DDTHH:MM:SS.mmmZ``,
    ISO strings already in UTC (``Z``) are kept as sent, other offsets are converted, ``""``
    becomes null. The walk visits only the schema paths that lead to such fields.
    """

    _LEAF: ClassVar[dict[str, Any]] = {}

    def __init__(self, schema: Mapping[str, Any]) -> None:
        """Compile the paths to the date-time fields of ``schema``."""
        self._paths = self._compile(schema) or {}

    @classmethod
    def _compile(cls, schema: Mapping[str, Any]) -> dict[str, Any] | None:
        if schema.get("format") == "date-time":
            return cls._LEAF
        if "properties" in schema:
            paths = {
                key: sub
                for key, prop in schema["properties"].items()
                if (sub := cls._compile(prop)) is not None
            }
            return paths or None
        if isinstance(schema.get("items"), dict):
            return cls._compile(schema["items"])
        return None

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        """Normalise ``record`` in place and return it."""
        self._walk(record, self._paths)
        return record

    def _walk(self, node: Any, paths: dict[str, Any]) -> None:
        if isinstance(node, list):
            for item in node:
                self._walk(item, paths)
            return
        if not isinstance(node, dict):
            return
        for key, sub in paths.items():
            if key not in node:
                continue
            if sub is self._LEAF:
                node[key] = iso_utc(node[key])
            else:
                self._walk(node[key], sub)


def iso_utc(value: Any) -> Any:
    """One gateway date as ISO-8601 UTC with milliseconds; ``""``/null as None.

    Integers are epoch milliseconds. Strings already carrying a zone are kept when they are in
    UTC ``Z`` form, otherwise converted; anything unparseable is passed through untouched rather
    than dropped, so no data is lost to an unexpected format.
    """
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    elif isinstance(value, str) and not value.endswith("Z"):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    else:
        return value
    return format_utc(moment, milliseconds=True)


_CASTERS: Final[dict[tuple[str, str | None], Caster]] = {
    ("string", None): to_string,
    ("string", "date-time"): to_datetime,
    ("integer", None): to_integer,
    ("number", None): to_number,
    ("boolean", None): to_boolean,
}

# --- XML facts the JSON schema cannot express ---------------------------------------------------

#: Attributes of scalar elements that become a sibling key on the parent object:
#: ``<QDS severity="HIGH">87</QDS>`` -> ``qds: 87, qds_severity: "HIGH"``.
ATTRIBUTE_SIBLINGS: Final[Mapping[str, tuple[str, str]]] = {
    "QDS": ("severity", "qds_severity"),
    "BASE": ("source", "base_source"),
}

#: Lists of leaf elements with attributes, keyed by the list property: each item becomes an
#: object where the attributes keep their names and the text goes to this key.
#: ``<QDS_FACTOR name="epss">0.1</QDS_FACTOR>`` -> ``{"name": "epss", "value": "0.1"}``.
TEXT_KEYS: Final[Mapping[str, str]] = {
    "qds_factors": "value",
    "threat_intelligence": "text",
    "vuln_count": "count",
}

#: Array properties whose items repeat directly inside the parent instead of inside a wrapper
#: element: ``TRURISK_SCORE_FACTORS > VULN_COUNT*``.
REPEATED: Final = frozenset({"VULN_COUNT"})

#: Other spellings of the same element (one source spells the KB change log differently).
ALIASES: Final[Mapping[str, str]] = {"CHANGES_DATE": "change_date"}

#: Free-text fields whose own leading/trailing whitespace is data: scanner output keeps its
#: layout. Only whitespace *outside* the CDATA section is padding there.
VERBATIM: Final = frozenset({"RESULTS"})

#: Lists that Qualys sends as one comma-separated text (``<SUPPORTED_MODULES>VM,PC</...>``,
#: ``<ASSET_GROUP_IDS>12,34</...>``): their array property gets one item per value.
COMMA_SEPARATED: Final = frozenset({"SUPPORTED_MODULES", "ASSET_GROUP_IDS"})


class Kind(Enum):
    SCALAR = "scalar"  # text -> cast
    VERBATIM = "verbatim"  # text, only the padding outside CDATA removed
    OBJECT = "object"  # children -> nested dict
    LIST = "list"  # wrapper element, each child is an item
    REPEATED = "repeated"  # the element itself is one item of the parent's list
    TEXT_OBJECT = "text_object"  # leaf with attributes -> {attr..., TEXT_KEY: text}
    RAW = "raw"  # shape unknown (CVSS_V4): any subtree as nested dicts of strings, then ``cast``


@dataclass(slots=True)
class Field:
    """How one XML element becomes (part of) a record."""

    key: str
    kind: Kind
    cast: Caster = to_string
    spec: ObjectSpec | None = None  # OBJECT, TEXT_OBJECT; item spec for LIST/REPEATED of objects
    item: Field | None = None  # LIST, REPEATED
    attribute: tuple[str, str] | None = None  # (attribute, sibling key) for ATTRIBUTE_SIBLINGS


@dataclass(slots=True)
class ObjectSpec:
    """The converter table for one JSON object schema (a record or a nested object)."""

    name: str
    fields: dict[str, Field]
    #: every key this object can have, all None: records start as a copy so that targets see a
    #: stable set of columns and a field that disappears upstream becomes null downstream.
    template: dict[str, Any]
    required: tuple[str, ...] = ()  # keys that must not be None in a finished record
    #: the plain scalar fields again as tag -> (key, caster): the walker's fast path
    scalars: dict[str, tuple[str, Caster]] = field(default_factory=dict)
    text_key: str | None = None  # TEXT_OBJECT only
    casts: dict[str, Caster] = field(default_factory=dict)  # TEXT_OBJECT: key -> caster
    #: TEXT_OBJECT: (XML attribute, key, caster) for every property but ``text_key``
    attributes: tuple[tuple[str, str, Caster], ...] = ()


def _types(schema: Mapping[str, Any]) -> set[str]:
    declared = schema.get("type", "string")
    types = {declared} if isinstance(declared, str) else set(declared)
    types.discard("null")
    return types


def _scalar_caster(schema: Mapping[str, Any], where: str) -> Caster:
    types = _types(schema) or {"string"}
    kind = types.pop() if len(types) == 1 else None
    fmt = schema.get("format") if kind == "string" else None
    caster = _CASTERS.get((kind, fmt)) or _CASTERS.get((kind, None)) if kind else None
    if caster is None:
        msg = f"{where}: no caster for type {schema.get('type')!r}"
        raise TypeError(msg)
    return caster


def _split(item: Caster) -> Caster:
    def cast(text: str) -> list[Any] | None:
        values = [item(part) for part in text.split(",") if part.strip()]
        return values or None

    return cast


def _raw_caster(schema: Mapping[str, Any], where: str) -> Caster:
    """For an object whose shape is not settled (``additionalProperties``): the declared scalar
    properties are cast from their text, anything else stays as the raw subtree."""
    casts = {
        name: _scalar_caster(prop, f"{where}.{name}")
        for name, prop in schema.get("properties", {}).items()
        if not _types(prop) & {"object", "array"}
    }

    def cast(raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        for name, caster in casts.items():
            value = raw.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                msg = f"{name}: expected text, found {type(value).__name__}"
                raise CastError(msg)
            raw[name] = caster(value)
        return raw

    return cast


def _field(tag: str, key: str, schema: Mapping[str, Any], where: str) -> Field:
    types = _types(schema)
    if "array" in types and tag in COMMA_SEPARATED:
        return Field(key, Kind.SCALAR, cast=_split(_scalar_caster(schema["items"], where)))
    if "array" in types:
        item_schema = schema.get("items", {})
        item = _field("", key, item_schema, f"{where}[]")
        if key in TEXT_KEYS and item.spec is not None:
            item.kind = Kind.TEXT_OBJECT
            item.spec.text_key = TEXT_KEYS[key]
            item.spec.casts = {
                name: _scalar_caster(prop, f"{where}[].{name}")
                for name, prop in item_schema["properties"].items()
            }
            # Qualys attribute names are the property names (name, id, qds_severity).
            item.spec.attributes = tuple(
                (name, name, caster)
                for name, caster in item.spec.casts.items()
                if name != TEXT_KEYS[key]
            )
        return Field(key, Kind.REPEATED if tag in REPEATED else Kind.LIST, item=item)
    if "object" in types:
        if "properties" not in schema or schema.get("additionalProperties") is True:
            return Field(key, Kind.RAW, cast=_raw_caster(schema, where))
        return Field(key, Kind.OBJECT, spec=compile_schema(schema, where))
    if tag in VERBATIM:
        return Field(key, Kind.VERBATIM)
    return Field(key, Kind.SCALAR, cast=_scalar_caster(schema, where))


def camel_case(key: str) -> str:
    """The QPS element of a property: ``parent_tag_id`` -> ``parentTagId``."""
    first, *rest = key.split("_")
    return first + "".join(word.capitalize() for word in rest)


def compile_schema(
    schema: Mapping[str, Any], name: str, element_name: Callable[[str], str] = str.upper
) -> ObjectSpec:
    """Compile a JSON object schema into the element table used by the XML walker.

    Property ``foo_bar`` reads element ``FOO_BAR`` (plus ``ALIASES``); properties that no element
    feeds (attribute siblings such as ``qds_severity``, injected parent keys) only appear in the
    template. The QPS APIs spell their elements in camelCase: they pass ``camel_case`` as
    ``element_name`` (top-level properties only; their records are flat).
    """
    properties: Mapping[str, Any] = schema.get("properties", {})
    fields: dict[str, Field] = {}
    for key, prop in properties.items():
        tag = element_name(key)
        fields[tag] = _field(tag, key, prop, f"{name}.{key}")
    for alias, key in ALIASES.items():
        if key in properties:
            fields[alias] = fields[key.upper()]
    for tag, (attribute, sibling) in ATTRIBUTE_SIBLINGS.items():
        if tag in fields and sibling in properties:
            fields[tag].attribute = (attribute, sibling)
    scalars = {
        tag: (entry.key, entry.cast)
        for tag, entry in fields.items()
        if entry.kind is Kind.SCALAR and entry.attribute is None
    }
    return ObjectSpec(
        name=name,
        fields=fields,
        template=dict.fromkeys(properties),
        required=tuple(schema.get("required", ())),
        scalars=scalars,
    )


def load_stream_spec(stream: str, element_name: Callable[[str], str] = str.upper) -> ObjectSpec:
    """Compile ``tap_qualys/schemas/<stream>.json``: the same file the stream declares."""
    text = resources.files("tap_qualys.schemas").joinpath(f"{stream}.json").read_text("utf-8")
    return compile_schema(json.loads(text), stream, element_name)
