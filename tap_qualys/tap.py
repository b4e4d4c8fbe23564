"""The tap-qualys Tap: its settings, its streams, and its command line (the checks JSON Schema
cannot express, the state file, one-line errors for the user)."""

from __future__ import annotations

import sys
import typing as t

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from tap_qualys import bookmarks, naming, signals
from tap_qualys.casting import parse_utc
from tap_qualys.concurrency import limit_malloc_arenas
from tap_qualys.emit import SignalsTap, SingerWriter
from tap_qualys.errors import CastError, PlatformError, QualysAPIError, StateError
from tap_qualys.meltano_numbers import numbers_from_strings
from tap_qualys.platforms import PLATFORMS, resolve_urls
from tap_qualys.streams import csam, pcrs, tags, vm

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from singer_sdk.streams import Stream

#: A tag in tag_set_include/exclude: its id, or its name.
TAG_ID_OR_NAME = th.CustomType({"type": ["integer", "string"]})

# --- Connection ---------------------------------------------------------------------------------
CONNECTION_SETTINGS = [
    th.Property(
        "username",
        th.StringType,
        required=True,
        title="Username",
        description="Qualys API user. Its third character also names the platform.",
    ),
    th.Property(
        "password",
        th.StringType,
        required=True,
        secret=True,
        title="Password",
        description="Password of the Qualys API user.",
    ),
    th.Property(
        "platform",
        th.StringType,
        title="Platform",
        description=(
            "The Qualys platform (pod) of the subscription, e.g. US_01, EU_02. "
            f"One of {', '.join(PLATFORMS)}. Default: taken from the username."
        ),
    ),
    th.Property(
        "api_server",
        th.URIType,
        title="API server",
        description=(
            "VM API server URL (https://qualysapi...), for a proxy or a platform not in the "
            "table. Overrides platform. The web UI address (qualysguard...) is not the API."
        ),
    ),
    th.Property(
        "gateway_url",
        th.URIType,
        title="Gateway URL",
        description="Qualys gateway URL (CSAM, PCRS). Default: the platform's gateway.",
    ),
    th.Property(
        "request_timeout",
        th.IntegerType(minimum=1),
        default=1800,
        title="Request timeout",
        description=(
            "Seconds to wait for the server to send more data before the request is retried. "
            "Large detection batches can take minutes to start."
        ),
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0),
        default=8,
        title="Max retries",
        description="Retries per request after 409/5xx/dropped connections before failing.",
    ),
    th.Property(
        "retry_backoff_seconds",
        th.NumberType(minimum=0),
        default=2.0,
        title="Retry backoff",
        description=(
            "First wait before a retry, doubled on each further retry (with jitter). Rate "
            "limits (409/1965) always wait exactly what Qualys says instead."
        ),
    ),
    th.Property(
        "max_rate_limit_wait",
        th.IntegerType(minimum=0),
        default=3600,
        title="Max rate-limit wait",
        description=(
            "Longest wait, in seconds, for a rate limit (409/1965, or a gateway 429) before the "
            "run fails instead. Qualys can ask for waits of up to a day; raise this to wait "
            "them out."
        ),
    ),
    th.Property(
        "max_concurrency",
        th.IntegerType(minimum=1),
        title="Max concurrency",
        description=(
            "Most detection requests to run in parallel. Default: what Qualys allows "
            "(X-Concurrency-Limit-Limit) minus concurrency_headroom."
        ),
    ),
    th.Property(
        "concurrency_headroom",
        th.IntegerType(minimum=0),
        default=0,
        title="Concurrency headroom",
        description="Parallel-call slots to leave free for other tools sharing the subscription.",
    ),
    th.Property(
        "verify_ssl",
        th.BooleanType,
        default=True,
        title="Verify TLS",
        description="Verify the server's TLS certificate.",
    ),
    th.Property(
        "ca_bundle",
        th.StringType,
        title="CA bundle",
        description="Path to a PEM file of CA certificates to trust (e.g. a TLS proxy's CA).",
    ),
    th.Property(
        "max_clock_skew_minutes",
        th.IntegerType(minimum=0),
        default=bookmarks.DEFAULT_MAX_CLOCK_SKEW_MINUTES,
        title="Max clock skew",
        description=(
            "Minutes Qualys' clock may run ahead of this machine's. A server time or record "
            "date further in the future never becomes a bookmark (a warning names it), and a "
            "stored bookmark further in the future stops the run: it would skip every change "
            "until then."
        ),
    ),
]

# --- What to extract ----------------------------------------------------------------------------
VM_SETTINGS = [
    th.Property(
        "start_date",
        th.DateTimeType,
        title="Start date",
        description=(
            "First run only: hosts processed and KnowledgeBase entries modified since then. "
            "Default: everything."
        ),
    ),
    th.Property(
        "status",
        th.ArrayType(th.StringType(allowed_values=list(vm.DEFAULT_STATUSES))),
        default=list(vm.DEFAULT_STATUSES),
        title="Detection statuses",
        description=(
            "Detection statuses to extract. Keep Fixed so remediated findings close downstream."
        ),
    ),
    th.Property(
        "show_results",
        th.BooleanType,
        default=True,
        title="Show results",
        description="Include each detection's RESULTS text (large).",
    ),
    th.Property(
        "show_igs",
        th.BooleanType,
        default=True,
        title="Show information gathered",
        description="Include Information Gathered detections (Qualys leaves them out by default).",
    ),
    th.Property(
        "show_qds",
        th.BooleanType,
        default=True,
        title="Show QDS",
        description="Include the Qualys Detection Score. Consultant subscriptions reject it.",
    ),
    th.Property(
        "show_qds_factors",
        th.BooleanType,
        default=True,
        title="Show QDS factors",
        description="Include the factors behind each QDS.",
    ),
    th.Property(
        "include_ignored",
        th.BooleanType,
        default=True,
        title="Include ignored detections",
        description="Include detections a user marked as ignored (include_ignored=1).",
    ),
    th.Property(
        "include_disabled",
        th.BooleanType,
        default=True,
        title="Include disabled detections",
        description="Include detections of disabled QIDs (include_disabled=1).",
    ),
    th.Property(
        "show_trurisk",
        th.BooleanType,
        default=True,
        title="Show TruRisk",
        description=(
            "Include each host's TruRisk score and its factors (show_trurisk=1, "
            "show_trurisk_factors=1), and the older Asset Risk Score and its factors (show_ars=1, "
            "show_ars_factors=1). Consultant subscriptions reject these with 1901: turn it off "
            "there."
        ),
    ),
    th.Property(
        "show_tags",
        th.BooleanType,
        default=True,
        title="Show tags",
        description="Include asset tags on hosts (and on detections, see detection_host_tags).",
    ),
    th.Property(
        "detection_host_tags",
        th.BooleanType,
        default=False,
        title="Tags on detections",
        description=(
            "Also put each host's asset tags on every one of its detections (host_tags; sends "
            "show_tags=1 to Host List Detection). The hosts stream has them already; this repeats "
            "them per detection, which makes detection output much larger."
        ),
    ),
    th.Property(
        "show_arf_data",
        th.BooleanType,
        default=True,
        title="Show ARF data",
        description=(
            "Include whether a detection affects the running kernel, a running service or an "
            "exploitable configuration (show_arf_data=1: the affect_* fields)."
        ),
    ),
    th.Property(
        "mitre_attack_details",
        th.BooleanType,
        default=True,
        title="MITRE ATT&CK details",
        description=(
            "Include each detection's MITRE ATT&CK tactic and technique (mitre_attack_details=1: "
            "the mitre_* fields)."
        ),
    ),
    th.Property(
        "show_cloud_metadata",
        th.BooleanType,
        default=True,
        title="Show cloud metadata",
        description="Include cloud provider tags and metadata on hosts (show_cloud_tags, "
        "host_metadata=all).",
    ),
    th.Property(
        "tag_set_include",
        th.ArrayType(TAG_ID_OR_NAME),
        title="Include tags",
        description=(
            "Only hosts with any of these asset tags: ids or names (sends use_tags=1). Names "
            "are resolved to ids once per run through the tag API."
        ),
    ),
    th.Property(
        "tag_set_exclude",
        th.ArrayType(TAG_ID_OR_NAME),
        title="Exclude tags",
        description=(
            "Leave out hosts with any of these asset tags: ids or names (sends use_tags=1)."
        ),
    ),
    th.Property(
        "tag_include_children",
        th.BooleanType,
        default=False,
        title="Include child tags",
        description=(
            "Also include (or exclude) every descendant of each tag in tag_set_include and "
            "tag_set_exclude, read from the tag API."
        ),
    ),
    th.Property(
        "tags_page_size",
        th.IntegerType(minimum=1, maximum=tags.MAX_PAGE_SIZE),
        default=tags.MAX_PAGE_SIZE,
        title="Tags page size",
        description="Tags per tag API page (limitResults; Qualys allows at most 1000).",
    ),
    th.Property(
        "host_batch_size",
        th.IntegerType(minimum=1, maximum=10000),
        default=1000,
        title="Host batch size",
        description="Host ids per Host List Detection request.",
    ),
    th.Property(
        "id_min",
        th.IntegerType(minimum=0),
        title="Host id minimum",
        description="Only hosts with ids from this one; with id_max, shards hosts across runs.",
    ),
    th.Property(
        "id_max",
        th.IntegerType(minimum=0),
        title="Host id maximum",
        description="Only hosts with ids up to this one.",
    ),
    th.Property(
        "truncation_limit",
        th.IntegerType(minimum=1, maximum=1000000),
        default=1000,
        title="Truncation limit",
        description="Hosts per Host List page.",
    ),
    th.Property(
        "hosts_overlap_minutes",
        th.IntegerType(minimum=0),
        default=60,
        title="Hosts overlap",
        description=(
            "Minutes before the last run's start at which the next hosts window begins, so "
            "results processed while a run started are not missed."
        ),
    ),
    th.Property(
        "purge_sweep",
        th.BooleanType,
        default=True,
        title="Purge sweep",
        description=(
            "Compare the full list of host ids (Host List details=None, ids only) with the "
            "previous run's and emit a tombstone (_sdc_deleted_at) for every host Qualys purged."
        ),
    ),
    th.Property(
        "purge_sweep_interval_hours",
        th.NumberType(minimum=0),
        default=0,
        title="Purge sweep interval",
        description=("Hours (on Qualys' clock) between two purge sweeps; 0 sweeps on every run."),
    ),
    th.Property(
        "purge_sweep_max_fraction",
        th.NumberType(minimum=0, maximum=1),
        default=0.5,
        title="Purge sweep maximum fraction",
        description=(
            "A sweep that finds more than this share of the previously seen hosts gone deletes "
            "nothing and warns (an empty or wrong answer looks like a mass purge); 1 allows any."
        ),
    ),
    th.Property(
        "kb_overlap_days",
        th.IntegerType(minimum=0),
        default=30,
        title="KnowledgeBase overlap",
        description="Days before the KnowledgeBase bookmark at which the next run starts.",
    ),
    th.Property(
        "user_agent",
        th.StringType,
        title="User agent",
        description="User-Agent header. Default: tap-qualys/<version>.",
    ),
]

#: Every setting, in the order --about shows them. Other stream families append theirs.
SETTINGS = [*CONNECTION_SETTINGS, *VM_SETTINGS]

#: Stream classes, parents before their children.
STREAM_TYPES: list[type[Stream]] = [
    vm.KnowledgeBaseStream,
    vm.HostsStream,
    vm.HostDetectionsStream,
    tags.TagsStream,
]

# --- CSAM and Policy Compliance (gateway) -------------------------------------------------------
GATEWAY_SETTINGS = [
    th.Property(
        "token_refresh_margin",
        th.IntegerType(minimum=0),
        default=300,
        title="Token refresh margin",
        description=(
            "Seconds before the gateway JWT expires (it lives about 4 hours) at which a new one "
            "is obtained. A 401 also renews it once."
        ),
    ),
    th.Property(
        "csam_page_size",
        th.IntegerType(minimum=1, maximum=csam.MAX_PAGE_SIZE),
        default=csam.MAX_PAGE_SIZE,
        title="CSAM page size",
        description="Assets per CSAM search page (pageSize); 300 is the documented maximum.",
    ),
    th.Property(
        "csam_include_fields",
        th.ArrayType(th.StringType),
        title="CSAM include fields",
        description=(
            "Only these top-level asset fields (includeFields), as columns (host_id, "
            "software_list_data) or as Qualys names them (hostId); the others come as null. "
            "asset_id and last_modified_date are always added. Default: every field."
        ),
    ),
    th.Property(
        "csam_tag_filter",
        th.StringType,
        title="CSAM tag filter",
        description="Only assets carrying the asset tag with this name (filter tags.name EQUALS).",
    ),
    th.Property(
        "csam_overlap_minutes",
        th.IntegerType(minimum=0),
        default=csam.DEFAULT_OVERLAP_MINUTES,
        title="CSAM overlap",
        description=(
            "Minutes before the CSAM bookmark at which the next run starts, so assets whose "
            "change Qualys indexed late, or that changed while a run paged past them, are not "
            "missed."
        ),
    ),
    th.Property(
        "pcrs_batch_size",
        th.IntegerType(minimum=1, maximum=1000),
        default=pcrs.DEFAULT_BATCH_SIZE,
        title="PCRS batch size",
        description="Host ids per postureInfo request (QualysETL uses 250-300).",
    ),
    th.Property(
        "pcrs_max_concurrency",
        th.IntegerType(minimum=1, maximum=pcrs.MAX_CONCURRENCY),
        default=pcrs.DEFAULT_MAX_CONCURRENCY,
        title="PCRS max concurrency",
        description="postureInfo requests in parallel; Qualys advises at most 15.",
    ),
    th.Property(
        "pcrs_evidence_required",
        th.BooleanType,
        default=False,
        title="PCRS evidence",
        description="Include each posture's evidence (evidenceRequired=1); much larger answers.",
    ),
    th.Property(
        "pcrs_compression_required",
        th.BooleanType,
        default=True,
        title="PCRS compression",
        description="Ask for gzip-compressed posture answers (compressionRequired=1).",
    ),
    th.Property(
        "pcrs_overlap_hours",
        th.IntegerType(minimum=0),
        default=pcrs.DEFAULT_OVERLAP_HOURS,
        title="PCRS overlap",
        description=(
            "Hours before the policies' bookmark at which the next PCRS window starts "
            "(lastEvaluationDate, lastScanDate), so hosts whose compliance results Qualys "
            "processed late are not missed."
        ),
    ),
    th.Property(
        "pcrs_request_timeout",
        th.IntegerType(minimum=1),
        default=pcrs.DEFAULT_POSTURE_TIMEOUT,
        title="PCRS request timeout",
        description=(
            "Seconds to wait for a postureInfo answer before it is retried; large batches with "
            "evidence take long to start."
        ),
    ),
]
SETTINGS += GATEWAY_SETTINGS
STREAM_TYPES += [
    csam.CsamAssetsStream,
    pcrs.PcrsPoliciesStream,
    pcrs.PcrsPolicyHostIdsStream,
    pcrs.PcrsPostureInfoStream,
]


class TapQualys(SignalsTap, Tap):
    """Extracts Qualys security data: the VM KnowledgeBase (QIDs with CVEs and CVSS), hosts with
    their tags and cloud metadata, host detections including fixed ones, CyberSecurity Asset
    Management (CSAM) assets with their software and agent inventory, and Policy Compliance
    posture (PCRS), incrementally, with Qualys' rate and concurrency limits honoured and nothing
    emitted twice when a large response fails part-way.
    """

    name = "tap-qualys"
    package_name = "tap-qualys"
    config_jsonschema = th.PropertiesList(*SETTINGS).to_dict()
    message_writer_class = SingerWriter

    @override
    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        if isinstance(kwargs.get("config"), dict):
            kwargs["config"] = numbers_from_strings(kwargs["config"], self.config_jsonschema)
        super().__init__(*args, **kwargs)
        limit_malloc_arenas()
        if kwargs.get("validate_config", True):
            self._check_settings()

    def _check_settings(self) -> None:
        """Checks JSON Schema cannot express; each failure is one line naming the setting."""
        errors: list[str] = []
        try:
            resolve_urls(self.config)
        except PlatformError as exc:
            errors.append(str(exc))
        start_date = self.config.get("start_date")
        if start_date:
            try:
                parse_utc(str(start_date))
            except CastError:
                errors.append(
                    f"start_date: {start_date!r} is not a date; use e.g. 2025-01-31T00:00:00Z"
                )
        id_min, id_max = self.config.get("id_min"), self.config.get("id_max")
        if id_min is not None and id_max is not None and id_min > id_max:
            errors.append(f"id_min: {id_min} is above id_max {id_max}")
        ca_bundle = self.config.get("ca_bundle")
        if ca_bundle and not _readable(ca_bundle):
            errors.append(f"ca_bundle: cannot read {ca_bundle!r}; give a PEM file path")
        if errors:
            raise ConfigValidationError(errors[0], errors=errors)

    @classmethod
    @override
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:
        state = kwargs.get("state")
        try:
            if state is not None:
                kwargs["state"] = bookmarks.read_state_file(state)
            super().invoke(*args, **kwargs)
        except signals.Interrupted as exc:
            signals.finish(exc, cls.logger)
        except BrokenPipeError:
            signals.output_closed(cls.logger)
        except StateError as exc:
            exc.source = f"state file {getattr(state, 'name', '--state')}"
            cls.logger.error("%s", exc)
            sys.exit(1)
        except QualysAPIError as exc:
            # The message already says which stream, endpoint and Qualys code failed; a
            # traceback would bury it.
            cls.logger.error("%s", exc)
            sys.exit(1)

    @override
    def load_state(self, state: dict[str, t.Any]) -> None:
        # Before any stream syncs: a bookmark in the future would make every run a silent no-op.
        bookmarks.check_bookmarks(state, self.config)
        # A state from before columns were snake_case keeps its bookmarks and resume points.
        super().load_state(naming.upgrade_state(state))

    @override
    def discover_streams(self) -> list[Stream]:
        streams = [stream_type(tap=self) for stream_type in STREAM_TYPES]
        # Tag names in tag_set_include/exclude are resolved through the tags stream's API.
        source = next(s for s in streams if isinstance(s, tags.TagsStream))
        for stream in streams:
            if isinstance(stream, (vm.HostsStream, vm.HostDetectionsStream)):
                stream.tag_source = source
        return streams


def _readable(path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False
