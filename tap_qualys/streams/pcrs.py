"""Policy Compliance posture (PCRS): ``pcrs_policies`` -> ``pcrs_policy_host_ids`` ->
``pcrs_posture_info``, from the gateway, in the call order Qualys prescribes (§9).

- ``pcrs_policies``: ``GET /pcrs/2.0/posture/policy/list?lastEvaluationDate=<bookmark>``,
  incremental on ``last_evaluated_date``. It emits every policy it gets, but only **active** ones
  have children: Qualys evaluates no inactive policy, so they have no hosts and no postures.
- ``pcrs_policy_host_ids``: per active policy, ``GET /pcrs/5.0/posture/hostids?policyId=&
  lastScanDate=<window>``; one record ``{policy_id, host_id, subscription_id}`` per host. The ids
  arrive as strings and are emitted as integers (they join to ``hosts.id``). An answer with an
  ``error`` and no ids (an unknown policy) is logged as a warning and yields nothing.
  Hosts that left a policy: see "Removed hosts" below.
- ``pcrs_posture_info``: ``POST /pcrs/5.0/posture/postureInfo`` with the policy's host ids in
  batches of ``pcrs_batch_size``, up to ``pcrs_max_concurrency`` batches in flight, each with a
  ``pcrs_request_timeout`` (1 hour by default, as QualysETL). Batches are fetched on worker
  threads; records are emitted on the main thread in batch order.

Incremental window: the children use the window of their policy list, i.e. the policies'
bookmark from the previous run minus ``pcrs_overlap_hours`` (24 by default; §10: results that
Qualys processes late carry a scan date before the previous window), or ``start_date`` on the
first run. A policy evaluated since then is listed; its hosts scanned since then are listed
(``lastScanDate``); their full posture for the policy is fetched. Children keep no state of
their own (``state_partitioning_keys = []``): the policies' bookmark only moves after the
children of every policy were emitted, so a failed run is repeated. Syncing the children
without selecting ``pcrs_policies`` fetches everything each run, because the window then never
moves.

Removed hosts: ``hostids`` without ``lastScanDate`` lists a policy's current hosts; nothing else
says a host left one (its scope changed, or it was purged). Per policy synced, the host-id stream
asks for that full list too (one more call per policy, ids only) and compares it with the list
kept in its state (``policy_members``, per policy, in ``purges``' compact encoding); each host gone
is a tombstone ``{policy_id, host_id, _sdc_deleted_at}``. Fail closed as the hosts' purge sweep:
a failed call or an answer with an ``error`` deletes nothing and keeps the previous list; more than
``purge_sweep_max_fraction`` gone deletes nothing; the first run of a policy only records.
``purge_sweep: false`` turns it off. The postures of a removed host are not tombstoned: their key
is Qualys' posture ``id``, which the tap would have to keep per host to name them; consumers join
postures to the live ``pcrs_policy_host_ids`` rows instead.

Keys: ``pcrs_policies.id``; ``pcrs_policy_host_ids`` (``policy_id``, ``host_id``);
``pcrs_posture_info.id``, Qualys' posture id, which identifies one (policy, host, control,
instance) evaluation and stays the same across evaluations, so re-evaluated postures upsert.
Dates come out as ISO-8601 UTC; PCRS' ``""`` for a date that never happened becomes null.

Controls: there is no separate controls stream. Every posture record carries its control's
columns, so QualysETL's normalized ``q_pcrs_postureinfo_controls`` table is a query over
``pcrs_posture_info``: :data:`CONTROLS_VIEW_SQL` (SQLite, as loaded by ``target-sqlite``, which
stores objects as JSON text). No control data is fetched twice, and the view is never staler
than the postures.
"""

from __future__ import annotations

import functools
import sys
import time
import typing as t
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import msgspec
from singer_sdk import StreamSchema

from tap_qualys import bookmarks, purges
from tap_qualys.casting import qualys_filter_datetime
from tap_qualys.client import QualysGatewayStream
from tap_qualys.concurrency import OrderedPipeline
from tap_qualys.emit import RecordSpool
from tap_qualys.errors import QualysAPIError
from tap_qualys.naming import GATEWAY_SCHEMAS
from tap_qualys.retries import transient

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from singer_sdk.helpers.types import Context, Record

#: Qualys' keys on file, snake_case top-level names served (see ``naming``).
SCHEMAS = GATEWAY_SCHEMAS
#: "Everything" for the date filters Qualys requires: the first run with no start_date.
EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_BATCH_SIZE = 250
DEFAULT_MAX_CONCURRENCY = 10
#: Qualys' guidance for postureInfo: no more than 15 calls in parallel (§9).
MAX_CONCURRENCY = 15
DEFAULT_POSTURE_TIMEOUT = 3600
#: The host-id stream's state key of each policy's last full host list (see ``member_sweep``).
MEMBERS_STATE_KEY = "policy_members"
#: How far before the bookmark the next window starts (``pcrs_overlap_hours``).
DEFAULT_OVERLAP_HOURS = 24
#: Posture fields that are ids: emitted as integers whether Qualys sends numbers or strings.
POSTURE_ID_FIELDS = ("id", "policyId", "hostId", "controlId", "technologyId", "assetId")
#: One row per (control, technology): the controls table, derived from the postures.
CONTROLS_VIEW_SQL = """
CREATE VIEW IF NOT EXISTS pcrs_posture_controls AS
SELECT control_id,
       technology_id,
       MAX(json_extract(technology, '$.name')) AS technology_name,
       MAX(control_statement) AS control_statement,
       MAX(rationale) AS rationale,
       MAX(remediation) AS remediation,
       MAX(control_reference) AS control_reference,
       MAX(json_extract(criticality, '$.value')) AS criticality_value,
       MAX(json_extract(criticality, '$.label')) AS criticality_label,
       COUNT(*) AS postures,
       SUM(status = 'Failed') AS failed_postures
FROM pcrs_posture_info
GROUP BY control_id, technology_id
"""
#: A fetched postureInfo batch: (batch number, posture records, seconds taken).
FetchedBatch = tuple[int, RecordSpool, float]
#: postureInfo's answer: an array whose elements are left undecoded (``read_postures`` takes
#: them one at a time), or an object (an error envelope), decoded whole.
POSTURES_BODY = msgspec.json.Decoder(list[msgspec.Raw] | dict[str, t.Any])
_POSTURE = msgspec.json.Decoder(dict[str, t.Any])
#: A fetched batch waiting to be emitted stays in memory up to this size, then moves to a
#: temporary file: up to ``pcrs_max_concurrency`` batches (15) wait at once, each tens of MB of
#: JSON at the default ``pcrs_batch_size``.
POSTURE_SPOOL_MEMORY_BYTES = 2 * 2**20


def _check_error_envelope(body: t.Any) -> None:
    """Raise for ``[{"response": {"code", "text"}}]`` answered with HTTP 200.

    That is the shape of PCRS errors (§9); with a 200 it is a server-side failure, not a
    request Qualys refused, so it is retried and, if it persists, reported with its text.
    """
    first = body[0] if isinstance(body, list) and body else body
    if isinstance(first, dict) and isinstance(first.get("response"), dict):
        error = first["response"]
        raise transient(f"HTTP 200 with error {error.get('code')}: {error.get('text')}")


def as_int(value: t.Any) -> t.Any:
    """An id as an integer when it is one (``"689660145"`` -> 689660145), else unchanged."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def as_flag(value: t.Any) -> t.Any:
    """A 0/1 flag (``"locked": 0``) as a boolean, like the VM API's flags; else unchanged."""
    if not isinstance(value, bool) and value in {0, 1, "0", "1"}:
        return bool(int(value))
    return value


@dataclass(frozen=True)
class PolicyList:
    """A validated policy list answer."""

    subscription_id: t.Any
    policies: list[dict[str, t.Any]]


def read_policy_list(body: t.Any) -> PolicyList:
    """``{"subscriptionId": …, "policyList": [...]}``; anything else is retried."""
    _check_error_envelope(body)
    if not isinstance(body, dict) or not isinstance(body.get("policyList", []), list):
        raise transient("policy list answer has no policyList array")
    return PolicyList(as_int(body.get("subscriptionId")), list(body.get("policyList") or []))


def read_host_ids(body: t.Any) -> list[dict[str, t.Any]]:
    """``[{"policyId", "subscriptionId", "hostIds": [...], "error"?}]``; else retried."""
    _check_error_envelope(body)
    entries = [body] if isinstance(body, dict) else body
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise transient("host ids answer is not a list of objects")
    for entry in entries:
        ids = entry.get("hostIds") or []
        if not isinstance(ids, list):
            raise transient(f"hostIds is a JSON {type(ids).__name__}, not an array")
        for host_id in ids:
            if isinstance(host_id, bool) or not str(host_id).strip().isdigit():
                raise transient(f"host id {str(host_id)[:40]!r} is not a number")
    return entries


def read_postures(body: list[msgspec.Raw] | dict[str, t.Any]) -> RecordSpool:
    """The posture records of one batch, spooled: a JSON array of objects; else retried.

    ``body`` as :data:`POSTURES_BODY` decodes it: the array's elements still undecoded. Each is
    decoded, checked and spooled in turn, so the batch is never in memory as Python objects
    (several times its JSON), and a batch with one bad element is retried as a whole, before any
    of it is emitted.
    """
    if not isinstance(body, list):
        _check_error_envelope(body)
        raise transient("postureInfo answer is not a JSON array of posture records")
    spool = RecordSpool(POSTURE_SPOOL_MEMORY_BYTES)
    try:
        for number, raw in enumerate(body):
            try:
                record = _POSTURE.decode(raw)
            except (msgspec.DecodeError, RecursionError) as exc:
                msg = f"postureInfo answer is not a JSON array of posture records: item {number}"
                raise transient(f"{msg}: {exc}") from None
            if number == 0:
                _check_error_envelope([record])
            spool.append(record)
    except BaseException:
        spool.close()
        raise
    return spool


class PcrsPoliciesStream(QualysGatewayStream):
    """Compliance policies; the parent of their host ids and postures."""

    name = "pcrs_policies"
    path = "/pcrs/2.0/posture/policy/list"
    primary_keys = ("id",)
    replication_key = "last_evaluated_date"
    is_sorted = False
    schema = StreamSchema(SCHEMAS)
    sync_note = (
        "the bookmark (max last_evaluated_date) is saved when the stream completes; the "
        "next run starts pcrs_overlap_hours before it"
    )
    record_unit = "policies"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """No window until the sync starts."""
        super().__init__(*args, **kwargs)
        #: This run's lastEvaluationDate; the children's lastScanDate.
        self.window = EPOCH

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        start = self.get_starting_timestamp(context)
        if start is not None and self.get_context_state(context).get("replication_key_value"):
            # Overlap (§10): Qualys processes some hosts' results late, after a run whose
            # window already passed their scan date; re-reading the last pcrs_overlap_hours
            # catches them. Postures upsert on their id, so the overlap costs no duplicates.
            start -= timedelta(
                hours=int(self.config.get("pcrs_overlap_hours", DEFAULT_OVERLAP_HOURS))
            )
        window = qualys_filter_datetime(start) if start is not None else EPOCH
        self.logger.info(
            "%s: GET %s%s lastEvaluationDate=%s", self.name, self.url_base, self.path, window
        )
        self.window = window
        answer = self.gateway_call(
            self.path, read_policy_list, method="GET", params={"lastEvaluationDate": window}
        )
        active = sum(1 for p in answer.policies if is_active(p))
        self.logger.info(
            "%s: %d policies evaluated since %s, %d active (only those have postures)",
            self.name,
            len(answer.policies),
            window,
            active,
        )
        latest = bookmarks.horizon(self.config)
        future = [
            p for p in answer.policies if bookmarks.later_than(p.get("lastEvaluatedDate"), latest)
        ]
        if future:
            # The SDK caps the new bookmark at the run's start; the data is still suspect.
            self.logger.warning(
                bookmarks.future_warning(
                    self.name,
                    f"policy {future[0].get('id')} lastEvaluatedDate",
                    str(future[0]["lastEvaluatedDate"]),
                    "the bookmark is capped at this run's start",
                )
            )
        for policy in answer.policies:
            self.records_emitted += 1
            yield {
                **policy,
                "id": as_int(policy.get("id")),
                "locked": as_flag(policy.get("locked")),
                "subscriptionId": answer.subscription_id,
            }
        self.log_summary()
        for child in self.descendent_streams:
            if isinstance(child, QualysGatewayStream) and child.selected:
                child.log_summary()

    @override
    def generate_child_contexts(
        self, record: Record, context: Context | None
    ) -> Iterable[Context | None]:
        if is_active(record):
            yield {
                "policy_id": record["id"],
                "subscription_id": record["subscription_id"],
                "window": self.window,
            }


def is_active(policy: t.Mapping[str, t.Any]) -> bool:
    """Whether Qualys evaluates the policy (``status`` active)."""
    return str(policy.get("status", "")).lower() == "active"


class PcrsPolicyHostIdsStream(QualysGatewayStream):
    """The hosts each active policy evaluated in the window; hands them to the postures."""

    name = "pcrs_policy_host_ids"
    path = "/pcrs/5.0/posture/hostids"
    parent_stream_type = PcrsPoliciesStream
    state_partitioning_keys: t.ClassVar[list[str]] = []
    primary_keys = ("policy_id", "host_id")
    schema = StreamSchema(SCHEMAS)
    sync_mode = ""
    sync_note = "the hosts of each policy scanned in the policies' window"
    record_unit = "host ids"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Start with no policy in progress."""
        super().__init__(*args, **kwargs)
        self._host_ids: list[int] = []
        self._last_host: int | None = None

    @property
    def postures(self) -> PcrsPostureInfoStream | None:
        """The posture stream, when it is to be synced."""
        for child in self.child_streams:
            if isinstance(child, PcrsPostureInfoStream) and child.selected:
                return child
        return None

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        if not context:
            return
        policy_id = context["policy_id"]
        entries = self.gateway_call(
            self.path,
            read_host_ids,
            method="GET",
            params={"policyId": policy_id, "lastScanDate": context["window"]},
        )
        host_ids: dict[int, None] = {}
        for entry in entries:
            ids = entry.get("hostIds") or []
            if entry.get("error") and not ids:
                self.logger.warning(
                    "%s: policy %s: Qualys answered %r and no host ids; skipping the policy",
                    self.name,
                    policy_id,
                    entry["error"],
                )
                continue
            host_ids.update(dict.fromkeys(int(str(h).strip()) for h in ids))
        self.logger.info(
            "%s: policy %s: %s hosts scanned since %s",
            self.name,
            policy_id,
            f"{len(host_ids):,}",
            context["window"],
        )
        # Built with the column names: the stream maps' filter below sees what the targets see.
        records = [
            {
                "policy_id": policy_id,
                "host_id": host_id,
                "subscription_id": context["subscription_id"],
            }
            for host_id in host_ids
        ]
        # The SDK syncs a record's children only when it passes the stream maps' __filter__;
        # the postures of the policy travel with its last host that passes. A host filtered
        # out is left out of postureInfo too (a filter on host ids means "not these hosts"),
        # and the other hosts' postures are never lost with it.
        passing = [r["host_id"] for r in records if self.passes_filter(r)]
        self._host_ids = passing
        self._last_host = passing[-1] if passing else None
        for record in records:
            self.records_emitted += 1
            yield record
        yield from self.member_sweep(policy_id)

    def member_sweep(self, policy_id: int) -> Iterator[Record]:
        """Tombstones of the hosts that left ``policy_id`` since the last run (see the module).

        Runs after the policy's live records (and so after its postures' context). Any failure
        deletes nothing and keeps the previous list, so the next run compares again.
        """
        config = self.config
        if not config.get("purge_sweep", True):
            return
        if not self.mask.get(("properties", "_sdc_deleted_at"), True):
            # Without it a tombstone would reach the target as a live row: no sweep.
            self.logger.warning(
                "%s: removed-host sweep skipped: the catalog deselects _sdc_deleted_at",
                self.name,
            )
            return
        label = f"{self.name}: policy {policy_id}: removed-host sweep"
        try:
            entries = self.gateway_call(
                self.path, read_host_ids, method="GET", params={"policyId": policy_id}
            )
        except QualysAPIError as exc:
            self.logger.warning("%s failed, no host marked removed this run: %s", label, exc)
            return
        current: set[int] = set()
        for entry in entries:
            if entry.get("error") or as_int(entry.get("policyId")) != policy_id:
                # An error next to ids may be a partial list: only a clean answer is compared.
                self.logger.warning(
                    "%s: Qualys answered %r for policy %r; no host marked removed this run",
                    label,
                    entry.get("error"),
                    entry.get("policyId"),
                )
                return
            current.update(int(str(h).strip()) for h in entry.get("hostIds") or [])
        kept: dict[str, t.Any] = self.stream_state.setdefault(MEMBERS_STATE_KEY, {})
        swept_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        verdict = purges.judge(
            kept.get(str(policy_id)),
            sorted(current),
            scope={"policy_id": policy_id},
            swept_at=swept_at,
            max_fraction=float(config.get("purge_sweep_max_fraction", purges.DEFAULT_MAX_FRACTION)),
            label=label,
            gone="removed",
        )
        log = self.logger.warning if verdict.refused or verdict.warn else self.logger.info
        log("%s", verdict.message)
        for host_id in verdict.vanished:
            self.records_emitted += 1
            yield {"policy_id": policy_id, "host_id": host_id, "_sdc_deleted_at": swept_at}
        kept[str(policy_id)] = verdict.state
        self.state_manager.is_flushed = False

    @override
    def generate_child_contexts(
        self, record: Record, context: Context | None
    ) -> Iterable[Context | None]:
        # One posture context per policy, after its last host record: postureInfo needs the
        # whole id list to batch it. The ids travel through queue_policy, not the context,
        # which the SDK copies into its metric log lines.
        postures = self.postures
        if record.get("_sdc_deleted_at"):
            return  # a tombstone: no postures to fetch
        if postures is not None and context and record["host_id"] == self._last_host:
            yield postures.queue_policy(context, self._host_ids)


class PcrsPostureInfoStream(QualysGatewayStream):
    """Posture records: one per policy, host, control and instance evaluated."""

    name = "pcrs_posture_info"
    path = "/pcrs/5.0/posture/postureInfo"
    parent_stream_type = PcrsPolicyHostIdsStream
    state_partitioning_keys: t.ClassVar[list[str]] = []
    primary_keys = ("id",)
    schema = StreamSchema(SCHEMAS)
    sync_mode = ""
    sync_note = "the postures of each policy's hosts, pcrs_batch_size hosts per request"
    record_unit = "postures"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Start with no queued policy."""
        super().__init__(*args, **kwargs)
        self._queued: dict[t.Any, list[int]] = {}
        self._policies = 0

    def queue_policy(self, context: Context, host_ids: list[int]) -> Context:
        """Take a policy's host ids from the parent; return the child context naming it."""
        self._queued[context["policy_id"]] = list(host_ids)
        return {"policy_id": context["policy_id"], "subscription_id": context["subscription_id"]}

    @property
    def batch_size(self) -> int:
        """Host ids per postureInfo call."""
        return int(self.config.get("pcrs_batch_size", DEFAULT_BATCH_SIZE))

    @property
    def max_concurrency(self) -> int:
        """postureInfo calls in flight at once, never above Qualys' 15."""
        wanted = int(self.config.get("pcrs_max_concurrency", DEFAULT_MAX_CONCURRENCY))
        return max(1, min(wanted, MAX_CONCURRENCY))

    def posture_params(self) -> dict[str, int]:
        """The flags of every postureInfo call."""
        return {
            "evidenceRequired": int(bool(self.config.get("pcrs_evidence_required", False))),
            "compressionRequired": int(bool(self.config.get("pcrs_compression_required", True))),
        }

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        if not context or context["policy_id"] not in self._queued:
            return
        policy_id = context["policy_id"]
        host_ids = self._queued.pop(policy_id)
        size = self.batch_size
        batches = [host_ids[i : i + size] for i in range(0, len(host_ids), size)]
        self._policies += 1
        if self._policies == 1:
            self.logger.info(
                "%s: POST %s%s %s, %d hosts per batch, %d batches in parallel",
                self.name,
                self.url_base,
                self.path,
                self.posture_params(),
                size,
                self.max_concurrency,
            )
        concurrency = self.max_concurrency
        # The window is the number of batches held at once, running or finished and waiting:
        # one per worker keeps memory at `concurrency` batches of postures.
        with OrderedPipeline[FetchedBatch](
            workers=concurrency, window=lambda: concurrency
        ) as pipeline:
            for number, batch in enumerate(batches, 1):
                body = [
                    {
                        "policyId": str(policy_id),
                        "subscriptionId": str(context["subscription_id"]),
                        "hostIds": [str(h) for h in batch],
                    }
                ]
                ready = pipeline.submit(functools.partial(self._fetch_batch, number, body))
                yield from self._emit(policy_id, len(batches), ready)
            yield from self._emit(policy_id, len(batches), pipeline.drain())

    def _fetch_batch(self, number: int, body: list[dict[str, t.Any]]) -> FetchedBatch:
        """One postureInfo call (on a worker thread)."""
        started = time.monotonic()
        records = self.gateway_call(
            self.path,
            read_postures,
            params=self.posture_params(),
            body=body,
            timeout=float(self.config.get("pcrs_request_timeout", DEFAULT_POSTURE_TIMEOUT)),
            decoder=POSTURES_BODY,
        )
        return number, records, time.monotonic() - started

    def _emit(
        self,
        policy_id: t.Any,
        total: int,
        results: Iterable[FetchedBatch],
    ) -> Iterator[Record]:
        for number, records, elapsed in results:
            self.logger.info(
                "%s: policy %s batch %d/%d: %s postures, %.1f s",
                self.name,
                policy_id,
                number,
                total,
                f"{records.count:,}",
                elapsed,
            )
            for record in records:
                for field in POSTURE_ID_FIELDS:
                    if field in record:
                        record[field] = as_int(record[field])
                self.records_emitted += 1
                yield record
