"""Asset tags from the Asset Management tag API (QPS ``/qps/rest/2.0/search/am/tag``), and the
resolution of tag names (and child tags) for ``tag_set_include`` / ``tag_set_exclude``.

The tag API is a QPS API: an XML ``ServiceRequest`` body with ``Criteria`` filters, pages of at
most 1,000 tags in ascending id order, and ``hasMoreRecords`` / ``lastId`` for the next page
(``id GREATER lastId``). It takes the VM API's Basic credentials on the same API server.
"""

from __future__ import annotations

import difflib
import sys
import threading
import typing as t
from dataclasses import dataclass
from datetime import timedelta
from xml.sax.saxutils import escape

from singer_sdk import SchemaDirectory, StreamSchema
from singer_sdk.pagination import BaseAPIPaginator

from tap_qualys import qualys_xml, schemas
from tap_qualys.casting import format_utc, parse_utc
from tap_qualys.client import (
    CHUNK_SIZE,
    MAX_ERROR_BODY,
    QualysVMStream,
    StalledPages,
    _reason,
)
from tap_qualys.errors import QualysAPIError
from tap_qualys.retries import FailedAttempt, classify_qps, classify_response

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    import requests
    from singer_sdk.helpers.types import Context, Record

    from tap_qualys.client import FetchedPage

SCHEMAS = SchemaDirectory(schemas)
#: QPS pages hold at most this many records (100 unless limitResults says otherwise).
MAX_PAGE_SIZE = 1000
#: ``updated GREATER`` is strict: start a second before the bookmark, so a tag modified in the
#: bookmark's own second after the last run read it is not missed (it is read again, an upsert).
BOOKMARK_OVERLAP = timedelta(seconds=1)

Criterion = tuple[str, str, str]


def service_request(criteria: Iterable[Criterion], page_size: int) -> bytes:
    """A QPS ``ServiceRequest`` body: the criteria (ANDed) and the page size."""
    filters = "".join(
        f'<Criteria field="{field}" operator="{operator}">{escape(value)}</Criteria>'
        for field, operator, value in criteria
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<ServiceRequest>'
        f"<filters>{filters}</filters>"
        f"<preferences><limitResults>{page_size}</limitResults></preferences>"
        "</ServiceRequest>"
    ).encode()


class LastIdPaginator(BaseAPIPaginator[int | None]):
    """QPS paging: the token is the last page's ``lastId``, sent as ``id GREATER``.

    A ``lastId`` that does not move forward, a "more" without a ``lastId``, or pages that bring
    nothing new are failures, never the end of the data (the bookmark would skip tags).
    """

    def __init__(self, label: str) -> None:
        """Start on the first page; ``label`` names stream and endpoint in errors."""
        super().__init__(None)
        self._label = label
        self._stalled = StalledPages(label)

    @override
    def advance(self, response: requests.Response | FetchedPage) -> None:
        """Advance on the parsed page: hasMoreRecords and lastId were in its body."""
        super().advance(response)  # type: ignore[arg-type]

    @override
    def has_more(self, response: t.Any) -> bool:
        return bool(response.has_more_records)

    @override
    def get_next(self, response: t.Any) -> int | None:
        page: FetchedPage = response
        if page.last_id is None:
            msg = (
                f"{self._label} failed: Qualys said more records exist (hasMoreRecords) but "
                "sent no lastId; stopping without completing the sync"
            )
            raise QualysAPIError(msg)
        if self.current_value is not None and page.last_id <= self.current_value:
            msg = (
                f"{self._label} failed: the next-page lastId {page.last_id} does not advance "
                f"past {self.current_value}; stopping without completing the sync"
            )
            raise QualysAPIError(msg)
        brought_new = page.max_key is not None and (
            self.current_value is None or page.max_key > self.current_value
        )
        self._stalled.page(brought_new=brought_new, cursor=f"lastId={page.last_id}")
        return page.last_id


@dataclass(frozen=True)
class Tag:
    """What name resolution needs of a tag."""

    id: int
    name: str
    parent: int | None


class TagsStream(QualysVMStream):
    """Asset tags: the tag tree (parent ids), dynamic rule types and texts, colour, criticality.

    Incremental on ``modified`` through the ``updated GREATER`` criterion; the first run reads
    every tag (start_date does not apply: an old, never-edited tag is still part of the tree).
    Tags deleted in Qualys are not seen by an incremental run.
    """

    name = "tags"
    path = "/qps/rest/2.0/search/am/tag"
    primary_keys = ("id",)
    paging_key = "id"
    replication_key = "modified"
    # Pages come in id order, not modified order: the bookmark is saved when the stream ends.
    is_sorted = False
    schema = StreamSchema(SCHEMAS)
    sync_note = (
        "tags updated since the bookmark (max modified), a second of overlap; the first run "
        "reads every tag"
    )

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """No tag tree fetched yet (see :meth:`tag_tree`)."""
        super().__init__(*args, **kwargs)
        self._tree: dict[int, Tag] | None = None
        self._tree_lock = threading.Lock()

    @property
    def page_size(self) -> int:
        """The ``tags_page_size`` setting: limitResults of every call."""
        return int(self.config.get("tags_page_size", MAX_PAGE_SIZE))

    @override
    @property
    def http_headers(self) -> dict[str, str]:
        return {**super().http_headers, "Content-Type": "text/xml", "Accept": "application/xml"}

    @override
    def parse_response(self, response: requests.Response) -> qualys_xml.XMLPage:
        return qualys_xml.parse_tags(response.iter_content(CHUNK_SIZE))

    @override
    def get_new_paginator(self) -> LastIdPaginator:  # type: ignore[override]
        return LastIdPaginator(self.label)

    def criteria(self, context: Context | None) -> list[Criterion]:
        """The incremental criterion: tags updated after the bookmark (none on a first run)."""
        bookmark = self.get_context_state(context).get("replication_key_value")
        if not bookmark:
            return []
        since = parse_utc(str(bookmark)) - BOOKMARK_OVERLAP
        return [("updated", "GREATER", format_utc(since))]

    def prepare_search(
        self, criteria: list[Criterion], after_id: int | None
    ) -> requests.PreparedRequest:
        """One authenticated tag search: ``criteria`` and, past the first page, the id cursor."""
        page = [("id", "GREATER", str(after_id))] if after_id is not None else []
        return self.build_prepared_request(
            method="POST",
            url=f"{self.url_base}{self.path}",
            headers=self.http_headers,
            data=service_request([*criteria, *page], self.page_size),
        )

    @override
    def prepare(self, context: Context | None, token: int | None) -> requests.PreparedRequest:
        return self.prepare_search(self.criteria(context), token)

    @override
    def _check_status(self, response: requests.Response) -> None:
        if response.status_code == 200:
            return
        body = response.raw.read(MAX_ERROR_BODY, decode_content=True) or b""
        error = qualys_xml.parse_qps_error(body)
        if error is not None:
            verdict = classify_qps(
                response.status_code, error.code, error.message, response.headers
            )
            raise FailedAttempt(verdict)
        # The API server's own limits answer with a SIMPLE_RETURN (409 1960/1965), like the VM API.
        simple = qualys_xml.parse_simple_return(body)
        if simple is not None:
            raise self._failed(response, simple)
        status = response.status_code
        reason = _reason(response, body)
        verdict = (
            classify_qps(status, None, reason, response.headers)
            if status in (401, 403)
            else classify_response(status, None, reason, response.headers)
        )
        raise FailedAttempt(verdict)

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        criteria = self.criteria(context)
        shown = " AND ".join(f"{f} {o} {v}" for f, o, v in criteria) or "all tags"
        self.logger.info(
            "%s: POST %s%s for %s, %d per page",
            self.name,
            self.url_base,
            self.path,
            shown,
            self.page_size,
        )
        yield from super().get_records(context)
        self.log_summary()

    # --- name resolution ---------------------------------------------------------------------

    def tag_tree(self) -> dict[int, Tag]:
        """Every tag by id, fetched once per run (the first caller pays; threads wait)."""
        with self._tree_lock:
            if self._tree is None:
                tree: dict[int, Tag] = {}
                for record in self._search_all([]):
                    tree[record["id"]] = Tag(
                        record["id"], record["name"] or "", record["parent_tag_id"]
                    )
                self._tree = tree
                self.logger.info("%s: %d tags read to resolve tag names", self.name, len(tree))
            return self._tree

    def _search_all(self, criteria: list[Criterion]) -> Iterator[Record]:
        paginator = self.get_new_paginator()
        while not paginator.finished:
            page = self.fetch(self.prepare_search(criteria, paginator.current_value))
            yield from page.records
            paginator.advance(page)


def _describe(tag: Tag) -> str:
    return f"{tag.name!r} ({tag.id})"


def resolve(
    setting: str, values: Iterable[int | str], tree: Mapping[int, Tag], *, children: bool
) -> list[int]:
    """Tag ids for a ``tag_set_include``/``tag_set_exclude`` list of ids and names.

    A name matches exactly, else case-insensitively; every tag of that name counts. An unknown
    name is a one-line error with the closest name. ``children`` adds every descendant.
    """
    by_name: dict[str, list[int]] = {}
    by_folded: dict[str, list[int]] = {}
    for tag in tree.values():
        by_name.setdefault(tag.name, []).append(tag.id)
        by_folded.setdefault(tag.name.casefold(), []).append(tag.id)
    ids: list[int] = []
    for value in values:
        if isinstance(value, int) or value.strip().isdigit():
            ids.append(int(value))
            continue
        name = value.strip()
        found = by_name.get(name) or by_folded.get(name.casefold())
        if not found:
            close = difflib.get_close_matches(name, list(by_name), n=1, cutoff=0.6)
            if not close:
                folded = difflib.get_close_matches(name.casefold(), list(by_folded), n=1)
                close = [tree[by_folded[folded[0]][0]].name] if folded else []
            hint = f"; did you mean {close[0]!r}?" if close else ""
            msg = f"{setting}: no asset tag is named {name!r}{hint}"
            raise QualysAPIError(msg)
        ids += sorted(found)
    if children:
        kids: dict[int, list[int]] = {}
        for tag in tree.values():
            if tag.parent is not None:
                kids.setdefault(tag.parent, []).append(tag.id)
        pending = list(ids)
        while pending:
            for child in sorted(kids.get(pending.pop(), [])):
                if child not in ids:
                    ids.append(child)
                    pending.append(child)
    return list(dict.fromkeys(ids))


def tag_filters(config: Mapping[str, t.Any], source: TagsStream | None) -> dict[str, t.Any]:
    """Asset tag filters (Host List and Host List Detection take the same ones).

    Ids alone are sent as they are; names, or ``tag_include_children``, are resolved to ids
    through the tag API (one tag tree per run, from ``source``).
    """
    include: list[int | str] = list(config.get("tag_set_include") or [])
    exclude: list[int | str] = list(config.get("tag_set_exclude") or [])
    if not include and not exclude:
        return {}
    children = bool(config.get("tag_include_children", False))
    needs_tree = children or any(
        isinstance(v, str) and not v.strip().isdigit() for v in (*include, *exclude)
    )
    if needs_tree:
        if source is None:
            msg = "tag_set_include: tag names need the tags stream's tag API, which is missing"
            raise QualysAPIError(msg)
        tree = source.tag_tree()
        include = list(resolve("tag_set_include", include, tree, children=children))
        exclude = list(resolve("tag_set_exclude", exclude, tree, children=children))
    return {
        "use_tags": 1,
        "tag_set_by": "id",
        "tag_set_include": ",".join(str(i) for i in include) or None,
        "tag_set_exclude": ",".join(str(i) for i in exclude) or None,
    }
