"""The tags stream and tag-name resolution, against the real simulator over HTTP."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from qualys_simulator.testing import SimulatorProcess
from tap_qualys.errors import QualysAPIError
from tap_qualys.naming import snake_case
from tap_qualys.streams.tags import Tag, resolve
from tests.conftest import tap_config
from tests.gateway_support import inject, run_cli
from tests.test_vm_streams import keyed, run_tap, vm_tap

QPS_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?><ServiceResponse><responseCode>{code}'
    "</responseCode><responseErrorDetails><errorMessage>{message}</errorMessage>"
    "</responseErrorDetails></ServiceResponse>"
)


@pytest.fixture
def world() -> t.Iterator[SimulatorProcess]:
    """A simulator of each test's own: clocks move, faults and injections are set."""
    with SimulatorProcess(hosts=30, seed=3) as sim:
        yield sim


def truth(sim: SimulatorProcess) -> dict[tuple[t.Any, ...], dict[str, t.Any]]:
    return keyed(({snake_case(k): v for k, v in r.items()} for r in sim.ground_truth("tags")), "id")


def error_lines(stderr: str) -> list[str]:
    """The ERROR lines but the SDK's own "An unhandled error occurred while syncing" one."""
    return [
        line for line in stderr.splitlines() if "ERROR" in line and "unhandled error" not in line
    ]


def tag_calls(sim: SimulatorProcess) -> int:
    return int(sim.stats()["requests"].get("tag_search", 0))


def test_full_sync_pages_and_equals_ground_truth(world: SimulatorProcess) -> None:
    records, states = run_tap(tap_config(world, tags_page_size=4), streams=["tags"])
    assert keyed(records["tags"], "id") == truth(world)
    assert tag_calls(world) == -(-len(truth(world)) // 4)
    bookmark = states[-1]["bookmarks"]["tags"]["replication_key_value"]
    assert bookmark == max(r["modified"] for r in records["tags"])


def test_incremental_after_an_advance_reads_only_what_changed(world: SimulatorProcess) -> None:
    config = tap_config(world)
    first, states = run_tap(config, streams=["tags"])
    world.advance(86400)
    second, _ = run_tap(config, state=states[-1], streams=["tags"])
    before = keyed(first["tags"], "id")
    after = truth(world)
    changed = {key for key, record in after.items() if before.get(key) != record}
    assert len(changed) == 2  # one rule edited, one tag added (the simulator's advance)
    # Besides those, only the tag(s) at the old bookmark (a second of overlap) are read again.
    bookmark = states[-1]["bookmarks"]["tags"]["replication_key_value"]
    again = {key for key, record in before.items() if record["modified"] == bookmark}
    assert set(keyed(second["tags"], "id")) == changed | again
    merged = {**before, **keyed(second["tags"], "id")}
    assert merged == after


def test_tag_names_and_children_resolve_once_per_run(world: SimulatorProcess) -> None:
    config = tap_config(
        world,
        tag_set_include=["production"],
        tag_set_exclude=[7100012, "Zone: AMER"],
        tag_include_children=True,
    )
    records, _ = run_tap(config, streams=["hosts", "host_detections"])
    # One call (one page) resolved the names for both streams and every detection batch.
    assert tag_calls(world) == 1
    tree = truth(world)
    production = next(k[0] for k, r in tree.items() if r["name"] == "Production")
    wanted: set[int] = {production}
    while True:  # every descendant of Production
        more = {k[0] for k, r in tree.items() if r["parent_tag_id"] in wanted} - wanted
        if not more:
            break
        wanted |= more
    assert len(wanted) == 4
    excluded = {7100012, 7100008}
    # The hosts synced are exactly those an unfiltered sync shows with the tags asked for.
    everything, _ = run_tap(tap_config(world), streams=["hosts"])

    def tag_ids(host: dict[str, t.Any]) -> set[int]:
        return {tag["tag_id"] for tag in host["tags"] or []}

    expected = {
        h["id"] for h in everything["hosts"] if tag_ids(h) & wanted and not tag_ids(h) & excluded
    }
    assert expected
    assert {h["id"] for h in records["hosts"]} == expected
    assert {d["host_id"] for d in records["host_detections"]} <= expected
    params = vm_tap(config, streams=["hosts"]).streams["hosts"].qualys_params(None)
    assert set(map(int, params["tag_set_include"].split(","))) == wanted
    assert set(map(int, params["tag_set_exclude"].split(","))) == excluded


def test_ids_alone_need_no_tag_call(world: SimulatorProcess) -> None:
    config = tap_config(world, tag_set_include=[7100002, "7100003"])
    params = vm_tap(config, streams=["hosts"]).streams["hosts"].qualys_params(None)
    assert params["tag_set_include"] == "7100002,7100003"
    assert tag_calls(world) == 0


def test_unknown_tag_name_is_one_line_with_the_closest_name(
    world: SimulatorProcess, tmp_path: Path
) -> None:
    config = tap_config(world, tag_set_include=["Prodution"])
    with pytest.raises(QualysAPIError, match=r"did you mean 'Production'\?"):
        run_tap(config, streams=["hosts"])
    result = run_cli(tmp_path, config, ["hosts"])
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1
    assert "tag_set_include: no asset tag is named 'Prodution'" in errors[0]
    assert "Traceback" not in result.stderr


def test_resolve_rules() -> None:
    tree = {
        1: Tag(1, "Env", None),
        2: Tag(2, "Prod", 1),
        3: Tag(3, "PCI", 2),
        4: Tag(4, "Owners", None),
        5: Tag(5, "prod", 4),
    }
    assert resolve("s", ["Prod"], tree, children=False) == [2]
    assert resolve("s", ["PROD"], tree, children=False) == [2, 5]  # case-folded: both
    with_children = resolve("s", ["Env", 4], tree, children=True)
    assert with_children[:2] == [1, 4]  # the tags asked for first, then their descendants
    assert sorted(with_children) == [1, 2, 3, 4, 5]
    with pytest.raises(QualysAPIError, match="did you mean 'Owners'"):
        resolve("s", ["owner"], tree, children=False)
    with pytest.raises(QualysAPIError, match=r"named 'zzz'$"):
        resolve("s", ["zzz"], tree, children=False)


def test_bad_credentials_fail_at_once_in_one_line(world: SimulatorProcess, tmp_path: Path) -> None:
    config = tap_config(world, password="wrong", max_retries=5)
    result = run_cli(tmp_path, config, ["tags"])
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1
    assert "tags: /qps/rest/2.0/search/am/tag failed: HTTP 401 INVALID_CREDENTIALS" in errors[0]
    assert "check username and password" in errors[0]
    assert "wrong" not in result.stderr
    assert tag_calls(world) == 1  # not retried


@pytest.mark.parametrize(
    ("status", "code", "fragment"),
    [
        (403, "UNAUTHORIZED", r"Asset Management \(tagging\) permission"),
        (400, "INVALID_REQUEST", "INVALID_REQUEST: bad"),
    ],
)
def test_permission_and_request_errors_are_fatal(
    world: SimulatorProcess, status: int, code: str, fragment: str
) -> None:
    body = QPS_ERROR.format(code=code, message="bad").encode()
    inject(world, "tag_search", body, 1, status=status, content_type="application/xml")
    with pytest.raises(QualysAPIError, match=fragment):
        run_tap(tap_config(world), streams=["tags"])
    assert tag_calls(world) == 1


def test_transient_errors_are_retried(world: SimulatorProcess) -> None:
    body = QPS_ERROR.format(code="INTERNAL_ERROR", message="try later").encode()
    inject(world, "tag_search", body, 1, content_type="application/xml")  # in an HTTP 200
    world.configure(faults={"http_503": 1.0, "drop": 1.0}, fault_budget={"http_503": 1, "drop": 1})
    records, _ = run_tap(tap_config(world), streams=["tags"])
    assert keyed(records["tags"], "id") == truth(world)
    assert tag_calls(world) == 4  # INTERNAL_ERROR, 503, dropped body, then the good page


def test_hostile_and_broken_pages(world: SimulatorProcess) -> None:
    """An entity-declaring DTD is refused unparsed; a page cut short is fetched again."""
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<ServiceResponse><responseCode>SUCCESS</responseCode><data><Tag><id>1</id>"
        b"<name>&b;</name></Tag></data></ServiceResponse>"
    )
    inject(world, "tag_search", bomb, 1, content_type="application/xml")
    with pytest.raises(QualysAPIError, match="internal DTD subset"):
        run_tap(tap_config(world), streams=["tags"])
    page = world.admin_get("/admin/stats")  # the refusal was not retried
    assert page["requests"]["tag_search"] == 1
    cut = (
        b'<?xml version="1.0"?><ServiceResponse><responseCode>SUCCESS</responseCode>'
        b"<count>1</count><hasMoreRecords>false</hasMoreRecords><data><Tag><id>1</id>"
    )
    inject(world, "tag_search", cut, 1, content_type="application/xml")
    records, _ = run_tap(tap_config(world), streams=["tags"])
    assert keyed(records["tags"], "id") == truth(world)
    assert tag_calls(world) == 3
