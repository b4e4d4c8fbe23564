"""Pagers that must end: the stalled-page bound on VM API truncation and CSAM cursors; next-page
URLs that cannot be followed; the documented envelope quirks."""

from __future__ import annotations

import logging
import re
import typing as t
from datetime import datetime, timezone

import pytest

from qualys_simulator.testing import SimulatorProcess
from tap_qualys.client import MAX_STALLED_PAGES, FetchedPage, TruncationPaginator
from tap_qualys.emit import RecordSpool
from tap_qualys.errors import QualysAPIError
from tap_qualys.streams.csam import CsamAssetPaginator, CsamPage
from tests.gateway_support import gateway_config, run_tap

BASE = "https://qualysapi.qualys.com/api/5.0/fo/asset/host/?action=list&truncation_limit=2"


def vm_page(id_min: int, max_key: int | None) -> FetchedPage:
    return FetchedPage(
        records=RecordSpool(),
        next_url=f"{BASE}&id_min={id_min}",
        response_datetime=None,
        elapsed=0,
        extracted=datetime.now(timezone.utc),
        max_key=max_key,
    )


def test_empty_truncated_pages_end_after_the_bound() -> None:
    paginator = TruncationPaginator(logging.getLogger("test"), "hosts: /api/5.0/fo/asset/host/")
    for n in range(1, MAX_STALLED_PAGES):
        paginator.advance(vm_page(n, None))
    with pytest.raises(QualysAPIError, match=f"hosts: .* {MAX_STALLED_PAGES} pages in a row"):
        paginator.advance(vm_page(MAX_STALLED_PAGES, None))


def test_pages_of_records_already_seen_count_as_stalled() -> None:
    paginator = TruncationPaginator(logging.getLogger("test"))
    paginator.advance(vm_page(101, 100))
    for n in range(1, MAX_STALLED_PAGES):
        paginator.advance(vm_page(101 + n, 100))  # the same hosts again, the cursor creeping
    with pytest.raises(QualysAPIError, match="brought no new record"):
        paginator.advance(vm_page(200, 100))


def test_a_new_record_resets_the_count() -> None:
    paginator = TruncationPaginator(logging.getLogger("test"))
    id_min = 0
    for round_ in range(3):
        for _ in range(MAX_STALLED_PAGES - 1):
            id_min += 1
            paginator.advance(vm_page(id_min, None))
        id_min += 1
        paginator.advance(vm_page(id_min, 10_000 + round_))
    assert not paginator.finished


def csam_page(last_seen: int, *asset_ids: int) -> CsamPage:
    return CsamPage([{"assetId": i} for i in asset_ids], True, last_seen)


def test_a_csam_cursor_creeping_over_empty_pages_ends() -> None:
    paginator = CsamAssetPaginator(0)
    for n in range(1, MAX_STALLED_PAGES):
        paginator.advance(csam_page(n))
    with pytest.raises(QualysAPIError, match=r"csam_assets: .*lastSeenAssetId=10\b"):
        paginator.advance(csam_page(MAX_STALLED_PAGES))


def test_csam_pages_of_assets_already_read_count_as_stalled() -> None:
    paginator = CsamAssetPaginator(0)
    paginator.advance(csam_page(5, 1, 2, 5))
    for n in range(1, MAX_STALLED_PAGES):
        paginator.advance(csam_page(5 + n, 1, 2, 5))
    with pytest.raises(QualysAPIError, match="pages in a row"):
        paginator.advance(csam_page(100, 3))


def test_a_repeated_csam_cursor_fails_at_once() -> None:
    paginator = CsamAssetPaginator(0)
    paginator.advance(csam_page(5, 1, 5))
    with pytest.raises(QualysAPIError, match="lastSeenAssetId went from 5 to 5"):
        paginator.advance(csam_page(5, 6))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://x/api/5.0/fo/asset/host/?action=list&ids=1", "has no id_min"),
        ("https://x/?action=list&id_min=abc", "has id_min='abc'"),
    ],
)
def test_truncation_paginator_refuses_unusable_urls(url: str, message: str) -> None:
    paginator = TruncationPaginator(logger=t.cast("t.Any", None), label="hosts: /p")
    page = type("Page", (), {"next_url": url})()
    with pytest.raises(QualysAPIError, match=re.escape(message)):
        paginator.advance(page)
    assert "action=list" not in message


def test_documented_envelope_quirks_lose_nothing() -> None:
    # §4: truncation URLs that carry parameters we never sent; §8: hasMore as the strings "1"/"0",
    # and SUCCESS pages with hasMore=1 but no lastSeenAssetId (retried, never taken as the end).
    with SimulatorProcess(hosts=30, seed=3, kb_page_size=200) as sim:
        sim.configure(
            csam_has_more_as_string=True,
            warning_url_extra_params=True,
            faults={"csam_no_cursor": 0.3},
        )
        config = gateway_config(sim, truncation_limit=7, csam_page_size=10)
        records, _ = run_tap(config, ["csam_assets", "hosts", "knowledge_base"])
        assert sim.stats()["faults"].get("csam_no_cursor", 0) > 0
        for stream, key, truth_key in (
            ("csam_assets", "asset_id", "assetId"),
            ("hosts", "id", "ID"),
            ("knowledge_base", "qid", "QID"),
        ):
            loaded = [record[key] for record in records[stream]]
            assert sorted(loaded) == sorted(r[truth_key] for r in sim.ground_truth(stream)), stream
        # Following the URL verbatim would have sent details=None: hosts without their OS.
        assert all(record["os"] for record in records["hosts"])
