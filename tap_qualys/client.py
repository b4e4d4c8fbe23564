"""Base streams for the Qualys APIs: the VM API (form POSTs, streamed XML, truncation paging)
and the gateway (JSON, JWT), every call under the one retry policy.

Only what the streams share about talking to the APIs lives here. Record emission and the SDK
privates are in ``emit``, value and date casting in ``casting``, the exception types in
``errors``.
"""

from __future__ import annotations

import abc
import contextlib
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
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.pagination import BaseAPIPaginator
from singer_sdk.streams.rest import PageContext

from tap_qualys import __version__, qualys_xml
from tap_qualys.auth import (
    DEFAULT_TOKEN_REFRESH_MARGIN,
    GatewayTokenAuthenticator,
    gateway_authenticator,
    vm_api_authenticator,
)
from tap_qualys.casting import DateNormalizer, format_utc
from tap_qualys.concurrency import PauseGate, shared_pause_gate
from tap_qualys.emit import EncodedRecordStream, RecordSpool, SDKStream
from tap_qualys.errors import GatewayAuthError, QualysAPIError, SimpleReturnError
from tap_qualys.naming import GATEWAY_SCHEMAS, Columns
from tap_qualys.platforms import resolve_urls
from tap_qualys.retries import (
    DEFAULT_MAX_RATE_LIMIT_WAIT,
    CredentialSession,
    FailedAttempt,
    Kind,
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
    from collections.abc import Callable, Iterable, Mapping

    from singer_sdk.authenticators import BasicAuthenticator
    from singer_sdk.helpers.types import Context, Record

    from tap_qualys.concurrency import ConcurrencyLimit


#: Read the body in pieces this big; the XML parser is fed as they arrive.
CHUNK_SIZE = 1024 * 1024
#: Error bodies are small SIMPLE_RETURN documents; never read more than this of one.
MAX_ERROR_BODY = 1024 * 1024
#: Pages in a row that say "more records exist" yet bring no new record before a pager stops.
#: A real server may answer an empty page now and then (a filter that matches nothing in an id
#: range); ten in a row is a server paging in place, which would otherwise never end.
MAX_STALLED_PAGES = 10


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
    #: QPS paging (the tag API): more records after ``last_id``.
    has_more_records: bool = False
    last_id: int | None = None


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


class QualysStream(SDKStream, RESTStream[TToken]):
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
        self._credential_session = CredentialSession()
        self._credential_session.verify = self.verify

    @override
    @property
    def requests_session(self) -> requests.Session:
        return self._credential_session

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


class QualysVMStream(EncodedRecordStream, QualysStream[int | None]):
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
            extracted = datetime.now(timezone.utc)
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
                except SimpleReturnError as exc:
                    spool.close()
                    raise self._failed(response, exc) from None
                except BaseException:
                    spool.close()
                    raise
        server_time = page.response_datetime
        fetched = FetchedPage(
            records=spool,
            next_url=page.next_url,
            response_datetime=format_utc(server_time) if server_time else None,
            elapsed=time.monotonic() - started,
            extracted=extracted,
            # Records come in ascending key order: the last one holds the highest key.
            max_key=record.get(self.paging_key) if record is not None else None,
            cut_fields=page.cut_fields,
            has_more_records=page.has_more_records,
            last_id=page.last_id,
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
    def _failed(response: requests.Response, error: SimpleReturnError) -> FailedAttempt:
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


_TAGS = re.compile(rb"<[^>]+>")


def _reason(response: requests.Response, body: bytes) -> str:
    """A short reason for a non-XML error answer (a proxy's HTML page, a gateway timeout)."""
    text = _TAGS.sub(b" ", body[:2000]).decode("utf-8", "replace")
    text = " ".join(text.split())[:200]
    return text or response.reason or "no body"


# --- Gateway streams (JSON, JWT): CSAM and PCRS -------------------------------------------------

#: gzip's magic number: postureInfo with compressionRequired=1 sends gzip, with or without
#: ``Content-Encoding: gzip`` (§11). The tap reads gateway bodies undecoded and gunzips them
#: itself (``gunzip_bounded``), so a header does not hand decoding to requests, which has no cap.
_GZIP_MAGIC = b"\x1f\x8b"
#: A gzip body may expand to this many times its size, and always to GUNZIP_MIN_LIMIT. JSON,
#: evidence included, compresses 5 to 50 times; zlib's own maximum is about 1,000: a body
#: beyond 100 is a decompression bomb, refused before it is held in memory (and postureInfo
#: calls run in parallel, so each one's share must stay small).
GUNZIP_MAX_RATIO = 100
GUNZIP_MIN_LIMIT = 8 * 2**20
_GUNZIP_CHUNK = 2**20
#: msgspec keeps integers exact at any size (CSAM software ids exceed 2**53) and is fast on the
#: multi-megabyte posture bodies.
_JSON = msgspec.json.Decoder()
#: A gateway answer arriving stays in memory up to this size, then moves to a temporary file.
BODY_MEMORY_BYTES = 2**20
#: Held while a gateway body is gunzipped, decoded and parsed: the one moment its whole text is
#: in memory. Parallel postureInfo workers would otherwise each hold a batch's text (tens of MB)
#: at once; the work is CPU under the GIL, so taking turns costs no time.
_DECODE_LOCK = threading.Lock()

T = t.TypeVar("T")


def gunzip_bounded(data: bytes | bytearray) -> bytearray:
    """gzip data decompressed, every member, refused once it expands past its limit.

    Raises ``ValueError`` for data that does not decompress or expands too far. A bytearray
    grown in place: joining a list of pieces would hold the body twice at the end.
    """
    limit = max(GUNZIP_MIN_LIMIT, GUNZIP_MAX_RATIO * len(data))
    out = bytearray()
    pending = data
    while pending:
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            while pending and not member.eof:
                out += member.decompress(pending, _GUNZIP_CHUNK)
                if len(out) > limit:
                    msg = (
                        f"gzip body of {len(data):,} bytes would expand past {limit:,} bytes "
                        f"({GUNZIP_MAX_RATIO} times its size): refused as a decompression bomb"
                    )
                    raise ValueError(msg)
                pending = member.unconsumed_tail
        except zlib.error as exc:
            msg = f"gzip body does not decompress: {exc}"
            raise ValueError(msg) from None
        if not member.eof:
            msg = "gzip body does not decompress: it ends before its last block"
            raise ValueError(msg)
        pending = member.unused_data
    return out


def read_gateway_body(response: requests.Response) -> t.IO[bytes]:
    """A streamed gateway answer's bytes, gzip left as it came (``Content-Encoding`` or not).

    Spooled: in memory up to :data:`BODY_MEMORY_BYTES`, then in a temporary file, so that
    postureInfo calls in flight (up to 15, each answer tens of MB without compression) hold
    little memory while they arrive. Read back from the start; the caller closes it. Other
    encodings, which the gateway is not known to use, are decoded by requests.
    """
    body = tempfile.SpooledTemporaryFile(max_size=BODY_MEMORY_BYTES)  # noqa: SIM115
    try:
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in {"", "identity", "gzip", "x-gzip"}:
            for chunk in response.iter_content(CHUNK_SIZE):
                body.write(chunk)
        else:
            while chunk := response.raw.read(CHUNK_SIZE, decode_content=False):
                body.write(chunk)
        body.seek(0)
    except BaseException:
        body.close()
        raise
    return body


def decode_gateway_body(
    content: bytes | bytearray, decoder: msgspec.json.Decoder[t.Any] = _JSON
) -> t.Any:
    """JSON from a gateway body, gunzipped first when it is gzip data (§11).

    ``decoder`` may leave parts undecoded (``msgspec.Raw``), for a caller that decodes them one
    at a time. Raises ``ValueError`` (``msgspec.DecodeError`` is one) for anything that is not
    JSON.
    """
    if content.startswith(_GZIP_MAGIC):
        content = gunzip_bounded(content)
    try:
        return decoder.decode(content)
    except RecursionError:
        # msgspec's depth limit; not a ValueError, so it escaped every handler as a traceback.
        msg = "JSON nested too deep to decode"
        raise ValueError(msg) from None


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
        """Set up the column names and the date normaliser."""
        super().__init__(*args, **kwargs)
        self.columns = Columns(GATEWAY_SCHEMAS.api_schema(self.name))
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
            self.tap,
            lambda: GatewayTokenAuthenticator(
                gateway_url=self.url_base,
                username=config["username"],
                password=config["password"],
                refresh_margin=float(
                    config.get("token_refresh_margin", DEFAULT_TOKEN_REFRESH_MARGIN)
                ),
                user_agent=self.user_agent,
                verify=self.verify,
                logger=self.tap.logger,
            ),
        )

    @override
    @property
    def http_headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "User-Agent": self.user_agent}

    @override
    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        # The one place records get their column names: child contexts, bookmarks, stream
        # maps and the targets all see snake_case (see ``naming``).
        return self.normalize_dates(self.columns(row))

    def gateway_call(
        self,
        path: str,
        parse: Callable[[t.Any], T],
        *,
        method: str = "POST",
        params: Mapping[str, t.Any] | None = None,
        body: t.Any = None,
        timeout: float | None = None,
        decoder: msgspec.json.Decoder[t.Any] = _JSON,
    ) -> T:
        """Send one gateway call under the retry policy; return ``parse`` of its JSON body.

        ``parse`` turns the decoded body into what the stream needs, and raises
        ``FailedAttempt`` for answers that are HTTP 200 yet unusable (CSAM's responseCode /
        hasMore envelope), so they are retried like any other transient failure. The body is
        read completely before ``parse`` sees it: a dropped stream never yields part of a page.
        ``decoder`` decodes the body (all of it by default). Safe to call from worker threads;
        one thread at a time decodes and parses (``_DECODE_LOCK``).
        """
        label = f"{self.name}: {method} {path}"
        request = requests.Request(
            method,
            self.url_base + path,
            params={k: v for k, v in (params or {}).items() if v is not None},
            json=body,
            headers=self.http_headers,
        ).prepare()

        gate = shared_pause_gate(self.tap)

        def attempt() -> T:
            gate.wait()
            response = self._send_authenticated(request, label, timeout or self.timeout)
            if not 200 <= response.status_code < 300:
                # As the VM API's error bodies (_check_status): at most MAX_ERROR_BODY decoded
                # bytes, so an error answer cannot be a decompression bomb either.
                body = response.raw.read(MAX_ERROR_BODY, decode_content=True) or b""
                raise FailedAttempt(
                    classify_gateway_response(response.status_code, body, response.headers)
                )
            self.server_date = response.headers.get("Date")
            with read_gateway_body(response) as spooled, _DECODE_LOCK:
                body = spooled.read()
                try:
                    decoded = decode_gateway_body(body, decoder)
                except ValueError as exc:
                    reason = f"invalid JSON from the gateway ({len(body):,} bytes): {exc}"
                    raise FailedAttempt(Verdict(Kind.BACKOFF, reason)) from None
                result = parse(decoded)
                del body, decoded
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
            # Streamed: the body is read by read_gateway_body, undecoded (gzip is bounded there).
            response = self._session().send(request, timeout=timeout, stream=True)
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
