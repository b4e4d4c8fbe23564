"""Streaming, safe parsing of Qualys VM XML into typed records.

Covers the KnowledgeBase, Host List and Host List Detection documents (docs/qualys-api.md §4-§7).

How it works: the body is fed chunk by chunk into an lxml pull parser that only reports the end
of the elements we act on (the record element, RESPONSE-level DATETIME/WARNING, the root).
Each record element is converted through the table compiled from the stream's JSON schema
(``casting``) and then removed from the tree, so memory stays flat however long the document is.

Safety: the prolog is checked before lxml sees a byte. An internal DTD subset (the only place
entities can be declared: XXE, billion laughs) is refused; an external ``<!DOCTYPE … SYSTEM
"https://…dtd">`` line is accepted and never fetched (``load_dtd=False``, ``no_network=True``,
``resolve_entities=False``). libxml2's default limits stay on (``huge_tree=False``): nesting over
256 deep is an error. Its 10 MB limit per text node is applied, before lxml sees the bytes, to
each element's text with its CDATA sections joined (``_TextLimit``): a detection's RESULTS is cut
there with a marker, any other element over it is an error, never unbounded memory.

NUL characters: Qualys sometimes puts NUL bytes into RESULTS. NUL can never appear in XML (and
most SQL targets reject it), so each NUL byte is replaced with U+FFFD before parsing: the value
keeps its length and shows where the NUL was. Any other invalid character or invalid UTF-8 is an
error: those mean the body is not what Qualys meant to send.
"""

from __future__ import annotations

import logging
import re
import typing as t
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from itertools import chain
from typing import Any, Final

from lxml import etree

from tap_qualys.casting import (
    DATETIME_CACHE,
    Field,
    Kind,
    ObjectSpec,
    camel_case,
    load_stream_spec,
    parse_utc,
    to_datetime,
    to_integer,
    to_string,
)
from tap_qualys.errors import (
    CastError,
    QPSResponseError,
    QualysResponseError,
    QualysTruncatedResponseError,
    QualysXMLError,
    SimpleReturnError,
)

__all__ = [
    "XMLPage",
    "parse_host_list",
    "parse_host_list_detection",
    "parse_knowledge_base",
    "parse_qps_error",
    "parse_simple_return",
    "parse_tags",
]

logger = logging.getLogger(__name__)

Record = dict[str, Any]

#: The prolog (XML declaration, DOCTYPE line, comments) must fit in this many bytes.
_MAX_PROLOG: Final = 64 * 1024
#: A SIMPLE_RETURN is a few hundred bytes; read at most this much of one.
_MAX_SIMPLE_RETURN: Final = 1024 * 1024
#: How far past a syntax error to look for an appended "incident signature" note.
_INCIDENT_LOOKAHEAD: Final = 64 * 1024
_INCIDENT_MARK: Final = b"incident signature"
_NUL_REPLACEMENT: Final = "\ufffd".encode()
_ROOT_NAME: Final = re.compile(rb"<([A-Za-z_][A-Za-z0-9_.:-]*)")
_CONTROL_CHARACTER: Final = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f]")
#: The most text one element may hold, in bytes, however many CDATA sections it is split into:
#: libxml2's own limit for one text node (XML_MAX_TEXT_LENGTH, with huge_tree off).
MAX_TEXT_BYTES: Final = 10_000_000
#: The one field cut at MAX_TEXT_BYTES instead of failing its page: a detection's RESULTS is
#: scanner output, and one huge RESULTS would otherwise fail its batch on every run.
_CUT_FIELD: Final = b"RESULTS"
_CUT_MARK: Final = "[... cut by tap-qualys: "
_CDATA_OPEN: Final = b"<![CDATA["
_CDATA_CLOSE: Final = b"]]>"
_CDATA_SPLIT: Final = b"]]><![CDATA["
_EMPTY_CDATA: Final = b"<![CDATA[]]>"
#: Text nodes and CDATA sections are split into pieces this big (see ``_TextLimit._count``).
_NODE_BYTES: Final = 1024 * 1024
_TAG_NAME: Final = re.compile(rb"/?([A-Za-z_][A-Za-z0-9_.:-]*)")
#: Bytes held back at the end of each chunk, so that a marker or tag name split across two
#: chunks is seen whole.
_HOLD_BACK: Final = 80


class _TextLimit:
    """Applies :data:`MAX_TEXT_BYTES` to each element's joined text, on the raw bytes.

    libxml2 limits each text node, but lxml joins an element's adjacent text and CDATA nodes,
    so twelve 9 MB CDATA sections would load as one 108 MB field. This scan runs before the
    parser: it follows CDATA sections and counts each element's text until the next tag, and
    the parser never receives more than the limit of one element's text. RESULTS (in
    detections) is cut there, its CDATA closed and a marker naming the bytes dropped appended;
    any other element over the limit fails the page. One loop turn per CDATA section; the text
    between them is searched with ``bytes.find``.
    """

    def __init__(self, *, cut_results: bool) -> None:
        self.cut_results = cut_results
        #: Bytes dropped from each RESULTS cut so far, in document order (read by XMLPage).
        self.cuts: list[int] = []
        self._held = b""
        self._in_cdata = False
        self._run = 0  # text bytes of the current element so far
        self._tag = b""  # the element whose text is being counted ("" after an end tag)
        self._skipping = False  # past the limit of a RESULTS: dropping until its end
        self._dropped_from = 0  # the value of _run where the cut was made
        self._node = 0  # bytes of the current text node or CDATA section

    def feed(self, chunk: bytes, *, final: bool = False) -> bytes:
        """The bytes to hand to the parser for ``chunk`` (some may be held until the next)."""
        if len(chunk) <= _NODE_BYTES:
            return self._feed(chunk, final=final)
        # Pieces no bigger than a node: a text wholly inside one needs no counting (_feed).
        pieces = range(0, len(chunk), _NODE_BYTES)
        return b"".join(
            self._feed(chunk[at : at + _NODE_BYTES], final=final and at == pieces[-1])
            for at in pieces
        )

    def _feed(self, chunk: bytes, *, final: bool) -> bytes:
        buf = self._held + chunk
        end = len(buf) if final else max(len(buf) - _HOLD_BACK, 0)
        out: list[bytes] = []
        emit = 0  # start of the bytes not yet copied to ``out`` (or dropped)
        pos = 0
        jumped = False
        while pos < end:
            if self._in_cdata:
                close = buf.find(_CDATA_CLOSE, pos, end + 2)
                stop = close if close >= 0 else end
                emit = self._count(buf, pos, stop, emit, out)
                if close < 0:
                    pos = end
                    break
                self._in_cdata = False
                self._node = 0
                pos = close + len(_CDATA_CLOSE)
                continue
            opening = buf.find(_CDATA_OPEN, pos, end + 8)
            stop = opening if opening >= 0 else end
            first = self._tag_at(buf, pos, stop, last=False)
            if first >= 0:
                # The current element's text ends at the first tag; the last tag in this
                # stretch starts the text counted next.
                emit = self._count(buf, pos, first, emit, out)
                if self._skipping:
                    out.append(self._marker())
                    emit = first
                if not jumped:
                    # Text that starts and ends within this buffer is under a node's size:
                    # go straight to the element whose text is still open at its end.
                    jumped = True
                    tail = self._open_at_end(buf, first, end)
                    if tail > first:
                        self._in_cdata = False
                        self._run = self._node = 0
                        pos = tail
                        continue
                last = self._tag_at(buf, first, stop, last=True)
                name = _TAG_NAME.match(buf, last + 1)
                closing = buf[last + 1 : last + 2] == b"/"
                self._tag = name.group(1) if name is not None and not closing else b""
                self._run = self._node = 0
                after = buf.find(b">", last, stop)
                pos = after + 1 if after >= 0 else stop
            emit = self._count(buf, pos, stop, emit, out)
            if opening < 0:
                pos = end
                break
            self._in_cdata = True
            self._node = 0
            pos = opening + len(_CDATA_OPEN)
        consumed = max(pos, end)
        if not self._skipping:
            out.append(buf[emit:consumed])
        self._held = buf[consumed:]
        return b"".join(out)

    def _count(self, buf: bytes, start: int, stop: int, emit: int, out: list[bytes]) -> int:
        """Count ``buf[start:stop]`` as text of the current element; cut when over the limit.

        Returns where the bytes not yet copied to ``out`` now start.
        """
        if self._skipping:
            self._run += stop - start
            return stop
        while start < stop:
            size = stop - start
            room = MAX_TEXT_BYTES - self._run
            node_room = _NODE_BYTES - self._node
            if size <= room and size <= node_room:
                self._run += size
                self._node += size
                return emit
            if room < node_room:
                return self._cut(buf, start, stop, emit, out)
            # libxml2 buffers a whole text node (or CDATA section) before it hands it over,
            # and refuses one of 10 MB: split long ones. lxml joins them again, unchanged.
            at = self._boundary(buf, start + node_room, emit)
            out.append(buf[emit:at] + (_CDATA_SPLIT if self._in_cdata else _EMPTY_CDATA))
            self._run += at - start
            self._node = 0
            start = emit = at
        return emit

    def _cut(self, buf: bytes, start: int, stop: int, emit: int, out: list[bytes]) -> int:
        if not (self.cut_results and self._tag == _CUT_FIELD):
            tag = self._tag.decode("ascii", "replace") or "an element's tail"
            msg = (
                f"Qualys XML rejected: the text of <{tag}> is over the "
                f"{MAX_TEXT_BYTES // 1_000_000} MB limit (libxml2's, applied to its CDATA "
                "sections joined)"
            )
            raise QualysXMLError(msg)
        cut = self._boundary(buf, start + (MAX_TEXT_BYTES - self._run), emit)
        out.append(buf[emit:cut] + (_CDATA_CLOSE if self._in_cdata else b""))
        self._run += cut - start
        self._skipping = True
        self._dropped_from = self._run
        self._run += stop - cut
        return stop

    def _boundary(self, buf: bytes, at: int, floor: int) -> int:
        """``at`` or a little before: never inside a UTF-8 character or an entity reference."""
        while at > floor and 0x80 <= buf[at] < 0xC0:
            at -= 1
        if not self._in_cdata:
            entity = buf.rfind(b"&", max(floor, at - 12), at)
            if entity >= 0 and buf.find(b";", entity, at) < 0:
                at = entity
        return at

    def _marker(self) -> bytes:
        dropped = self._run - self._dropped_from
        self.cuts.append(dropped)
        self._skipping = False
        limit = MAX_TEXT_BYTES // 1_000_000
        return f"{_CUT_MARK}{dropped:,} bytes over the {limit} MB limit]".encode()

    @classmethod
    def _open_at_end(cls, buf: bytes, floor: int, end: int) -> int:
        """The ``<`` of the last tag outside CDATA in ``buf[floor:end]``; ``floor`` if none."""
        limit = end + 2  # a "]]>" must start before ``end``
        while True:
            close = buf.rfind(_CDATA_CLOSE, floor, limit)
            opening = buf.rfind(_CDATA_OPEN, floor, limit + 6)
            if opening > close:  # inside the section opened there: look before it
                limit = opening
                continue
            tag = cls._tag_at(buf, close + 3 if close >= 0 else floor, min(limit, end), last=True)
            if tag >= 0:
                return tag
            if close < 0:
                return floor
            limit = buf.rfind(_CDATA_OPEN, floor, close)
            if limit < 0:
                return floor

    @staticmethod
    def _tag_at(buf: bytes, start: int, stop: int, *, last: bool) -> int:
        """The first (or last) tag's ``<`` in ``buf[start:stop]`` (no CDATA in it), or -1.

        Comments and processing instructions are not tags: the parser drops them and lxml
        joins the text on both sides.
        """
        at = buf.rfind(b"<", start, stop) if last else buf.find(b"<", start, stop)
        while at >= 0 and buf[at + 1 : at + 2] in (b"!", b"?"):
            at = buf.rfind(b"<", start, at) if last else buf.find(b"<", at + 1, stop)
        return at


def _preview(value: str | bytes, limit: int = 80) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return repr(text if len(text) <= limit else text[:limit] + "…")


# --- prolog --------------------------------------------------------------------------------------


def _doctype_end(head: bytes, pos: int) -> int | None:
    """Index just past the DOCTYPE's ``>``; None if more bytes are needed."""
    quote = 0
    for index in range(pos, len(head)):
        char = head[index]
        if quote:
            if char == quote:
                quote = 0
        elif char in b"\"'":
            quote = char
        elif char == ord("["):
            msg = (
                "refusing a DOCTYPE with an internal DTD subset: entity declarations are not "
                "accepted (XXE / entity expansion protection)"
            )
            raise QualysXMLError(msg)
        elif char == ord(">"):
            return index + 1
    return None


def _scan_prolog(head: bytes, *, final: bool) -> str | None:
    """Return the root element's name, or None when ``head`` is too short to tell.

    Raises QualysXMLError for HTML, non-XML bodies and internal DTD subsets.
    """
    pos = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    size = len(head)
    while True:
        while pos < size and head[pos] in b" \t\r\n":
            pos += 1
        if pos >= size or (size - pos < 10 and not final):
            return None
        if head[pos] != ord("<"):
            msg = f"response body is not XML: starts with {_preview(head[pos : pos + 60])}"
            raise QualysXMLError(msg)
        if head.startswith(b"<?", pos):
            end = head.find(b"?>", pos + 2)
            if end < 0:
                return None
            pos = end + 2
        elif head.startswith(b"<!--", pos):
            end = head.find(b"-->", pos + 4)
            if end < 0:
                return None
            pos = end + 3
        elif head[pos : pos + 9].upper() == b"<!DOCTYPE":
            name = head[pos + 9 : pos + 40].split(maxsplit=1)[:1]
            if name and name[0].rstrip(b">").lower() == b"html":
                raise _html_error()
            doctype_end = _doctype_end(head, pos + 9)
            if doctype_end is None:
                return None
            pos = doctype_end
        else:
            match = _ROOT_NAME.match(head, pos)
            if match is None:
                msg = f"response body is not XML: starts with {_preview(head[pos : pos + 60])}"
                raise QualysXMLError(msg)
            if match.end() == size and not final:
                return None  # the name may continue in the next chunk
            return match.group(1).decode("ascii")


def _html_error() -> QualysXMLError:
    return QualysXMLError("got an HTML page, not Qualys XML (a proxy, login or maintenance page?)")


# --- SIMPLE_RETURN -------------------------------------------------------------------------------


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_simple_return(body: bytes) -> SimpleReturnError | None:
    """The error a SIMPLE_RETURN body describes; None if ``body`` is not a SIMPLE_RETURN."""
    try:
        if _scan_prolog(body, final=True) != "SIMPLE_RETURN":
            return None
        root = etree.fromstring(body, _safe_parser())
    except (QualysXMLError, etree.XMLSyntaxError):
        return None
    response = root.find("RESPONSE")
    if response is None:
        return None
    code_text = (response.findtext("CODE") or "").strip()
    code = int(code_text) if code_text.isdigit() and code_text.isascii() else None
    items: dict[str, str] = {}
    for item in response.iterfind("ITEM_LIST/ITEM"):
        key = (item.findtext("KEY") or "").strip()
        if key:
            items[key] = ",".join((value.text or "").strip() for value in item.iterfind("VALUE"))
    return SimpleReturnError(code, (response.findtext("TEXT") or "").strip(), items)


# --- element -> record ---------------------------------------------------------------------------

_reported_unknown: set[tuple[str, str]] = set()


def _unknown(spec: ObjectSpec, tag: Any) -> None:
    # New Qualys elements appear without notice; they are skipped until the schema adds them.
    if isinstance(tag, str) and (spec.name, tag) not in _reported_unknown:
        _reported_unknown.add((spec.name, tag))
        logger.debug("Ignoring element <%s> not in the %s schema", tag, spec.name)


def _verbatim(element: etree._Element) -> str | None:
    """RESULTS text with only the whitespace outside its CDATA section removed."""
    text: str | None = element.text
    if not text:
        return None
    if not (text[0].isspace() or text[-1].isspace()):
        return text
    # lxml merges padding and CDATA into one string; the serialisation (parsed with
    # strip_cdata=False) still shows where the CDATA section starts and ends.
    serialized = etree.tostring(element, encoding="unicode", with_tail=False)
    first = serialized.find("<![CDATA[")
    if first < 0:
        return text.strip() or None  # plain text: padding like any other field
    last = serialized.rfind("]]>") + 3
    leading = serialized[serialized.index(">") + 1 : first].replace("&#13;", "\r")
    trailing = serialized[last : serialized.rindex("</")].replace("&#13;", "\r")
    start = len(leading) if leading.isspace() else 0
    stop = len(text) - len(trailing) if trailing.isspace() else len(text)
    return text[start:stop] or None


def _raw(element: etree._Element) -> Any:
    """Any subtree as nested dicts of strings, for elements whose shape is not settled."""
    if not len(element):
        return (element.text or "").strip() or None
    out: dict[str, Any] = {key.lower(): value for key, value in element.attrib.items()}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        key = child.tag.lower()
        value = _raw(child)
        if key in out:
            previous = out[key]
            if isinstance(previous, list):
                previous.append(value)
            else:
                out[key] = [previous, value]
        else:
            out[key] = value
    return out


def _text_objects(element: etree._Element, spec: ObjectSpec) -> list[Record] | None:
    """A list like QDS_FACTORS: one object per child from its attributes and text."""
    assert spec.text_key is not None
    text_key = spec.text_key
    text_cast = spec.casts[text_key]
    attributes = spec.attributes
    if len(attributes) == 1 and attributes[0][2] is to_string and text_cast is to_string:
        # QDS_FACTORS, THREAT_INTELLIGENCE: one string attribute and string text, four per
        # detection; a comprehension with a dict literal is twice as fast as the general loop.
        attribute, key, _ = attributes[0]
        items = [
            {
                key: ((value.strip() or None) if (value := child.get(attribute)) else None),
                text_key: ((text.strip() or None) if (text := child.text) else None),
            }
            for child in element
        ]
        return items or None
    template = spec.template
    items = []
    for child in element:
        out = template.copy()
        for attribute, key, cast in attributes:
            value = child.get(attribute)
            if value is not None:
                out[key] = (value.strip() or None) if cast is to_string else cast(value)
        text = child.text
        if text is not None:
            out[text_key] = (text.strip() or None) if text_cast is to_string else text_cast(text)
        items.append(out)
    return items or None


def _item(element: etree._Element, field: Field) -> Any:
    kind = field.kind
    if kind is Kind.OBJECT:
        assert field.spec is not None
        return _convert(element, field.spec)
    if kind is Kind.TEXT_OBJECT:
        spec = field.spec
        assert spec is not None
        assert spec.text_key is not None
        out = spec.template.copy()
        for attribute, key, cast in spec.attributes:
            value = element.get(attribute)
            if value is not None:
                out[key] = cast(value)
        out[spec.text_key] = spec.casts[spec.text_key](element.text or "")
        return out
    if kind is Kind.RAW:
        return field.cast(_raw(element))
    return field.cast(element.text or "")


def _convert(element: etree._Element, spec: ObjectSpec) -> Record:
    """One element's children, cast through ``spec``. This is the parser's hot loop.

    The common casts are inlined (identity checks on the caster) because a Python call per field
    costs more than the cast itself; the casters in ``casting`` remain the definition.
    """
    out = spec.template.copy()
    scalars = spec.scalars
    datetimes = DATETIME_CACHE
    for child in element:
        tag = child.tag
        entry = scalars.get(tag)
        if entry is None:
            field = spec.fields.get(tag)
            if field is None:
                _unknown(spec, tag)
                continue
            try:
                _convert_field(child, field, out)
            except CastError as exc:
                msg = f"<{tag}> ({spec.name}.{field.key}): {exc}"
                raise QualysXMLError(msg) from None
            continue
        key, cast = entry
        text = child.text
        if text is None:
            value = None
        elif cast is to_string:
            value = text.strip() or None
        elif cast is to_integer and text.isdigit() and text.isascii():
            value = int(text)
        elif cast is to_datetime and text in datetimes:
            value = datetimes[text]
        else:
            try:
                value = cast(text)
            except CastError as exc:
                msg = f"<{tag}> ({spec.name}.{key}): {exc}"
                raise QualysXMLError(msg) from None
        if value is None:
            if len(child):
                msg = f"<{tag}> ({spec.name}.{key}): expected text, found child elements"
                raise QualysXMLError(msg)
            continue  # the template already holds None
        out[key] = value
    return out


def _convert_field(child: etree._Element, field: Field, out: Record) -> None:
    """Everything but plain scalars: attributes, nested objects and lists."""
    kind = field.kind
    if kind is Kind.SCALAR:
        text = child.text
        out[field.key] = field.cast(text) if text is not None else None
        if field.attribute is not None:
            attribute = child.get(field.attribute[0])
            out[field.attribute[1]] = (attribute.strip() or None) if attribute else None
    elif kind is Kind.VERBATIM:
        out[field.key] = _verbatim(child)
    elif kind is Kind.OBJECT:
        assert field.spec is not None
        out[field.key] = _convert(child, field.spec) if len(child) else None
    elif kind is Kind.LIST:
        assert field.item is not None
        item = field.item
        if item.kind is Kind.TEXT_OBJECT:
            assert item.spec is not None
            out[field.key] = _text_objects(child, item.spec)
        else:
            out[field.key] = [_item(c, item) for c in child] or None
    elif kind is Kind.REPEATED:
        assert field.item is not None
        items = out[field.key]
        if items is None:
            out[field.key] = items = []
        items.append(_item(child, field.item))
    else:
        out[field.key] = field.cast(_raw(child))


def _discard(element: etree._Element) -> None:
    """Drop a finished element and its already-processed siblings: keeps memory flat."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


# --- the page ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    stream: str  # schema file name
    root: str
    record: str  # the element that becomes one record
    per_host: bool  # Host List Detection: records are DETECTIONs, keyed by their HOST's ID
    #: A QPS ServiceResponse (camelCase elements, responseCode, hasMoreRecords/lastId paging)
    #: instead of a VM API document with a RESPONSE element.
    qps: bool = False
    #: Host List ``details=None``: records are the ID_SET's ID / ID_RANGE elements.
    id_set: bool = False


class XMLPage(Iterator[Record]):
    """Records of one Qualys response, parsed while they are iterated.

    ``response_datetime`` is set as soon as RESPONSE/DATETIME has been read; ``next_url`` (the
    truncation WARNING's URL) is final once the iterator is exhausted.

    ``cpu_lock``, when given, is held while each chunk is parsed (not while it is read): pages
    parsed on several threads at once then take turns, instead of trading the GIL back and forth
    at every libxml2 call, which measured more than twice the CPU for the same records.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        layout: _Layout,
        cpu_lock: AbstractContextManager[t.Any] | None = None,
    ) -> None:
        self._cpu_lock = cpu_lock if cpu_lock is not None else nullcontext()
        self.next_url: str | None = None
        self.warning_code: int | None = None
        self.warning_text: str | None = None
        self.response_datetime: datetime | None = None
        #: QPS paging: ``hasMoreRecords`` and ``lastId`` (the next page is ``id GREATER`` it).
        self.has_more_records = False
        self.last_id: int | None = None
        self._qps: dict[str, str] = {}
        #: RESULTS fields cut at MAX_TEXT_BYTES in this page (each logged with its host and QID).
        self.cut_fields = 0
        self._layout = layout
        self._records = self._parse(iter(chunks))

    def __iter__(self) -> XMLPage:
        return self

    def __next__(self) -> Record:
        return next(self._records)

    # Reading the prolog --------------------------------------------------------------------------

    def _parse(self, chunks: Iterator[bytes]) -> Iterator[Record]:
        head = b""
        root: str | None = None
        for chunk in chunks:
            head += chunk
            root = _scan_prolog(head, final=False)
            if root is not None:
                break
            if len(head) > _MAX_PROLOG:
                msg = f"no root element in the first {_MAX_PROLOG} bytes: {_preview(head)}"
                raise QualysXMLError(msg)
        else:
            if not head.strip():
                # An empty 200 is what a dropped connection looks like: retry, never "no data".
                msg = "empty response body"
                raise QualysTruncatedResponseError(msg)
            root = _scan_prolog(head, final=True)
            if root is None:
                msg = f"response body ended before its root element: {_preview(head)}"
                raise QualysTruncatedResponseError(msg)
        if root == "SIMPLE_RETURN":
            raise self._simple_return(head, chunks)
        if root.lower() == "html":
            raise _html_error()
        if root != self._layout.root:
            msg = f"unexpected root element <{root}>, expected <{self._layout.root}>"
            raise QualysXMLError(msg)
        yield from self._stream(chain((head,), chunks))

    @staticmethod
    def _simple_return(head: bytes, chunks: Iterator[bytes]) -> QualysResponseError:
        body = bytearray(head)
        for chunk in chunks:
            body += chunk
            if len(body) > _MAX_SIMPLE_RETURN:
                return QualysXMLError("SIMPLE_RETURN document larger than 1 MiB")
        error = parse_simple_return(bytes(body))
        if error is not None:
            return error
        if b"</SIMPLE_RETURN>" not in body:
            return QualysTruncatedResponseError("SIMPLE_RETURN body ended early")
        return QualysXMLError(f"malformed SIMPLE_RETURN: {_preview(bytes(body))}")

    # Streaming the document ----------------------------------------------------------------------

    def _stream(self, chunks: Iterator[bytes]) -> Iterator[Record]:
        layout = self._layout
        spec = _qps_spec(layout.stream) if layout.qps else _spec(layout.stream)
        record_tag = layout.record
        tags = [record_tag, "DATETIME", "WARNING", "RESPONSE", layout.root]
        qps = layout.qps
        if qps:
            tags = [record_tag, *_QPS_ELEMENTS, layout.root]
        if layout.id_set:
            tags += ["ID", "ID_RANGE", "HOST"]
        # Host List Detection: the HOST block's fields that detections carry as host_<field>
        # (OS_CPE is in no other answer; TAGS only when show_tags=1 was sent).
        host_fields: dict[str, Field] = {}
        if layout.per_host:
            host_fields = {
                tag[len("HOST_") :]: entry
                for tag, entry in spec.fields.items()
                if tag.startswith("HOST_") and tag != "HOST_ID"
            }
            tags += ["HOST", "ID", *host_fields]
        parser = etree.XMLPullParser(
            events=("end",),
            tag=tags,
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            strip_cdata=False,  # lets _verbatim see where RESULTS' CDATA section is
            remove_comments=True,
            remove_pis=True,
        )
        per_host = layout.per_host
        required = spec.required
        host_id: int | None = None
        host_values: Record = {}
        seen_response = False
        complete = False
        previous = last = b""
        text_limit = _TextLimit(cut_results=per_host)
        for chunk in chain(chunks, (None,)):
            if chunk is not None and not chunk:
                continue
            with self._cpu_lock:
                if chunk is None:
                    data = text_limit.feed(b"", final=True)  # what it held back
                else:
                    if b"\x00" in chunk:
                        chunk = chunk.replace(b"\x00", _NUL_REPLACEMENT)  # noqa: PLW2901
                    previous, last = last, chunk
                    data = text_limit.feed(chunk)
                try:
                    parser.feed(data)
                except etree.XMLSyntaxError as exc:
                    raise self._syntax_error(exc, previous + last, chunks) from None
                # libxml2 recovers from some errors without raising: after a DOCTYPE line an
                # undefined entity is only a warning and becomes an empty reference node. Stop at
                # the first such entry, before the record holding it is emitted.
                if parser.feed_error_log:
                    errors = [e for e in parser.feed_error_log if _is_fatal(e)]
                    if errors:
                        raise self._malformed(errors[0].message, errors[0].line, previous + last)
                for _, element in parser.read_events():
                    tag = element.tag
                    if qps and tag in _QPS_ELEMENTS:
                        self._qps_element(element)
                        continue
                    if layout.id_set and tag in _ID_SET_TAGS:
                        if tag in ("ID", "ID_RANGE"):
                            parent = element.getparent()
                            if parent is not None and parent.tag in ("ID_SET", "HOST"):
                                yield _id_range(element)
                        else:
                            _discard(element)
                    elif tag == record_tag:
                        if qps:
                            parent = element.getparent()
                            if parent is None or parent.tag != "data":
                                continue
                            self._check_qps_success()
                        record = _convert(element, spec)
                        if per_host:
                            if host_id is None:
                                msg = "HOST without an <ID> element before its DETECTION_LIST"
                                raise QualysXMLError(msg)
                            record["host_id"] = host_id
                            if host_values:
                                record.update(host_values)
                            if text_limit.cuts:
                                self._note_cut(record, text_limit.cuts)
                            # Emptied now; the shell goes with its HOST (fewer tree operations).
                            element.clear(keep_tail=False)
                        else:
                            _discard(element)
                        for key in required:
                            if record[key] is None:
                                msg = f"{spec.name} record without required element <{key.upper()}>"
                                raise QualysXMLError(msg)
                        yield record
                    elif tag == "ID":
                        parent = element.getparent()
                        if parent is not None and parent.tag == "HOST":
                            host_id = self._host_id(element)
                    elif tag == "HOST":
                        if host_id is None:
                            raise QualysXMLError("HOST without an <ID> element")
                        host_id = None
                        host_values = {}
                        _discard(element)
                    elif tag in host_fields:
                        parent = element.getparent()
                        if parent is not None and parent.tag == "HOST":
                            try:
                                _convert_field(element, host_fields[tag], host_values)
                            except CastError as exc:
                                msg = f"<HOST>/<{tag}>: {exc}"
                                raise QualysXMLError(msg) from None
                    elif tag == "RESPONSE":
                        seen_response = True
                    elif tag == layout.root:
                        complete = True
                    else:
                        self._response_element(element)
        # Errors logged while feeding (e.g. an undefined entity) surface only at close(); those
        # are malformed XML, whereas a clean feed followed by a close() error is a cut-off body.
        feed_errors = [e for e in parser.feed_error_log if _is_fatal(e)]
        try:
            parser.close()
        except etree.XMLSyntaxError as exc:
            if feed_errors:
                first = feed_errors[0]
                raise self._malformed(first.message, first.line, previous + last) from None
            raise self._truncated(previous + last, str(exc)) from None
        if not complete:
            raise self._truncated(previous + last, "the body ended before the root element did")
        if layout.qps:
            self._check_qps_success()
            return
        if not seen_response:
            msg = f"<{layout.root}> without a <RESPONSE> element"
            raise QualysXMLError(msg)

    def _note_cut(self, record: Record, cuts: list[int]) -> None:
        results = record.get("results")
        if not (isinstance(results, str) and _CUT_MARK in results[-200:]):
            return
        self.cut_fields += 1
        logger.warning(
            "host_detections: the RESULTS of host %s, QID %s is over the %d MB limit: cut there, "
            "%s bytes dropped and a marker appended",
            record["host_id"],
            record.get("qid"),
            MAX_TEXT_BYTES // 1_000_000,
            f"{cuts.pop(0):,}",
        )

    @staticmethod
    def _host_id(element: etree._Element) -> int:
        text = element.text or ""
        value = text.strip()
        if not (value.isdigit() and value.isascii()):
            msg = f"<HOST>/<ID> is not an integer: {_preview(value)}"
            raise QualysXMLError(msg)
        return int(value)

    def _qps_element(self, element: etree._Element) -> None:
        """responseCode, count, hasMoreRecords, lastId, errorMessage of a ServiceResponse."""
        parent = element.getparent()
        expected = "responseErrorDetails" if element.tag == "errorMessage" else "ServiceResponse"
        if parent is None or parent.tag != expected:
            return
        text = (element.text or "").strip()
        self._qps[str(element.tag)] = text
        if element.tag == "hasMoreRecords":
            if text not in ("true", "false"):
                msg = f"<hasMoreRecords> is not true or false: {_preview(text)}"
                raise QualysXMLError(msg)
            self.has_more_records = text == "true"
        elif element.tag == "lastId":
            if not (text.isdigit() and text.isascii()):
                msg = f"<lastId> is not an integer: {_preview(text)}"
                raise QualysXMLError(msg)
            self.last_id = int(text)

    def _check_qps_success(self) -> None:
        code = self._qps.get("responseCode")
        if code is None:
            msg = "<ServiceResponse> without a <responseCode> before its data"
            raise QualysXMLError(msg)
        if code != "SUCCESS":
            raise QPSResponseError(code, self._qps.get("errorMessage") or "no errorMessage")

    def _response_element(self, element: etree._Element) -> None:
        parent = element.getparent()
        if parent is None or parent.tag != "RESPONSE":
            return  # e.g. LAST_CUSTOMIZATION/DATETIME in the KB
        if element.tag == "DATETIME":
            text = element.text or ""
            try:
                value = to_datetime(text)
            except CastError as exc:
                msg = f"<RESPONSE>/<DATETIME>: {exc}"
                raise QualysXMLError(msg) from None
            if value is not None:
                self.response_datetime = parse_utc(value)
        elif element.tag == "WARNING":
            code = (element.findtext("CODE") or "").strip()
            self.warning_code = int(code) if code.isdigit() and code.isascii() else None
            self.warning_text = (element.findtext("TEXT") or "").strip() or None
            url = (element.findtext("URL") or "").strip()
            # CODE 1980 is the truncation warning; any WARNING with a URL means "more at URL".
            self.next_url = url or None
            if url and self.warning_code != 1980:
                logger.info("Qualys WARNING %s with a URL: %s", code, self.warning_text)

    # Errors ------------------------------------------------------------------------------------

    @staticmethod
    def _truncated(tail: bytes, detail: str) -> QualysTruncatedResponseError:
        if _INCIDENT_MARK in tail.lower():
            at = tail.lower().rfind(_INCIDENT_MARK)
            note = tail[max(0, at - 120) : at + 80]
            msg = (
                "Qualys response ended with an incident signature note instead of "
                f"</RESPONSE>: {_preview(note, 200)}"
            )
            return QualysTruncatedResponseError(msg)
        return QualysTruncatedResponseError(f"Qualys response was cut off: {detail}")

    def _syntax_error(
        self, exc: etree.XMLSyntaxError, tail: bytes, chunks: Iterator[bytes]
    ) -> QualysResponseError:
        # An incident note is plain text appended to a half-written document; it usually breaks
        # the XML a little before it ends, so look a little further for it.
        lookahead = bytearray(tail)
        for chunk in chunks:
            lookahead += chunk
            if len(lookahead) > _INCIDENT_LOOKAHEAD + len(tail):
                break
        if _INCIDENT_MARK in lookahead.lower():
            return self._truncated(bytes(lookahead), str(exc))
        return self._malformed(exc.msg, exc.lineno, bytes(lookahead))

    @staticmethod
    def _malformed(message: str, line: int | None, near: bytes) -> QualysXMLError:
        message = message.strip()
        # libxml2 reports a control character inside CDATA as "CData section not finished".
        control = _CONTROL_CHARACTER.search(near)
        if "UTF-8" in message or "character encoding" in message:
            reason = "invalid UTF-8 bytes"
        elif "invalid Char" in message or control is not None:
            found = f" (0x{control.group()[0]:02X})" if control is not None else ""
            reason = f"an invalid XML character{found}"
        elif "depth" in message.lower():
            reason = "elements nested deeper than libxml2's limit (256 levels)"
        elif "huge" in message.lower() or "limit" in message.lower() or "too big" in message:
            reason = "a text node over libxml2's size limit (10 MB)"
        elif "Entity" in message:
            reason = "an entity reference (entities are not allowed)"
        else:
            reason = "malformed XML"
        return QualysXMLError(f"Qualys XML rejected, {reason} near line {line}: {message}")


_ID_SET_TAGS: Final = frozenset({"ID", "ID_RANGE", "ID_SET", "HOST"})
#: The widest ID_RANGE taken: no subscription has more hosts, and a damaged range such as
#: ``1-999999999`` must fail rather than expand into a billion ids.
MAX_ID_RANGE: Final = 10_000_000


def _id_range(element: etree._Element) -> Record:
    """``<ID>5</ID>`` -> ``{"first": 5, "id": 5}``; ``<ID_RANGE>5-9</ID_RANGE>`` -> 5 and 9.

    ``id`` is the range's last id: the paging key that tells a page brought new ids.
    """
    text = (element.text or "").strip()
    first, sep, last = text.partition("-") if element.tag == "ID_RANGE" else (text, "-", text)
    if not (sep and first.isdigit() and last.isdigit() and first.isascii() and last.isascii()):
        msg = f"<{element.tag}> is not a host id{' range' * (element.tag == 'ID_RANGE')}: "
        raise QualysXMLError(msg + _preview(text))
    low, high = int(first), int(last)
    if not low <= high < low + MAX_ID_RANGE:
        msg = f"<{element.tag}> {text} is not an ascending range of at most {MAX_ID_RANGE:,} ids"
        raise QualysXMLError(msg)
    _discard(element)
    return {"first": low, "id": high}


def _is_fatal(entry: etree._LogEntry) -> bool:
    return bool(
        entry.level >= etree.ErrorLevels.ERROR
        or entry.type == etree.ErrorTypes.WAR_UNDECLARED_ENTITY
    )


@cache
def _spec(stream: str) -> ObjectSpec:
    return load_stream_spec(stream)


@cache
def _qps_spec(stream: str) -> ObjectSpec:
    return load_stream_spec(stream, camel_case)


#: The ServiceResponse elements a QPS page reads besides its records.
_QPS_ELEMENTS: Final = ("responseCode", "count", "hasMoreRecords", "lastId", "errorMessage")


def parse_tags(chunks: Iterable[bytes]) -> XMLPage:
    """One record per ``data/Tag`` of a QPS tag search; ``has_more_records`` and ``last_id``
    say where the next page starts. A non-SUCCESS responseCode raises ``QPSResponseError``."""
    return XMLPage(chunks, _Layout("tags", "ServiceResponse", "Tag", False, qps=True))


def parse_qps_error(body: bytes) -> QPSResponseError | None:
    """The error a QPS ServiceResponse body describes; None if it is not one (or says SUCCESS)."""
    try:
        if _scan_prolog(body, final=True) != "ServiceResponse":
            return None
        root = etree.fromstring(body, _safe_parser())
    except (QualysXMLError, etree.XMLSyntaxError):
        return None
    code = (root.findtext("responseCode") or "").strip()
    if not code or code == "SUCCESS":
        return None
    message = (root.findtext("responseErrorDetails/errorMessage") or "").strip()
    return QPSResponseError(code, message or "no errorMessage")


def parse_knowledge_base(chunks: Iterable[bytes]) -> XMLPage:
    """One record per VULN of a KnowledgeBase ``action=list`` response."""
    return XMLPage(
        chunks, _Layout("knowledge_base", "KNOWLEDGE_BASE_VULN_LIST_OUTPUT", "VULN", False)
    )


def parse_host_list(chunks: Iterable[bytes]) -> XMLPage:
    """One record per HOST of a Host List ``action=list`` response."""
    return XMLPage(chunks, _Layout("hosts", "HOST_LIST_OUTPUT", "HOST", False))


def parse_host_id_set(chunks: Iterable[bytes]) -> XMLPage:
    """One record per ID / ID_RANGE of a Host List ``details=None`` answer (its ID_SET):
    ``{"first": <first id>, "id": <last id>}``. HOST elements with an ID are taken as well."""
    return XMLPage(chunks, _Layout("hosts", "HOST_LIST_OUTPUT", "ID_SET", False, id_set=True))


def parse_host_list_detection(
    chunks: Iterable[bytes], cpu_lock: AbstractContextManager[t.Any] | None = None
) -> XMLPage:
    """One record per DETECTION of a Host List Detection response, with its ``host_id``.

    ``cpu_lock``: see :class:`XMLPage` (detection batches are parsed on parallel threads).
    """
    return XMLPage(
        chunks,
        _Layout("host_detections", "HOST_LIST_VM_DETECTION_OUTPUT", "DETECTION", True),
        cpu_lock,
    )
