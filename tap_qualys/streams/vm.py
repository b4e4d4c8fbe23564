"""Vulnerability Management streams: the KnowledgeBase, hosts and their detections."""

from __future__ import annotations

import sys
import threading
import time
import typing as t
from datetime import timedelta
from functools import cached_property
from urllib.parse import parse_qsl, urlencode

from singer_sdk import SchemaDirectory, StreamSchema
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform

from tap_qualys import bookmarks, purges, qualys_xml, schemas
from tap_qualys.casting import format_utc, parse_utc
from tap_qualys.client import CHUNK_SIZE, FetchedPage, QualysVMStream, TruncationPaginator
from tap_qualys.concurrency import ConcurrencyLimit, OrderedPipeline
from tap_qualys.emit import EncodedRecord, record_line_parts
from tap_qualys.errors import QualysAPIError
from tap_qualys.streams.tags import TagsStream, tag_filters

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    import requests
    from singer_sdk.helpers.types import Context, Record

SCHEMAS = SchemaDirectory(schemas)


def _flag(value: object) -> int:
    return 1 if value else 0


#: The context of the purge sweep's requests (Host List ``details=None``).
SWEEP_CONTEXT: Context = {"purge_sweep": True}


class KnowledgeBaseStream(QualysVMStream):
    """The KnowledgeBase: one record per QID, with CVEs, CVSS and the vendor texts.

    Incremental on ``last_service_modification_datetime`` through ``last_modified_after``. The
    next run starts ``kb_overlap_days`` before the bookmark, as QualysETL does, because Qualys
    back-dates some modifications.
    """

    name = "knowledge_base"
    path = "/api/4.0/fo/knowledge_base/vuln/"
    primary_keys = ("qid",)
    paging_key = "qid"
    replication_key = "last_service_modification_datetime"
    is_sorted = False
    schema = StreamSchema(SCHEMAS)
    sync_note = (
        "the bookmark (max last_service_modification_datetime) is saved when the stream "
        "completes; the next run starts kb_overlap_days before it"
    )

    @override
    def parse_response(self, response: requests.Response) -> qualys_xml.XMLPage:
        return qualys_xml.parse_knowledge_base(response.iter_content(CHUNK_SIZE))

    @override
    def qualys_params(self, context: Context | None) -> dict[str, t.Any]:
        return {
            "details": "All",
            "show_disabled_flag": 1,
            "show_qid_change_log": 1,
            "show_supported_modules_info": 1,
            "show_pci_reasons": 1,
            "last_modified_after": self._modified_after(context),
        }

    def _modified_after(self, context: Context | None) -> str | None:
        start = self.get_starting_timestamp(context)
        if start is None:
            return None
        if self.get_context_state(context).get("replication_key_value"):
            start -= timedelta(days=int(self.config.get("kb_overlap_days", 30)))
        return format_utc(start)

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        self.log_filters(self.qualys_params(context))
        # The SDK caps the new bookmark at the run's start; a date beyond the horizon is
        # still worth a warning: Qualys' data or clock is wrong. Same text format, so the
        # strings compare as the dates do.
        latest = format_utc(bookmarks.horizon(self.config))
        warned = False
        for record in super().get_records(context):
            value = record.get(self.replication_key)
            if not warned and value and value > latest:
                warned = True
                self.logger.warning(
                    bookmarks.future_warning(
                        self.name,
                        f"QID {record.get('qid')} {self.replication_key}",
                        value,
                        "the bookmark is capped at this run's start",
                    )
                )
            yield record
        self.log_summary()


class HostsStream(QualysVMStream):
    """Hosts from the Host List, with tags and cloud metadata; parent of ``host_detections``.

    Incremental on ``vm_processed_after`` (the time a host's scan results were processed, which
    catches late agent data that scan-date filters miss). Host List has no such field in its
    records, so the SDK's replication-key machinery (max of a record field) cannot track it.
    The stream keeps its own bookmark instead, ``{"vm_processed_after": "<datetime>"}`` in its
    state: the server's RESPONSE DATETIME of the run's first Host List page, i.e. the run's
    start as Qualys saw it. It is written only after every host *and every detection batch* has
    been emitted, so a failed run is repeated rather than leaving a gap, and the next run starts
    ``hosts_overlap_minutes`` earlier to cover results processed while this run started. With no
    bookmark the window starts at ``start_date``, or covers everything.
    """

    name = "hosts"
    path = "/api/5.0/fo/asset/host/"
    primary_keys = ("id",)
    schema = StreamSchema(SCHEMAS)
    sync_mode = "incremental"
    sync_note = (
        "hosts processed since vm_processed_after; the bookmark moves once every host and"
        " every detection batch is out, and the next run starts hosts_overlap_minutes "
        "before it"
    )

    #: The state key of the bookmark described above.
    bookmark_key = "vm_processed_after"
    #: Resolves tag names in tag_set_include/exclude (set by the tap at discovery).
    tag_source: TagsStream | None = None

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Start with no pending batch of host ids."""
        super().__init__(*args, **kwargs)
        self._host_ids: list[int] = []
        self._last_record = False
        self._sweeping = False

    @override
    def parse_response(self, response: requests.Response) -> qualys_xml.XMLPage:
        if self._sweeping:
            return qualys_xml.parse_host_id_set(response.iter_content(CHUNK_SIZE))
        return qualys_xml.parse_host_list(response.iter_content(CHUNK_SIZE))

    @override
    def qualys_params(self, context: Context | None) -> dict[str, t.Any]:
        config = self.config
        if context and context.get("purge_sweep"):
            # Ids only, every host of the id range: no tag filter, so a host that just lost a
            # tag is never taken for purged (purges.scope_of).
            return {"details": "None", "truncation_limit": 0, **purges.scope_of(config)}
        cloud = config.get("show_cloud_metadata", True)
        trurisk = config.get("show_trurisk", True)
        return {
            "details": "All",
            "truncation_limit": config.get("truncation_limit", 1000),
            "show_asset_id": 1,
            "show_tags": _flag(config.get("show_tags", True)),
            "show_cloud_tags": _flag(cloud),
            "host_metadata": "all" if cloud else None,
            # Consultant subscriptions reject both with 1901: show_trurisk=false leaves them out.
            "show_trurisk": 1 if trurisk else None,
            "show_trurisk_factors": 1 if trurisk else None,
            # The Asset Risk Score is TruRisk's predecessor: same subscriptions, same switch.
            "show_ars": 1 if trurisk else None,
            "show_ars_factors": 1 if trurisk else None,
            "vm_processed_after": self.processed_after(),
            "id_min": config.get("id_min"),
            "id_max": config.get("id_max"),
            **tag_filters(config, self.tag_source),
        }

    def processed_after(self) -> str | None:
        """The start of this run's window: the bookmark minus the overlap, or start_date."""
        bookmark = self.stream_state.get(self.bookmark_key)
        if bookmark:
            overlap = timedelta(minutes=int(self.config.get("hosts_overlap_minutes", 60)))
            return format_utc(parse_utc(bookmark) - overlap)
        start_date = self.config.get("start_date")
        return format_utc(parse_utc(start_date)) if start_date else None

    @property
    def detections(self) -> HostDetectionsStream | None:
        """The detection stream, when it (or anything below it) is to be synced."""
        for child in self.child_streams:
            if isinstance(child, HostDetectionsStream) and (
                child.selected or child.has_selected_descendents
            ):
                return child
        return None

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        self.log_filters(self.qualys_params(context))
        self._host_ids, self._last_record = [], False
        self.first_response_datetime = None
        # Hold one host back: the last host must flush the final, partial detection batch,
        # and only the next record (or the end of the pages) tells that a host was the last.
        # Only hosts that pass the stream maps' __filter__ are held back and batched: the SDK
        # syncs a record's children only when the record passes, so the batch must travel
        # with a host that does (see generate_child_contexts). A filtered host goes out at
        # once; the SDK drops it without writing anything.
        previous: Record | None = None
        try:
            for record in super().get_records(context):
                if not self.passes_filter(record):
                    yield record
                    continue
                if previous is not None:
                    yield previous
                previous = record
            if previous is not None:
                self._last_record = True
                yield previous
        except BaseException:
            # Stop detection batches still queued or running: the sync has failed.
            if detections := self.detections:
                detections.close_pipeline()
            raise
        # Every host and every detection batch is out: now the window may move, but never
        # into the future (a server clock gone wrong would freeze the stream for good).
        server_time = self.first_response_datetime
        if server_time and bookmarks.beyond_horizon(server_time, self.config):
            self.logger.warning(
                bookmarks.future_warning(
                    self.name,
                    "Qualys' clock (the Host List DATETIME)",
                    server_time,
                    bookmarks.kept_bookmark(self.stream_state.get(self.bookmark_key)),
                )
            )
        elif server_time:
            self.stream_state[self.bookmark_key] = server_time
            self.state_manager.is_flushed = False
        yield from self._purge_sweep(server_time)
        self.log_summary()
        if detections := self.detections:
            detections.log_summary()

    def _purge_sweep(self, server_time: str | None) -> Iterator[Record]:
        """Tombstones of the hosts Qualys purged since the last sweep (see ``purges``).

        Runs after every host and detection of the run is out, when ``purge_sweep`` is on and
        ``purge_sweep_interval_hours`` have passed on Qualys' clock. Fails closed: a sweep that
        errs or is cut off (after the usual retries) deletes nothing and keeps the previous id
        list, so the next run sweeps again; the run itself goes on.
        """
        config = self.config
        if not config.get("purge_sweep", True) or server_time is None:
            return
        if not self.mask.get(("properties", "_sdc_deleted_at"), True):
            # A tombstone without its _sdc_deleted_at would reach the target as a record of
            # nulls and overwrite the host: no sweep when the catalog deselects it.
            self.logger.warning(
                "hosts: purge sweep skipped: the catalog deselects _sdc_deleted_at, which "
                "tombstones need (select it, or set purge_sweep: false)"
            )
            return
        previous = self.stream_state.get(purges.STATE_KEY)
        interval = float(config.get("purge_sweep_interval_hours", 0))
        if not purges.due(previous, parse_utc(server_time), interval):
            self.logger.info(
                "hosts: purge sweep not due (last at %s, every %g h)",
                previous.get("swept_at") if previous else None,
                interval,
            )
            return
        started = time.monotonic()
        try:
            current, swept_at = self._sweep_ids()
            verdict = purges.judge(
                previous,
                current,
                scope=purges.scope_of(config),
                swept_at=swept_at,
                max_fraction=float(
                    config.get("purge_sweep_max_fraction", purges.DEFAULT_MAX_FRACTION)
                ),
            )
        except QualysAPIError as exc:
            self.logger.warning(
                "hosts: purge sweep failed, no host marked deleted this run (the next run "
                "sweeps again): %s",
                exc,
            )
            return
        log = self.logger.warning if verdict.refused or verdict.warn else self.logger.info
        log("%s (%.1f s)", verdict.message, time.monotonic() - started)
        for host_id in verdict.vanished:
            yield {"id": host_id, "_sdc_deleted_at": swept_at}
        self.stream_state[purges.STATE_KEY] = verdict.state
        self.state_manager.is_flushed = False

    def _sweep_ids(self) -> tuple[list[int], str]:
        """Every host id of the scope (Host List ``details=None``), and Qualys' time of it.

        Every page must parse completely (``fetch``), and a truncated answer is followed to its
        end, so the list is either complete or an exception.
        """
        paginator = TruncationPaginator(self.logger, f"{self.label} (purge sweep)")
        ids: list[int] = []
        swept_at: str | None = None
        self._sweeping = True
        try:
            while not paginator.finished:
                page = self.fetch(self.prepare(SWEEP_CONTEXT, paginator.current_value))
                swept_at = swept_at or page.response_datetime
                try:
                    for record in page.records:
                        ids.extend(range(record["first"], record["id"] + 1))
                finally:
                    page.records.close()
                paginator.advance(page)
        finally:
            self._sweeping = False
        if swept_at is None:
            msg = f"{self.label} (purge sweep) failed: the answer had no RESPONSE DATETIME"
            raise QualysAPIError(msg)
        return ids, swept_at

    @override
    def generate_child_contexts(
        self,
        record: Record,
        context: Context | None,
    ) -> Iterable[Context | None]:
        detections = self.detections
        if detections is None or record.get("_sdc_deleted_at"):
            # A tombstone has no detections to fetch: the target cascades its delete.
            return
        # A host that a stream map filters out (``__filter__``) is dropped with its detections:
        # the SDK does not sync the children of a filtered record, and a filter on hosts means
        # "not these hosts". Its id is left out of the batch and the pending batch is kept for
        # the next host that passes, so no other host's detections are lost. get_records holds
        # back the last *passing* host, which flushes the final batch.
        if not self.passes_filter(record):
            return
        self._host_ids.append(record["id"])
        batch_size = int(self.config.get("host_batch_size", 1000))
        if len(self._host_ids) >= batch_size or self._last_record:
            yield detections.queue_batch(self._host_ids, last=self._last_record)
            self._host_ids = []


class HostDetectionsStream(QualysVMStream):
    """Detections (vulnerabilities found on hosts), fetched for batches of the parent's hosts.

    The hosts stream hands over its host ids in batches of ``host_batch_size``; each batch is
    one ``ids=`` POST with ``truncation_limit=0``. Batches run in parallel on worker threads, up
    to what the subscription's concurrency limit allows, and their records are emitted here on
    the main thread in batch order. Detections are a full snapshot of each host that changed, so
    there is no state of their own; Fixed is fetched by default so remediations close downstream.
    """

    name = "host_detections"
    path = "/api/5.0/fo/asset/host/vm/detection/"
    parent_stream_type = HostsStream
    state_partitioning_keys: t.ClassVar[list[str]] = []
    primary_keys = ("host_id", "unique_vuln_id")
    paging_key = "host_id"
    schema = StreamSchema(SCHEMAS)
    #: Resolves tag names in tag_set_include/exclude (set by the tap at discovery).
    tag_source: TagsStream | None = None
    sync_mode = ""
    sync_note = (
        "the detections of the hosts stream's window, all statuses, host_batch_size hosts"
        " per request"
    )

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Set up the batch queue and the concurrency limit."""
        super().__init__(*args, **kwargs)
        self.limit = ConcurrencyLimit(
            maximum=self.config.get("max_concurrency"),
            headroom=int(self.config.get("concurrency_headroom", 0)),
        )
        # Host ids wait here between the parent and the request: a context holding them would
        # be copied into every SDK metric line.
        self._batches: dict[int, list[int]] = {}
        self._batch_count = 0
        self._all_queued = False
        self._pipeline: OrderedPipeline[tuple[int, int, list[FetchedPage]]] | None = None
        self._parse_lock = threading.Lock()
        #: Batches Qualys truncated although we asked for no limit, and the pages they took.
        self.truncated_batches = 0
        self.followed_pages = 0
        #: RESULTS cut at the parser's size limit (each one logged as a WARNING).
        self.cut_results = 0

    def queue_batch(self, host_ids: list[int], *, last: bool) -> Context:
        """Take a batch of host ids from the parent; return the child context naming it."""
        self._batch_count += 1
        self._batches[self._batch_count] = list(host_ids)
        self._all_queued = last
        return {"host_batch": self._batch_count, "last_batch": last}

    @override
    def parse_response(self, response: requests.Response) -> qualys_xml.XMLPage:
        # Batches download in parallel but parse one chunk at a time (see XMLPage's cpu_lock).
        return qualys_xml.parse_host_list_detection(
            response.iter_content(CHUNK_SIZE), cpu_lock=self._parse_lock
        )

    @override
    def qualys_params(self, context: Context | None) -> dict[str, t.Any]:
        config = self.config
        params: dict[str, t.Any] = {
            "truncation_limit": 0,
            "status": ",".join(config.get("status") or DEFAULT_STATUSES),
            "show_asset_id": 1,
            "show_results": _flag(config.get("show_results", True)),
            "show_reopened_info": 1,
            "show_igs": _flag(config.get("show_igs", True)),
            "show_qds": _flag(config.get("show_qds", True)),
            "show_qds_factors": _flag(config.get("show_qds_factors", True)),
            "include_ignored": _flag(config.get("include_ignored", True)),
            "include_disabled": _flag(config.get("include_disabled", True)),
            # Tags come with the hosts stream; per detection only when asked (they repeat).
            "show_tags": _flag(
                config.get("show_tags", True) and config.get("detection_host_tags", False)
            ),
            "show_arf_data": _flag(config.get("show_arf_data", True)),
            "mitre_attack_details": _flag(config.get("mitre_attack_details", True)),
            **tag_filters(config, self.tag_source),
        }
        if context and "host_batch" in context:
            params["ids"] = ",".join(str(i) for i in self._batches[context["host_batch"]])
        if context and context.get("probe"):
            # One host, no RESULTS: a few KB that carry the limit headers
            # (docs/qualys-api.md §7).
            params.update(truncation_limit=1, show_results=0)
        return params

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        if not context or "host_batch" not in context:
            return
        number = context["host_batch"]
        if self._pipeline is None:
            self.log_filters(self.qualys_params(None))
            self._probe_concurrency(context)
            self._pipeline = OrderedPipeline(
                workers=self.limit.ceiling,
                # Two batches per slot: one fetching, one parsed and waiting for the main
                # thread, so the slots stay busy while records are written.
                window=lambda: 2 * self.limit.limit,
                discard=_close_pages,
            )
        pipeline = self._pipeline
        prepared = self.prepare(context, None)
        hosts = len(self._batches.pop(number))
        try:
            ready = pipeline.submit(lambda: (number, hosts, self._fetch_batch(number, prepared)))
            yield from self._emit(ready)
            if context.get("last_batch"):
                yield from self._emit(pipeline.drain())
                self.close_pipeline()
        except BaseException:
            self.close_pipeline()
            raise

    def _probe_concurrency(self, context: Context) -> None:
        """Learn this API's parallel-call limit with one cheap call before batches run.

        Until an answer has shown ``X-Concurrency-Limit-Limit`` only one call runs (an Express
        subscription allows one), so without this the first batches would be queued for one
        slot while the others stay idle. The probe asks for the first batch with
        ``truncation_limit=1`` and no RESULTS (the concurrency probe of docs/qualys-api.md §7);
        its records are dropped, the batch itself is fetched as usual.
        """
        if self.limit.ceiling <= 1:
            return
        probe = self.fetch(self.prepare({**context, "probe": True}, None), limit=self.limit)
        probe.records.close()

    def _fetch_batch(self, number: int, prepared: requests.PreparedRequest) -> list[FetchedPage]:
        """Every page of one batch (on a worker thread).

        ``truncation_limit=0`` asks for the whole batch in one answer, but Qualys may truncate
        any answer (WARNING 1980 with a next-page URL): the URL is followed like the Host
        List's, with the batch's own parameters and the URL's ``id_min``, so nothing is lost.
        """
        paginator = TruncationPaginator(self.logger, f"{self.label} batch {number}")
        pages: list[FetchedPage] = []
        request = prepared
        try:
            while True:
                page = self.fetch(request, limit=self.limit)
                pages.append(page)
                paginator.advance(page)
                if paginator.finished:
                    return pages
                request = _with_id_min(prepared, paginator.current_value)
        except BaseException:
            _close_pages((number, 0, pages))
            raise

    def close_pipeline(self) -> None:
        """End the batch pipeline: cancel batches not yet started, wait for running ones."""
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None

    def _emit(self, results: Iterable[tuple[int, int, list[FetchedPage]]]) -> Iterator[Record]:
        for number, hosts, pages in results:
            try:
                yield from self._emit_batch(number, hosts, pages)
            finally:
                _close_pages((number, hosts, pages))

    def _emit_batch(self, number: int, hosts: int, pages: list[FetchedPage]) -> Iterator[Record]:
        self.cut_results += sum(page.cut_fields for page in pages)
        if len(pages) > 1:
            self.truncated_batches += 1
            self.followed_pages += len(pages) - 1
        self.logger.info(
            "%s: batch %d/%s: %s hosts, %s detections, %.1f s, %d in flight%s",
            self.name,
            number,
            self._batch_count if self._all_queued else "?",
            f"{hosts:,}",
            f"{sum(page.records.count for page in pages):,}",
            sum(page.elapsed for page in pages),
            self._pipeline.in_flight if self._pipeline else 0,
            f", truncated by Qualys: {len(pages)} pages" if len(pages) > 1 else "",
        )
        for page in pages:
            if not self.emits_encoded:
                for record in page.records:
                    self.records_emitted += 1
                    yield record
                continue
            prefix, suffix = record_line_parts(self.name, self.stream_version, page.extracted)
            for encoded in page.records.encoded():
                self.records_emitted += 1
                yield EncodedRecord(prefix + encoded + suffix)  # type: ignore[misc]

    @override
    def log_summary(self) -> None:
        super().log_summary()
        if self.truncated_batches:
            self.logger.info(
                "%s: %d batches truncated by Qualys despite truncation_limit=0; followed %d "
                "next-page URLs, nothing lost",
                self.name,
                self.truncated_batches,
                self.followed_pages,
            )
        if self.cut_results:
            self.logger.warning(
                "%s: %d RESULTS over the %d MB limit were cut there and marked (see the "
                "WARNINGs naming their host and QID)",
                self.name,
                self.cut_results,
                qualys_xml.MAX_TEXT_BYTES // 1_000_000,
            )

    @cached_property
    def emits_encoded(self) -> bool:
        """Whether records can go out as the spool's JSON (see ``emit.EncodedRecord``).

        Only when nothing would change them on the way and they go to stdout: every property
        selected, the SDK's identity stream map without flattening (no ``stream_maps``, no
        ``flattening_enabled``), no type conformance, and no ``batch_config`` (BATCH files are
        written from the records themselves). Otherwise they are decoded and take the SDK's own
        path.
        """
        maps = self.stream_maps
        return (
            not self.get_batch_config(self.config)
            and self._selects_every_property
            and len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and not maps[0].flattening_enabled
            and maps[0].stream_alias == self.name
            and self.TYPE_CONFORMANCE_LEVEL is TypeConformanceLevel.NONE
        )

    @override
    def generate_child_contexts(
        self, record: Record, context: Context | None
    ) -> Iterable[Context | None]:
        # No child streams: the SDK's default would copy the context for every detection.
        return ()


DEFAULT_STATUSES = ("New", "Active", "Re-Opened", "Fixed")


def _close_pages(result: tuple[int, int, list[FetchedPage]]) -> None:
    """Release the spools of a fetched batch (emitted, or never to be)."""
    for page in result[2]:
        page.records.close()


def _with_id_min(
    prepared: requests.PreparedRequest, id_min: int | None
) -> requests.PreparedRequest:
    """The batch's own request (ids, flags) asking from ``id_min`` on (a truncation URL's)."""
    follow = prepared.copy()
    body = prepared.body
    text = body.decode() if isinstance(body, bytes) else (body or "")
    params = [(k, v) for k, v in parse_qsl(text, keep_blank_values=True) if k != "id_min"]
    params.append(("id_min", str(id_min)))
    follow.prepare_body(urlencode(params), None)
    return follow
