"""CyberSecurity Asset Management (CSAM, asset inventory v2): ``csam_assets``, from the gateway.

Paging, bookmark and resume:

- ``POST /rest/2.0/search/am/asset?pageSize=300&lastSeenAssetId=N`` pages in ascending assetId
  order; the answer says ``hasMore`` and the ``lastSeenAssetId`` to send next.
- Incremental on ``last_modified_date``: the JSON filter ``asset.lastUpdated GREATER <bookmark
  minus csam_overlap_minutes>``. Pages are not in date order, so the SDK only promotes the new
  bookmark when the stream ends, capped at the run's start (the signpost): an asset changed
  while the run was paging past it is fetched again next run instead of being skipped. The
  run's start is the gateway's clock (the ``Date`` header of the run's first answer), never
  this machine's: with a local clock ahead of Qualys' the cap would be too late and those
  assets lost. A server time beyond ``max_clock_skew_minutes`` (or none) caps the bookmark at
  the previous one instead (see ``bookmarks``).
- Resumable: after every fully emitted page the stream state gets a resume point,
  ``{"resume": {"last_seen_asset_id": N, "query": {...}, "started": <run start>}}``, and a STATE
  message is written at once. A run that starts with a resume point for the same query continues
  after asset N instead of starting over (a 1.5M-asset subscription is 5,000 pages); the point is
  removed when the stream finishes. A resume point for another query (bookmark, tag filter or
  includeFields changed) is ignored.
- A resumed run never re-reads assets up to N, so its new bookmark is capped at ``started``, the
  start of the *interrupted* run (kept through repeated resumes) rather than its own: the next
  run then re-reads every asset changed since the interrupted run began, those below N included.

Record shape: top-level keys in snake_case (``assetId`` -> ``asset_id``, see ``naming``), nested
values with the API's own keys. ``date-time`` fields come out as ISO-8601 UTC strings, epoch
milliseconds included (see ``casting.DateNormalizer``); software ids above 2**53 stay exact
integers. ``inventoryListData`` / ``inventory_list_data`` (other spellings seen for the inventory
block) are read into ``inventory``.
"""

from __future__ import annotations

import sys
import time
import typing as t
from dataclasses import dataclass
from datetime import timedelta

from singer_sdk import StreamSchema
from singer_sdk.pagination import BaseAPIPaginator

from tap_qualys import bookmarks
from tap_qualys.casting import format_utc, http_date, parse_utc, qualys_filter_datetime
from tap_qualys.client import QualysGatewayStream, StalledPages
from tap_qualys.errors import GatewayAuthError, QualysAPIError
from tap_qualys.naming import GATEWAY_SCHEMAS, RESUME_CURSOR
from tap_qualys.retries import transient

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from singer_sdk.helpers.types import Context, Record

#: Qualys' keys on file, snake_case top-level names served (see ``naming``).
SCHEMAS = GATEWAY_SCHEMAS
#: The documented maximum page size of the asset search.
MAX_PAGE_SIZE = 300
#: Sent or kept whatever ``csam_include_fields`` says: the primary and the replication key
#: (Qualys' names: ``includeFields`` is the API's parameter).
REQUIRED_FIELDS = ("assetId", "lastModifiedDate")
#: How far before the bookmark the next run starts (``csam_overlap_minutes``).
DEFAULT_OVERLAP_MINUTES = 60
#: The cap of a first run's bookmark when the gateway's clock is unusable: the next run reads
#: everything again rather than trusting a time from nowhere.
EPOCH = "1970-01-01T00:00:00.000Z"
_INVENTORY_SPELLINGS = ("inventoryListData", "inventory_list_data")


@dataclass(frozen=True)
class CsamPage:
    """One validated search answer."""

    assets: list[dict[str, t.Any]]
    has_more: bool
    last_seen_asset_id: int | None


def read_csam_page(body: t.Any) -> CsamPage:
    """Validate the search envelope (§8); an unusable one is a transient failure to retry.

    ``responseCode`` other than SUCCESS, no ``hasMore``, or ``hasMore`` without a
    ``lastSeenAssetId`` to continue from: Qualys answers those with HTTP 200 under load.
    """
    if not isinstance(body, dict):
        raise transient(f"search answer is a JSON {type(body).__name__}, not an object")
    if body.get("responseCode") != "SUCCESS":
        raise transient(
            f"responseCode {body.get('responseCode')!r}: {body.get('responseMessage') or ''}"
        )
    raw_more = body.get("hasMore")
    if raw_more is None:
        raise transient("search answer has no hasMore")
    # hasMore arrives as 1/0, "1"/"0" and, from some proxies, true/false.
    has_more = str(raw_more).strip().lower() in {"1", "true"}
    raw_last = body.get("lastSeenAssetId")
    last_seen: int | None = None
    if raw_last not in {None, ""}:
        if isinstance(raw_last, bool) or not str(raw_last).strip().isdigit():
            raise transient(f"lastSeenAssetId {str(raw_last)[:40]!r} is not a number")
        last_seen = int(str(raw_last).strip())
    if has_more and last_seen is None:
        raise transient("hasMore=1 without lastSeenAssetId")
    listed = (body.get("assetListData") or {}).get("asset") or []
    assets = [listed] if isinstance(listed, dict) else list(listed)
    return CsamPage(assets, has_more, last_seen)


def read_csam_count(body: t.Any) -> int:
    """``{"responseCode": "SUCCESS", "count": N}``; anything else is retried."""
    if not isinstance(body, dict) or body.get("responseCode") != "SUCCESS":
        raise transient("count answer is not a SUCCESS")
    return int(body.get("count") or 0)


class CsamAssetPaginator(BaseAPIPaginator[int]):
    """``lastSeenAssetId`` paging over :class:`CsamPage`; 0 asks for the first page.

    A cursor that repeats or goes back fails at once; ``client.MAX_STALLED_PAGES`` pages in a row
    with ``hasMore`` but no asset past the cursor (empty pages whose cursor creeps forward, or
    assets already read) fail too: either would otherwise page forever.
    """

    def __init__(self, start_value: int) -> None:
        """Start after asset ``start_value`` (0: the first page)."""
        super().__init__(start_value)
        self._stalled = StalledPages("csam_assets: POST /rest/2.0/search/am/asset")

    @override
    def advance(self, response: t.Any) -> None:
        # Advanced with the validated CsamPage, not the raw response (parsed once, in the retry).
        super().advance(response)

    @override
    def has_more(self, response: t.Any) -> bool:
        return bool(response.has_more)

    @override
    def get_next(self, response: t.Any) -> int | None:
        next_id: int = response.last_seen_asset_id
        if next_id <= self.current_value:
            # Ids ascend; a cursor that does not would page forever or skip assets.
            msg = (
                f"csam_assets: lastSeenAssetId went from {self.current_value} to {next_id}; "
                "stopping rather than paging in a loop"
            )
            raise QualysAPIError(msg)
        cursor = self.current_value
        self._stalled.page(
            brought_new=any(_after(asset, cursor) for asset in response.assets),
            cursor=f"lastSeenAssetId={next_id}",
        )
        return next_id


def _after(asset: t.Any, cursor: int) -> bool:
    """Whether an asset is past the cursor, i.e. not read yet (ids ascend)."""
    try:
        return int(asset.get("assetId")) > cursor
    except (AttributeError, TypeError, ValueError):
        return True  # no usable id: count it as new, the cursor check still guards the paging


class CsamAssetsStream(QualysGatewayStream):
    """CSAM assets with their nested inventory; ``host_id`` joins them to the VM ``hosts``."""

    name = "csam_assets"
    path = "/rest/2.0/search/am/asset"
    primary_keys = ("asset_id",)
    replication_key = "last_modified_date"
    # Pages come in assetId order, not by date: the bookmark moves only at the end.
    is_sorted = False
    schema = StreamSchema(SCHEMAS)
    sync_note = (
        "the bookmark (max last_modified_date) is saved when the stream completes, and a "
        "resume point after every page"
    )
    record_unit = "assets"

    #: Same filters as the search; answers how many assets match.
    count_path = "/rest/2.0/count/am/asset"
    #: The state key of the resume point described in the module docstring.
    resume_key = "resume"
    #: The start of the run whose paging this run continues (or of this run): see
    #: :meth:`get_replication_key_signpost`.
    _run_started: str | None = None

    def query(self, context: Context | None) -> dict[str, t.Any]:
        """What this run asks for, besides the cursor: filters, page size and includeFields."""
        config = self.config
        filters = []
        start = self.get_starting_timestamp(context)
        if start is not None and self.get_context_state(context).get("replication_key_value"):
            overlap = config.get("csam_overlap_minutes", DEFAULT_OVERLAP_MINUTES)
            start -= timedelta(minutes=int(overlap))
        if start is not None:
            filters.append(
                {
                    "field": "asset.lastUpdated",
                    "operator": "GREATER",
                    "value": qualys_filter_datetime(start),
                }
            )
        if tag := config.get("csam_tag_filter"):
            filters.append({"field": "tags.name", "operator": "EQUALS", "value": tag})
        # Column names (host_id) or Qualys' (hostId): includeFields takes Qualys'.
        api_names = self.columns.api_names
        include = [api_names.get(name, name) for name in config.get("csam_include_fields") or []]
        if include:
            include += [field for field in REQUIRED_FIELDS if field not in include]
        return {
            "filters": filters,
            "pageSize": min(int(config.get("csam_page_size", MAX_PAGE_SIZE)), MAX_PAGE_SIZE),
            "includeFields": ",".join(include) or None,
        }

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        query = self.query(context)
        start_id = self._resume_point(query)
        self.logger.info(
            "%s: POST %s%s pageSize=%s, filters=%s, includeFields=%s%s",
            self.name,
            self.url_base,
            self.path,
            query["pageSize"],
            query["filters"] or "none (everything)",
            query["includeFields"] or "all",
            f", resuming after assetId {start_id}" if start_id else "",
        )
        paginator = CsamAssetPaginator(start_id)
        body = {"filters": query["filters"]} if query["filters"] else None
        total = self._count(body)
        if self.server_date:
            self._cap_bookmark(context, query)
        latest = bookmarks.horizon(self.config)
        warned = False
        while not paginator.finished:
            started = time.monotonic()
            page = self.gateway_call(
                self.path,
                read_csam_page,
                params={
                    "pageSize": query["pageSize"],
                    "lastSeenAssetId": paginator.current_value,
                    "includeFields": query["includeFields"],
                },
                body=body,
            )
            self.logger.info(
                "%s: page %d: %s assets (%s so far of %s), lastSeenAssetId=%s, hasMore=%d, %.1f s",
                self.name,
                paginator.count + 1,
                f"{len(page.assets):,}",
                f"{self.records_emitted + len(page.assets):,}",
                total,
                page.last_seen_asset_id,
                page.has_more,
                time.monotonic() - started,
            )
            if self._run_started is None:
                self._cap_bookmark(context, query)
            for asset in page.assets:
                if not warned and bookmarks.later_than(asset.get("lastModifiedDate"), latest):
                    warned = True
                    self.logger.warning(
                        bookmarks.future_warning(
                            self.name,
                            f"asset {asset.get('assetId')} lastModifiedDate",
                            asset["lastModifiedDate"],
                            f"the bookmark is capped at this run's start, {self._run_started}",
                        )
                    )
                self.records_emitted += 1
                yield read_inventory(asset)
            # The generator only resumes here once the SDK has written the page's last record.
            paginator.advance(page)
            # An empty page moves no resume point: a server paging in place (see the
            # paginator) must not leave one past assets it never sent.
            if not paginator.finished and page.assets:
                self._save_resume_point(query, paginator.current_value)
        self.stream_state.pop(self.resume_key, None)
        self.state_manager.is_flushed = False
        self.log_summary()

    def _count(self, body: dict[str, t.Any] | None) -> str:
        """How many assets match, for the progress lines; "?" when the count call fails.

        Only a progress aid (on resume it counts the whole query, not what is left), so a
        failure here must not fail the sync.
        """
        try:
            count = self.gateway_call(self.count_path, read_csam_count, body=body)
        except GatewayAuthError:
            raise  # the search would fail the same way: one error, not a warning and an error
        except QualysAPIError as exc:
            self.logger.warning("%s: no asset count for progress lines: %s", self.name, exc)
            return "?"
        self.logger.info("%s: %s assets match", self.name, f"{count:,}")
        return f"{count:,}"

    @override
    def get_replication_key_signpost(self, context: Context | None = None) -> t.Any:
        """None: the SDK's default is this machine's clock; :meth:`_cap_bookmark` sets it."""
        return None

    def _cap_bookmark(self, context: Context | None, query: dict[str, t.Any]) -> None:
        """Cap the new bookmark at the run's start on the gateway's clock (the signpost).

        Set once the run's first answer has said what time the gateway has (its ``Date``
        header): assets changed after that are read again next run. A time the gateway did not
        give, or one beyond ``max_clock_skew_minutes``, is not trusted: the bookmark then stays
        where it was. A run resuming after a crash does not re-read the assets up to its
        resume point, so a change made to them after the interrupted run read them would be
        skipped if the bookmark moved past it: capping at the *interrupted* run's start (kept
        in the resume point, through any number of resumes) makes the next run re-read every
        change since then.
        """
        state = self.get_context_state(context)
        previous = state.get("replication_key_value")
        server = http_date(self.server_date)
        if server is not None and not bookmarks.beyond_horizon(server, self.config):
            cap = format_utc(server, milliseconds=True)
        else:
            kept = bookmarks.kept_bookmark(previous)
            self.logger.warning(
                bookmarks.future_warning(self.name, "the gateway's clock (Date)", server, kept)
                if server
                else f"{self.name}: the gateway sent no usable Date header, so this run's start "
                f"is unknown and the bookmark does not move: {kept}"
            )
            cap = format_utc(parse_utc(previous), milliseconds=True) if previous else EPOCH
        self._run_started = cap
        started = (state.get(self.resume_key) or {}).get("started")
        if started and self._resume_point(query, warn=False):
            original = parse_utc(started)
            if original < parse_utc(cap):
                cap = format_utc(original, milliseconds=True)
                self._run_started = started  # as written, through any number of resumes
        # In the records' own format: the SDK compares the signpost with them as strings.
        self.state_manager.write_replication_key_signpost(cap, context=context)

    def _resume_point(self, query: dict[str, t.Any], *, warn: bool = True) -> int:
        saved = self.stream_state.get(self.resume_key)
        if not saved:
            return 0
        if saved.get("query") != query:
            if not warn:
                return 0
            self.logger.warning(
                "%s: ignoring the resume point after assetId %s: it belongs to another query "
                "(%s); starting from the first page",
                self.name,
                saved.get(RESUME_CURSOR),
                saved.get("query"),
            )
            return 0
        try:
            return int(saved[RESUME_CURSOR])
        except (KeyError, TypeError, ValueError):
            if warn:
                self.logger.warning(
                    "%s: ignoring an unreadable resume point %r; starting from the first page",
                    self.name,
                    saved,
                )
            return 0

    def _save_resume_point(self, query: dict[str, t.Any], last_seen_asset_id: int) -> None:
        self.stream_state[self.resume_key] = {
            RESUME_CURSOR: last_seen_asset_id,
            "query": query,
            # The start of the run that began this paging (see get_replication_key_signpost).
            "started": self._run_started,
        }
        # Written now, not at the SDK's next 10,000th record: a crash must find it.
        self.write_state_now()


def read_inventory(asset: dict[str, t.Any]) -> dict[str, t.Any]:
    """Move the inventory block to ``inventory`` whichever of its spellings the API used."""
    for key in _INVENTORY_SPELLINGS:
        if key not in asset:
            continue
        listed = asset.pop(key)
        if isinstance(listed, dict) and "inventory" in listed:
            listed = listed["inventory"]
        if isinstance(listed, list):
            listed = listed[0] if listed else None
        if asset.get("inventory") is None:
            asset["inventory"] = listed
    return asset
