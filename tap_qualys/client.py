"""Base streams for the Qualys APIs."""

from __future__ import annotations

import abc
import contextlib
import gzip
import logging
import re
import sys
import tempfile
import threading
import time
import typing as t
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import msgspec
import requests
from singer_sdk import RESTStream
from singer_sdk.helpers._util import utc_now
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.pagination import BaseAPIPaginator
from singer_sdk.singerlib import RecordMessage
from singer_sdk.streams.rest import PageContext

from tap_qualys import __version__, qualys_xml
from tap_qualys.auth import (
    DEFAULT_TOKEN_REFRESH_MARGIN,
    GatewayAuthError,
    GatewayTokenAuthenticator,
    gateway_authenticator,
    vm_api_authenticator,
)
from tap_qualys.concurrency import PauseGate, shared_pause_gate
from tap_qualys.platforms import resolve_urls
from tap_qualys.retries import (
    DEFAULT_MAX_RATE_LIMIT_WAIT,
    CredentialSession,
    FailedAttempt,
    Kind,
    QualysAPIError,
    RequestStats,
    RetryPolicy,
    Verdict,
    classify_gateway_response,
    classify_response,
    pacing_delay,
)
from tap_qualys.summary import SDK_START, SyncClock, drop_sdk_unsorted_warning, summary_line

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Iterator, Mapping

    from singer_sdk.authenticators import BasicAuthenticator
    from singer_sdk.helpers.types import Context, Record

    from tap_qualys.concurrency import ConcurrencyLimit


#: Read the body in pieces this big; the XML parser is fed as they arrive.
CHUNK_SIZE = 1024 * 1024
#: A spooled page stays in memory up to this size, then moves to a temporary file.
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024
#: Records per frame in the spool.
SPOOL_FRAME_RECORDS = 256
#: Error bodies are small SIMPLE_RETURN documents; never read more than this of one.
MAX_ERROR_BODY = 1024 * 1024
#: Pages in a row that say "more records exist" yet bring no new record before a pager stops.
#: A real server may answer an empty page now and then (a filter that matches nothing in an id
#: range); ten in a row is a server paging in place, which would otherwise never end.
MAX_STALLED_PAGES = 10


class RecordSpool:
    """Records of one page, held until the whole document has parsed.

    Qualys can fail part-way through a 200 answer (dropped connection, a cut body, an incident
    note). Emitting records as they parse would then leave half a page downstream and emit it
    again on retry. So a page is parsed completely into this spool and only read back once it
    ended correctly. Each record is stored as its JSON (msgspec), which is what the tap writes
    in the end: the detection stream writes those bytes as they are (:class:`EncodedRecord`),
    the other streams decode them back into dicts. Frames of records stay in memory up to
    :data:`SPOOL_MEMORY_BYTES`, then move to a temporary file.
    """

    def __init__(self) -> None:
        """Open an empty spool."""
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        self._encode = msgspec.json.Encoder().encode
        self._frame: list[bytes] = []
        self.count = 0

    def append(self, record: dict[str, t.Any]) -> None:
        """Add one record."""
        self._frame.append(self._encode(record))
        self.count += 1
        if len(self._frame) >= SPOOL_FRAME_RECORDS:
            self._flush()

    def _flush(self) -> None:
        if self._frame:
            # JSON from msgspec never holds a raw newline (it escapes them in strings), so one
            # newline between records is an unambiguous separator.
            data = b"\n".join(self._frame)
            self._file.write(len(data).to_bytes(4, "big"))
            self._file.write(data)
            self._frame = []

    def encoded(self) -> Iterator[bytes]:
        """Each record's JSON, in order; the spool is released at the end."""
        self._flush()
        self._file.seek(0)
        try:
            while header := self._file.read(4):
                yield from self._file.read(int.from_bytes(header, "big")).split(b"\n")
        finally:
            self.close()

    def __iter__(self) -> Iterator[dict[str, t.Any]]:
        """Read the records back as dicts, in order, and release the spool."""
        decode = msgspec.json.Decoder(dict[str, t.Any]).decode
        for line in self.encoded():
            yield decode(line)

    def close(self) -> None:
        """Free the memory or the temporary file."""
        self._file.close()


class EncodedRecord:
    """A RECORD message already serialised, standing in for the record in the SDK's loop.

    On detections, decoding each spooled record back into a dict only to encode it again as a
    RECORD message was about a quarter of the tap's CPU. When nothing can change a record
    between the spool and stdout (every property selected, no stream map, no flattening: see
    ``HostDetectionsStream.emits_encoded``), the stream yields these instead; the SDK's loop
    still counts each one, and :meth:`QualysVMStream._generate_record_messages` hands it to the
    writer, which writes ``line`` as it is. Not a dict on purpose: code that reads a field from
    it fails loudly instead of seeing an empty record.
    """

    __slots__ = ("line",)

    def __init__(self, line: bytes) -> None:
        """Hold one complete RECORD message line, newline included."""
        self.line = line


def record_line_parts(stream: str, version: int | None, extracted: datetime) -> tuple[bytes, bytes]:
    """The bytes before and after a record's JSON in its RECORD message line.

    The same fields, order and formats as the SDK's ``RecordMessage`` written by its msgspec
    writer (tests/test_vm_streams.py compares the two).
    """
    encode = msgspec.json.encode
    prefix = b'{"type":"RECORD","stream":' + encode(stream) + b',"record":'
    suffix = b',"version":' + encode(version) if version is not None else b""
    suffix += b',"time_extracted":' + encode(extracted.astimezone(timezone.utc)) + b"}\n"
    return prefix, suffix


@dataclass
class FetchedPage:
    """One fully parsed answer: its records (spooled) and what the document said about paging."""

    records: RecordSpool
    next_url: str | None
    response_datetime: str | None
    elapsed: float
    #: When the answer arrived: the ``time_extracted`` of its records.
    extracted: datetime
    #: The highest paging key (see ``QualysVMStream.paging_key``) among the records; None if none.
    max_key: int | None = None
    #: Fields the parser cut at its size limit (``qualys_xml.MAX_TEXT_BYTES``).
    cut_fields: int = 0


class StalledPages:
    """Counts pages in a row that say "more" but bring nothing new; fails at the bound.

    Every pager checks this besides its own cursor check (a cursor that repeats or goes back is
    an immediate error): a cursor that creeps forward over empty pages would page forever.
    """

    def __init__(self, label: str, limit: int = MAX_STALLED_PAGES) -> None:
        """``label`` names the stream (and endpoint) in the error."""
        self.label = label
        self.limit = limit
        self.count = 0

    def page(self, *, brought_new: bool, cursor: object) -> None:
        """Note one page that says more records exist; raise after ``limit`` stalled ones."""
        if brought_new:
            self.count = 0
            return
        self.count += 1
        if self.count >= self.limit:
            msg = (
                f"{self.label} failed: {self.count} pages in a row said more records exist but "
                f"brought no new record (next cursor {cursor}); stopping rather than paging "
                "forever. Qualys is paging in place: retry later or contact Qualys support"
            )
            raise QualysAPIError(msg)


class TruncationPaginator(BaseAPIPaginator[int | None]):
    """Follow Qualys truncation: ``<WARNING><CODE>1980`` with a URL for the next batch.

    The token is the next ``id_min``. The WARNING URL may carry parameters we never sent (such
    as ``details=None``), so only its ``id_min`` is used and our own parameters are re-sent.
    """

    def __init__(self, logger: logging.Logger, label: str = "truncation") -> None:
        """Start on the first page (no id_min of our own); ``label`` names stream and path."""
        super().__init__(None)
        self._logger = logger
        self._label = label
        self._stalled = StalledPages(label)
        self._highest: int | None = None

    @override
    def advance(self, response: requests.Response | FetchedPage) -> None:
        """Advance on the parsed page: the WARNING URL was in the body the parser consumed."""
        super().advance(response)  # type: ignore[arg-type]

    @override
    def has_more(self, response: t.Any) -> bool:
        return bool(response.next_url)

    @override
    def get_next(self, response: t.Any) -> int | None:
        # Qualys says more records exist (WARNING 1980): a URL we cannot follow is a failure,
        # never the end of the data, or the sync would end "complete" and move its bookmark
        # past hosts it never read. The URL itself is not logged: it echoes every parameter.
        values = parse_qs(urlsplit(response.next_url).query).get("id_min", [])
        raw = values[-1].strip() if values else ""
        if not raw.isdigit():
            shown = f"id_min={raw[:40]!r}" if values else "no id_min"
            msg = (
                f"{self._label} failed: Qualys said more records exist (WARNING 1980), but its "
                f"next-page URL has {shown}; stopping without completing the sync"
            )
            raise QualysAPIError(msg)
        id_min = int(raw)
        if self.current_value is not None and id_min <= self.current_value:
            # A server that repeats an id_min would page forever.
            msg = (
                f"{self._label} failed: the next-page id_min {id_min} does not advance past "
                f"{self.current_value}; stopping without completing the sync"
            )
            raise QualysAPIError(msg)
        # Records come in ascending key order: a page is new only if it goes past the last one.
        key = response.max_key
        brought_new = key is not None and (self._highest is None or key > self._highest)
        if brought_new:
            self._highest = key
        self._stalled.page(brought_new=brought_new, cursor=f"id_min={id_min}")
        self._logger.debug("%s: next page from id_min=%d", self._label, id_min)
        return id_min


TToken = t.TypeVar("TToken")


class QualysStream(RESTStream[TToken]):
    """What both Qualys APIs share: TLS settings, user agent, timeout, the retry policy, counters
    for the summary line, and one HTTP session per worker thread."""

    #: How the stream syncs, for its start line: the mode (None: the SDK's replication method;
    #: "" for a child stream, which syncs what its parent hands it) and what moves its bookmark.
    sync_mode: str | None = None
    sync_note = ""
    #: The answer this API gives when a rate or concurrency limit is hit, for the summary line.
    limit_answer = "409s"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Set up counters and the per-thread HTTP sessions."""
        super().__init__(*args, **kwargs)
        self.stats = RequestStats()
        self.records_emitted = 0
        self.clock = SyncClock()
        drop_sdk_unsorted_warning()
        self._local = threading.local()
        # Every call carries Basic credentials or a token: no redirects to another server.
        self._requests_session = CredentialSession()
        self.requests_session.verify = self.verify

    @cached_property
    def verify(self) -> bool | str:
        """What requests' ``verify`` gets: the CA bundle path, or the verify_ssl flag."""
        return self.config.get("ca_bundle") or bool(self.config.get("verify_ssl", True))

    @override
    @cached_property
    def user_agent(self) -> str:
        return str(self.config.get("user_agent") or f"tap-qualys/{__version__}")

    @override
    @property
    def timeout(self) -> int:
        return int(self.config.get("request_timeout", 1800))

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy configured from the settings."""
        return RetryPolicy(
            max_retries=int(self.config.get("max_retries", 8)),
            backoff_base=float(self.config.get("retry_backoff_seconds", 2.0)),
            logger=self.logger,
            max_rate_limit_wait=float(
                self.config.get("max_rate_limit_wait", DEFAULT_MAX_RATE_LIMIT_WAIT)
            ),
        )

    @override
    def log(self, message: str, *args: t.Any, level: int = logging.INFO, **kwargs: t.Any) -> None:
        if message.startswith(SDK_START):
            # The SDK's start line names only the replication method: say what the sync does.
            # A child stream begins once per context (a batch of hosts, a policy): once is enough.
            first = self.clock.started is None
            self.clock.start()
            mode = self.replication_method.lower() if self.sync_mode is None else self.sync_mode
            message = f"Beginning {mode} sync of '%s'" if mode else "Beginning sync of '%s'"
            args = (self.name,)
            if self.sync_note:
                message += ": %s"
                args += (self.sync_note,)
            level = level if first else logging.DEBUG
        super().log(message, *args, level=level, **kwargs)

    def log_summary(self) -> None:
        """The end-of-sync line: what this stream emitted and what it cost."""
        message, args = summary_line(
            self.name, self.records_emitted, self.stats, self.clock.seconds(), self.limit_answer
        )
        self.logger.info(message, *args)

    def _session(self) -> requests.Session:
        """One session per thread: requests sessions are not safe to share across threads."""
        if threading.current_thread() is threading.main_thread():
            return self.requests_session
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = CredentialSession()
            session.verify = self.verify
            self._local.session = session
        return session


class QualysVMStream(QualysStream[int | None]):
    """A VM API stream (``/api/<ver>/fo/...``): form POSTs, Basic auth, streamed XML.

    Subclasses set ``path`` and implement :meth:`qualys_params` and :meth:`parse_response`.
    Every request goes through the one retry policy; every page is parsed completely before any
    of its records are emitted.
    """

    http_method = "POST"
    payload_as_json = False
    #: The record field that ``id_min`` pages over; tells a page that brings new records.
    paging_key = "id"
    #: ``casting`` has already typed every value against this stream's schema: a record starts
    #: as a copy of the schema's keys and holds only str, int, finite float, bool, None and
    #: lists/dicts of those (tests/test_qualys_xml.py checks the SDK's conformance leaves
    #: parsed records unchanged), so the SDK's per-record conformance pass is skipped.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Set up what the progress and summary lines report."""
        super().__init__(*args, **kwargs)
        #: The server's RESPONSE DATETIME of the first page of this sync.
        self.first_response_datetime: str | None = None

    @override
    @property
    def url_base(self) -> str:
        return resolve_urls(self.config)[0]

    @override
    @cached_property
    def authenticator(self) -> BasicAuthenticator:
        return vm_api_authenticator(self.config)

    @override
    @property
    def http_headers(self) -> dict[str, str]:
        # Qualys rejects VM API calls without X-Requested-With; any value will do.
        return {"X-Requested-With": self.user_agent}

    @cached_property
    def _selects_every_property(self) -> bool:
        return all(self.mask.values())

    @override
    def _generate_record_messages(self, record: Record) -> Generator[RecordMessage, None, None]:
        if type(record) is EncodedRecord:
            yield record  # written as it is by tap.SingerWriter
            return
        # The SDK walks each record against the catalog's selection mask to drop deselected
        # properties, a tenth of the tap's CPU on detections. A record here holds only schema
        # keys, so when the catalog selects them all the walk never drops anything; with a
        # deselected property the SDK's own path runs. Conformance is NONE (see above).
        if not self._selects_every_property:
            yield from super()._generate_record_messages(record)
            return
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=utc_now(),
                )

    @property
    def label(self) -> str:
        """How errors and progress lines name this stream and endpoint."""
        return f"{self.name}: {self.path}"

    def qualys_params(self, context: Context | None) -> dict[str, t.Any]:
        """The endpoint's parameters (besides ``action`` and paging); override per stream."""
        return {}

    @override
    def prepare_request_payload(
        self,
        context: Context | None,
        next_page_token: int | None,
    ) -> dict[str, t.Any]:
        # Everything goes in the form body: ids lists are too long for a URL.
        params: dict[str, t.Any] = {"action": "list", **self.qualys_params(context)}
        if next_page_token is not None:
            params["id_min"] = next_page_token
        return {key: value for key, value in params.items() if value is not None}

    @override
    def get_new_paginator(self) -> TruncationPaginator:
        return TruncationPaginator(self.logger, self.label)

    @override
    @abc.abstractmethod
    def parse_response(self, response: requests.Response) -> qualys_xml.XMLPage:
        """Parse the streamed body with this endpoint's ``qualys_xml`` parser."""

    def prepare(self, context: Context | None, token: int | None) -> requests.PreparedRequest:
        """Build one authenticated request from :meth:`get_http_request`."""
        http_request = self.get_http_request(
            page=PageContext(stream_context=context, next_page_token=token)
        )
        return self.build_prepared_request(
            method=http_request.method,
            url=http_request.url,
            params=http_request.encode_params(),
            headers=http_request.headers,
            data=http_request.data,
        )

    def fetch(
        self,
        prepared: requests.PreparedRequest,
        *,
        limit: ConcurrencyLimit | None = None,
    ) -> FetchedPage:
        """Send and fully parse one request under the retry policy (thread-safe)."""
        return self.retry_policy.run(
            lambda: self._attempt(prepared, limit),
            label=self.label,
            stats=self.stats,
            on_concurrency_limit=limit.reduce if limit is not None else None,
            on_rate_limit=limit.pause if limit is not None else None,
        )

    def _attempt(
        self,
        prepared: requests.PreparedRequest,
        limit: ConcurrencyLimit | None,
    ) -> FetchedPage:
        started = time.monotonic()
        with limit.slot() if limit is not None else contextlib.nullcontext():
            response = self._session().send(prepared, stream=True, timeout=self.timeout)
            extracted = utc_now()
            with response:
                if limit is not None:
                    limit.observe(response.headers)
                self._check_status(response)
                spool = RecordSpool()
                record: dict[str, t.Any] | None = None
                try:
                    page = self.parse_response(response)
                    for record in page:
                        spool.append(record)
                except qualys_xml.SimpleReturnError as exc:
                    spool.close()
                    raise self._failed(response, exc) from None
                except BaseException:
                    spool.close()
                    raise
        fetched = FetchedPage(
            records=spool,
            next_url=page.next_url,
            response_datetime=_as_text(page.response_datetime),
            elapsed=time.monotonic() - started,
            extracted=extracted,
            # Records come in ascending key order: the last one holds the highest key.
            max_key=record.get(self.paging_key) if record is not None else None,
            cut_fields=page.cut_fields,
        )
        # Pause outside the slot, so a parallel call is not held up by our pacing.
        if pause := pacing_delay(response.headers):
            max_wait = self.retry_policy.max_rate_limit_wait
            if max_wait is not None and pause > max_wait:
                # Not hours of silent sleep: this page is good; a next call, if any, is refused
                # with 1965 and fails in one line naming max_rate_limit_wait (retries.py).
                self.logger.warning(
                    "%s: Qualys asks for %.0f s before the next call, above "
                    "max_rate_limit_wait (%.0f s); not waiting",
                    self.name,
                    pause,
                    max_wait,
                )
                return fetched
            self.logger.info(
                "%s: pacing %.1f s, few API calls left in the window", self.name, pause
            )
            self.retry_policy.sleep(pause)
        return fetched

    def _check_status(self, response: requests.Response) -> None:
        if response.status_code == 200:
            return
        body = response.raw.read(MAX_ERROR_BODY, decode_content=True) or b""
        error = qualys_xml.parse_simple_return(body)
        if error is None:
            raise FailedAttempt(
                classify_response(
                    response.status_code, None, _reason(response, body), response.headers
                )
            )
        raise self._failed(response, error)

    @staticmethod
    def _failed(response: requests.Response, error: qualys_xml.SimpleReturnError) -> FailedAttempt:
        return FailedAttempt(
            classify_response(
                response.status_code,
                error.code,
                error.text,
                response.headers,
                error.items,
            )
        )

    @override
    def request_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        paginator = self.get_new_paginator()
        while not paginator.finished:
            page = self.fetch(self.prepare(context, paginator.current_value))
            if self.first_response_datetime is None:
                self.first_response_datetime = page.response_datetime
            self.logger.info(
                "%s: page %d: %s records, %.1f s",
                self.name,
                paginator.count + 1,
                f"{page.records.count:,}",
                page.elapsed,
            )
            for record in page.records:
                self.records_emitted += 1
                yield record
            paginator.advance(page)

    def log_filters(self, params: Mapping[str, t.Any]) -> None:
        """Log the effective request parameters once, so "no data" can be explained."""
        filters = ", ".join(
            f"{key}={value}" for key, value in params.items() if value is not None and key != "ids"
        )
        self.logger.info("%s: POST %s%s with %s", self.name, self.url_base, self.path, filters)


def _as_text(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


_TAGS = re.compile(rb"<[^>]+>")


def _reason(response: requests.Response, body: bytes) -> str:
    """A short reason for a non-XML error answer (a proxy's HTML page, a gateway timeout)."""
    text = _TAGS.sub(b" ", body[:2000]).decode("utf-8", "replace")
    text = " ".join(text.split())[:200]
    return text or response.reason or "no body"


# --- Gateway streams (JSON, JWT): CSAM and PCRS -------------------------------------------------

#: gzip's magic number: postureInfo with compressionRequired=1 sends gzip, with or without
#: ``Content-Encoding: gzip`` (§11); with the header, requests has already decoded it.
_GZIP_MAGIC = b"\x1f\x8b"
#: msgspec keeps integers exact at any size (CSAM software ids exceed 2**53) and is fast on the
#: multi-megabyte posture bodies.
_JSON = msgspec.json.Decoder()

T = t.TypeVar("T")


def decode_gateway_body(content: bytes) -> t.Any:
    """JSON from a gateway body, gunzipped first when it is gzip data (§11).

    Raises ``ValueError`` (``msgspec.DecodeError`` is one) for anything that is not JSON.
    """
    if content.startswith(_GZIP_MAGIC):
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as exc:
            msg = f"gzip body does not decompress: {exc}"
            raise ValueError(msg) from None
    try:
        return _JSON.decode(content)
    except RecursionError:
        # msgspec's depth limit; not a ValueError, so it escaped every handler as a traceback.
        msg = "JSON nested too deep to decode"
        raise ValueError(msg) from None


class DateNormalizer:
    """Rewrites the ``date-time`` fields of gateway records to ISO-8601 UTC strings.

    CSAM mixes ISO strings with milliseconds (``2025-07-11T14:21:10.000Z``) and integer epoch
    milliseconds (agent, sensor, inventory, activity); PCRS writes ``""`` for dates that never
    happened. Every ``format: date-time`` field of the stream's schema, at any depth, comes out
    as an ISO-8601 UTC string or null: epoch milliseconds become ``YYYY-MM-DDTHH:MM:SS.mmmZ``,
    ISO strings already in UTC (``Z``) are kept as sent, other offsets are converted, ``""``
    becomes null. The walk visits only the schema paths that lead to such fields.
    """

    _LEAF: t.ClassVar[dict[str, t.Any]] = {}

    def __init__(self, schema: Mapping[str, t.Any]) -> None:
        """Compile the paths to the date-time fields of ``schema``."""
        self._paths = self._compile(schema) or {}

    @classmethod
    def _compile(cls, schema: Mapping[str, t.Any]) -> dict[str, t.Any] | None:
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

    def __call__(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        """Normalise ``record`` in place and return it."""
        self._walk(record, self._paths)
        return record

    def _walk(self, node: t.Any, paths: dict[str, t.Any]) -> None:
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


def iso_utc(value: t.Any) -> t.Any:
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
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class QualysGatewayStream(QualysStream[t.Any]):
    """A gateway stream (CSAM ``/rest/2.0/...``, PCRS ``/pcrs/...``): JSON, Bearer JWT.

    Every call goes through :meth:`gateway_call`: the shared JWT (see ``auth``), one refresh and
    one immediate re-send on a 401, the one retry policy for 429/5xx/dropped bodies/invalid JSON,
    and the decoded body handed back only once it is complete and valid.
    """

    http_method = "POST"
    #: What the records are, for progress lines.
    record_unit = "records"
    limit_answer = "429s"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Set up the date normaliser."""
        super().__init__(*args, **kwargs)
        self.normalize_dates = DateNormalizer(self.schema)
        #: The ``Date`` header of the latest answer: the gateway's clock, for bookmarks.
        self.server_date: str | None = None

    @override
    @property
    def url_base(self) -> str:
        return resolve_urls(self.config)[1]

    @override
    @property
    def authenticator(self) -> GatewayTokenAuthenticator:
        config = self.config
        return gateway_authenticator(
            self._tap,
            lambda: GatewayTokenAuthenticator(
                gateway_url=self.url_base,
                username=config["username"],
                password=config["password"],
                refresh_margin=float(
                    config.get("token_refresh_margin", DEFAULT_TOKEN_REFRESH_MARGIN)
                ),
                user_agent=self.user_agent,
                verify=self.verify,
                logger=self._tap.logger,
            ),
        )

    @override
    @property
    def http_headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "User-Agent": self.user_agent}

    @override
    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        return self.normalize_dates(row)

    def gateway_call(
        self,
        path: str,
        parse: Callable[[t.Any], T],
        *,
        method: str = "POST",
        params: Mapping[str, t.Any] | None = None,
        body: t.Any = None,
        timeout: float | None = None,
    ) -> T:
        """Send one gateway call under the retry policy; return ``parse`` of its JSON body.

        ``parse`` turns the decoded body into what the stream needs, and raises
        ``FailedAttempt`` for answers that are HTTP 200 yet unusable (CSAM's responseCode /
        hasMore envelope), so they are retried like any other transient failure. The body is
        read completely before ``parse`` sees it: a dropped stream never yields part of a page.
        Safe to call from worker threads.
        """
        label = f"{self.name}: {method} {path}"
        request = requests.Request(
            method,
            self.url_base + path,
            params={k: v for k, v in (params or {}).items() if v is not None},
            json=body,
            headers=self.http_headers,
        ).prepare()

        gate = shared_pause_gate(self._tap)

        def attempt() -> T:
            gate.wait()
            response = self._send_authenticated(request, label, timeout or self.timeout)
            if not 200 <= response.status_code < 300:
                raise FailedAttempt(
                    classify_gateway_response(
                        response.status_code, response.content, response.headers
                    )
                )
            self.server_date = response.headers.get("Date")
            try:
                decoded = decode_gateway_body(response.content)
            except ValueError as exc:
                reason = f"invalid JSON from the gateway ({len(response.content):,} bytes): {exc}"
                raise FailedAttempt(Verdict(Kind.BACKOFF, reason)) from None
            result = parse(decoded)
            self._pace(gate, response.headers)
            return result

        return self.retry_policy.run(
            attempt, label=label, stats=self.stats, on_rate_limit=gate.pause
        )

    def _pace(self, gate: PauseGate, headers: Mapping[str, str]) -> None:
        """Hold every caller of the gateway by its X-RateLimit headers, as the VM API is paced.

        Through the shared gate rather than a sleep here: parallel postureInfo workers would
        otherwise spend the few calls left in the window meanwhile.
        """
        pause = pacing_delay(headers)
        if not pause:
            return
        max_wait = self.retry_policy.max_rate_limit_wait
        if max_wait is not None and pause > max_wait:
            # As for the VM API: the next call gets a 429 and fails naming max_rate_limit_wait.
            self.logger.warning(
                "%s: the gateway asks for %.0f s before the next call, above "
                "max_rate_limit_wait (%.0f s); not waiting",
                self.name,
                pause,
                max_wait,
            )
            return
        self.logger.info(
            "%s: pacing %.1f s, few gateway calls left in the window", self.name, pause
        )
        gate.pause(pause)

    def _send_authenticated(
        self,
        request: requests.PreparedRequest,
        label: str,
        timeout: float,
    ) -> requests.Response:
        """Send with the shared token; on a 401 refresh it and re-send once, at once.

        A 401 normally means the token expired early (clock skew, revoked session); a second
        401 with a token issued a moment ago cannot be fixed by retrying.
        """
        authenticator = self.authenticator
        for attempt in (1, 2):
            authenticator(request)
            response = self._session().send(request, timeout=timeout)
            if response.status_code != HTTPStatus.UNAUTHORIZED:
                return response
            authenticator.invalidate(request)
            if attempt == 1:
                self.logger.info("%s: gateway answered 401; refreshing the token", label)
        msg = (
            f"{label} failed: the gateway answered HTTP 401 also with a newly issued token. "
            "Check that the Qualys user may use this module's API (CSAM / Policy Compliance)."
        )
        raise GatewayAuthError(msg)
