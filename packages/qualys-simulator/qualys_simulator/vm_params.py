"""The parameters each VM API endpoint version accepts: one table per endpoint (doc §5-7).

Real Qualys refuses a parameter it does not know with 400 / 1901 "Unrecognized parameter(s)",
and a client such as QualysETL sends many documented parameters by default: the simulator must
accept every documented one, or such a client cannot even start. Each row says what the
parameter does, which value checker applies, and the first API version that accepts it; the
tests iterate over these tables (a valid ``sample`` per row), and docs/api-parameters.md lists
the same names with what the tap sends.

Parameters that only change what a real subscription has and the simulator has not (asset
groups, networks, search lists, PC and SCAP scans) are accepted and do not filter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

Checker = Callable[[str, str], object]

STATUSES = ("New", "Active", "Re-Opened", "Fixed")
#: arf_filter_keys values, each naming the AFFECT_* flag whose 0 it filters out.
ARF_KEYS = {"non-running-kernel": "kernel", "non-running-service": "service",
            "config-not-exploitable": "config"}

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}Z)?$")
_IDS = re.compile(r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$")


class ParamError(Exception):
    """A request Qualys refuses: its error code and text, for a SIMPLE_RETURN."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def _invalid(name: str, value: str) -> ParamError:
    return ParamError(1905, f"parameter {name} has invalid value: {value}")


def _bool(name: str, value: str) -> bool:
    if value not in ("0", "1"):
        raise _invalid(name, value)
    return value == "1"


def _int(name: str, value: str) -> int:
    if not value.strip().isdigit():
        raise _invalid(name, value)
    return int(value)


def _date(name: str, value: str) -> datetime:
    text = value.strip()
    if not _DATE.match(text):
        raise _invalid(name, value)
    try:
        if "T" in text:
            return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise _invalid(name, value) from None


def _ids(name: str, value: str) -> list[tuple[int, int]]:
    """``1,5-10`` -> merged, sorted [(1, 1), (5, 10)]."""
    if not _IDS.match(value):
        raise _invalid(name, value)
    ranges = []
    for part in value.split(","):
        lo, _, hi = part.strip().partition("-")
        low, high = int(lo), int(hi or lo)
        if high < low:
            raise _invalid(name, value)
        ranges.append((low, high))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for low, high in ranges:
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _one_of(*choices: str) -> Checker:
    def check(name: str, value: str) -> str:
        if value not in choices:
            raise _invalid(name, value)
        return value
    return check


def _list_of(*choices: str) -> Checker:
    def check(name: str, value: str) -> list[str]:
        items = [v.strip() for v in value.split(",") if v.strip()]
        if not items or any(v not in choices for v in items):
            raise _invalid(name, value)
        return items
    return check


def _text(_name: str, value: str) -> str:
    return value


def _regex(name: str, value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error:
        raise _invalid(name, value) from None


@dataclass(frozen=True)
class Param:
    """One documented parameter of one endpoint."""

    name: str
    check: Checker
    does: str
    sample: str  # a valid value, for the tests
    since: str = "2.0"  # the first API version that accepts it
    #: parameters it needs beside it to give 200 (e.g. tag_set_include needs use_tags=1)
    needs: Mapping[str, str] = field(default_factory=dict)


def _table(*params: Param) -> dict[str, Param]:
    return {p.name: p for p in params}


_COMMON = (
    Param("action", _one_of("list"), "the operation; only list is served", "list"),
    Param("echo_request", _bool, "echo the request's parameters in a REQUEST block", "1"),
)
_TAGS = {"use_tags": "1"}
_HOST_FILTERS = (
    Param("ids", _ids, "only these host ids and id ranges", "1-999999999"),
    Param("id_min", _int, "only host ids from this one", "1"),
    Param("id_max", _int, "only host ids up to this one", "999999999"),
    Param("ips", _text, "only these IPs (the simulator matches single IPs)", "10.0.0.1"),
    Param("ipv6", _text, "only these IPv6 addresses (not filtered by the simulator)", "::1"),
    Param("ag_ids", _text, "only hosts of these asset groups (no asset groups here)", "1"),
    Param("ag_titles", _text, "only hosts of these asset group titles", "All"),
    Param("network_ids", _text, "only hosts of these custom networks", "0"),
    Param("os_pattern", _regex, "only hosts whose OS matches this regular expression", ".*"),
    Param("os_hostname", _bool, "show the OS host name", "1"),
    Param("compliance_enabled", _bool, "PC hosts (1) or VM hosts (0)", "0"),
    Param("truncation_limit", _int, "hosts per page; 0 = no limit", "10"),
    Param("show_asset_id", _bool, "show each host's ASSET_ID", "1"),
    Param("vm_processed_after", _date, "hosts whose VM results were processed after", "2000-01-01"),
    Param("vm_processed_before", _date, "hosts whose VM results were processed before",
          "2100-01-01"),
    Param("vm_scan_since", _date, "hosts VM-scanned since", "2000-01-01"),
    Param("no_vm_scan_since", _date, "hosts not VM-scanned since", "2100-01-01"),
    Param("max_days_since_last_vm_scan", _int, "hosts VM-scanned within this many days", "9999"),
    Param("vm_scan_date_after", _date, "hosts whose last VM scan ended after", "2000-01-01"),
    Param("vm_scan_date_before", _date, "hosts whose last VM scan ended before", "2100-01-01"),
    Param("vm_auth_scan_date_after", _date, "hosts with an authenticated VM scan after",
          "2000-01-01"),
    Param("vm_auth_scan_date_before", _date, "hosts with an authenticated VM scan before",
          "2100-01-01"),
    Param("use_tags", _bool, "select hosts by asset tag (needs tag_set_include/exclude)", "1",
          needs={"tag_set_exclude": "999999999"}),
    Param("tag_set_by", _one_of("id", "name"), "tag sets name tag ids or tag names", "id"),
    Param("tag_include_selector", _one_of("any", "all"), "any or all included tags", "any"),
    Param("tag_exclude_selector", _one_of("any", "all"), "any or all excluded tags", "any"),
    Param("tag_set_include", _text, "only hosts with these tags", "1", needs=_TAGS),
    Param("tag_set_exclude", _text, "leave out hosts with these tags", "999999999",
          needs=_TAGS),
    Param("show_tags", _bool, "show each host's asset tags (TAGS)", "1"),
    Param("host_metadata", _one_of("all", "ec2", "azure", "google"),
          "show cloud instance metadata (METADATA)", "all"),
    Param("host_metadata_fields", _text, "only these metadata fields", "instanceId"),
    Param("show_cloud_tags", _bool, "show cloud provider tags (CLOUD_PROVIDER_TAGS)", "1"),
    Param("cloud_tag_fields", _text, "only these cloud tags", "Name"),
)
_HOST_LIST_ONLY = (
    Param("details", _one_of("Basic", "Basic/AGs", "All", "All/AGs", "None"),
          "how much of each host: None = ids only", "All"),
    Param("no_compliance_scan_since", _date, "hosts not PC-scanned since", "2100-01-01"),
    Param("compliance_scan_since", _date, "hosts PC-scanned since", "2000-01-01"),
    Param("pc_auth_success_date_after", _date, "hosts with an authenticated PC scan after",
          "2000-01-01"),
    Param("pc_auth_success_date_before", _date, "hosts with an authenticated PC scan before",
          "2100-01-01"),
    Param("scap_scan_since", _date, "hosts SCAP-scanned since", "2000-01-01"),
    Param("no_scap_scan_since", _date, "hosts not SCAP-scanned since", "2100-01-01"),
    Param("show_trurisk", _bool, "show TRURISK_SCORE and ASSET_CRITICALITY_SCORE", "1"),
    Param("show_trurisk_factors", _bool, "show TRURISK_SCORE_FACTORS", "1"),
    Param("trurisk_min", _int, "hosts with a TruRisk score of at least", "0"),
    Param("trurisk_max", _int, "hosts with a TruRisk score of at most", "1000"),
    Param("show_ars", _bool, "show the Asset Risk Score (ASSET_RISK_SCORE)", "1"),
    Param("show_ars_factors", _bool, "show the factors of the Asset Risk Score (ARS_FACTORS)",
          "1"),
    Param("ars_min", _int, "hosts with an Asset Risk Score of at least", "0"),
    Param("ars_max", _int, "hosts with an Asset Risk Score of at most", "1000"),
    # Seen in the guide's truncation URL sample (cloud_agent_activationkey=0) and sent by
    # QualysETL; the version that introduced it is not documented (doc §4).
    Param("cloud_agent_activationkey", _text,
          "only hosts whose Cloud Agent uses this activation key; 0 = no filter", "0",
          since="4.0"),
)
_DETECTION_ONLY = (
    Param("output_format", _one_of("XML"), "the document format; the simulator serves XML",
          "XML"),
    Param("status", _list_of(*STATUSES), "detection statuses; default New,Active,Re-Opened",
          "New,Active,Re-Opened,Fixed"),
    Param("qids", _ids, "only these QIDs", "1-999999999"),
    Param("severities", _ids, "only these severities", "1-5"),
    Param("include_vuln_type", _list_of("confirmed", "potential"),
          "confirmed and/or potential detections", "confirmed,potential"),
    Param("filter_superseded_qids", _bool, "leave out superseded QIDs", "0"),
    Param("include_search_list_ids", _text, "only QIDs of these search lists", "1"),
    Param("exclude_search_list_ids", _text, "leave out QIDs of these search lists", "1"),
    Param("include_search_list_titles", _text, "only QIDs of these search list titles", "x"),
    Param("exclude_search_list_titles", _text, "leave out QIDs of these search list titles",
          "x"),
    Param("network_name", _text, "the network name to show for a network id", "Global"),
    Param("show_results", _bool, "show each detection's RESULTS; default on", "0"),
    Param("show_reopened_info", _bool, "show the re-opened dates and count", "1"),
    Param("show_igs", _bool, "include Information Gathered detections; default off", "1"),
    Param("show_qds", _bool, "show the Qualys Detection Score (QDS)", "1"),
    Param("show_qds_factors", _bool, "show the factors behind each QDS", "1"),
    Param("qds_min", _int, "detections with a QDS of at least", "0"),
    Param("qds_max", _int, "detections with a QDS of at most", "100"),
    Param("include_ignored", _bool, "include detections marked ignored", "1"),
    Param("include_disabled", _bool, "include detections of disabled QIDs", "1"),
    Param("show_host_services", _bool, "show the services found on each host", "0"),
    Param("detection_updated_since", _date, "detections updated since", "2000-01-01"),
    Param("detection_updated_before", _date, "detections updated before", "2100-01-01"),
    Param("max_days_since_detection_updated", _int, "detections updated within this many days",
          "9999"),
    Param("detection_processed_after", _date, "detections processed after", "2000-01-01"),
    Param("detection_processed_before", _date, "detections processed before", "2100-01-01"),
    Param("detection_last_tested_since", _date, "detections last tested since", "2000-01-01"),
    Param("detection_last_tested_before", _date, "detections last tested before", "2100-01-01"),
    Param("detection_last_tested_since_days", _int, "detections tested within this many days",
          "9999"),
    Param("detection_last_tested_before_days", _int,
          "detections not tested within this many days", "0"),
    Param("arf_kernel_filter", _one_of("0", "1", "2", "3", "4"),
          "by AFFECT_RUNNING_KERNEL: 0 all, 1 without the not-affected, 2 only those, "
          "3 only affected, 4 only kernel-related", "0"),
    Param("arf_service_filter", _one_of("0", "1", "2", "3", "4"),
          "the same by AFFECT_RUNNING_SERVICE", "0"),
    Param("arf_config_filter", _one_of("0", "1", "2", "3", "4"),
          "the same by AFFECT_EXPLOITABLE_CONFIG", "0"),
    Param("active_kernels_only", _one_of("0", "1", "2", "3"),
          "older spelling of the kernel filter (not filtered by the simulator)", "0"),
    Param("suppress_duplicated_data_from_csv", _bool, "CSV output only", "0"),
    Param("show_arf_data", _bool,
          "show AFFECT_RUNNING_KERNEL, AFFECT_RUNNING_SERVICE, AFFECT_EXPLOITABLE_CONFIG", "1",
          since="3.0"),
    Param("arf_filter_keys", _list_of(*ARF_KEYS),
          "leave out detections that a non-running kernel / service or a non-exploitable "
          "configuration makes harmless", "non-running-kernel", since="3.0"),
    Param("mitre_attack_details", _bool,
          "show MITRE ATT&CK tactic and technique names and ids per detection", "1",
          since="4.0"),
)

HOST_LIST = _table(*_COMMON, *_HOST_FILTERS, *_HOST_LIST_ONLY)
HOST_DETECTION = _table(*_COMMON, *_HOST_FILTERS, *_DETECTION_ONLY)
KNOWLEDGE_BASE = _table(
    *_COMMON,
    Param("details", _one_of("Basic", "All", "None"), "how much of each QID", "All"),
    Param("ids", _ids, "only these QIDs and ranges", "1-999999999"),
    Param("id_min", _int, "only QIDs from this one", "1"),
    Param("id_max", _int, "only QIDs up to this one", "999999999"),
    Param("last_modified_after", _date, "QIDs modified (by anyone) after", "2000-01-01"),
    Param("last_modified_before", _date, "QIDs modified before", "2100-01-01"),
    Param("last_modified_by_user_after", _date,
          "QIDs customized by a user after (none in the simulator)", "2000-01-01"),
    Param("last_modified_by_user_before", _date,
          "QIDs customized by a user before (none in the simulator)", "2100-01-01"),
    Param("last_modified_by_service_after", _date, "QIDs modified by the service after",
          "2000-01-01"),
    Param("last_modified_by_service_before", _date, "QIDs modified by the service before",
          "2100-01-01"),
    Param("published_after", _date, "QIDs published after", "2000-01-01"),
    Param("published_before", _date, "QIDs published before", "2100-01-01"),
    Param("code_modified_after", _date, "QIDs whose detection code changed after",
          "2000-01-01"),
    Param("code_modified_before", _date, "QIDs whose detection code changed before",
          "2100-01-01"),
    Param("is_patchable", _bool, "only patchable (1) or unpatchable (0) QIDs", "1"),
    Param("discovery_method", _one_of("Remote", "Authenticated", "RemoteOnly",
                                      "RemoteAndAuthenticated"),
          "only QIDs detectable this way (not filtered by the simulator)", "Remote"),
    Param("discovery_auth_types", _text, "only QIDs of these authentication types", "Unix"),
    Param("show_disabled_flag", _bool, "show IS_DISABLED", "1"),
    Param("show_qid_change_log", _bool, "show CHANGE_LOG_LIST", "1"),
    Param("show_supported_modules_info", _bool, "show SUPPORTED_MODULES", "1"),
    Param("show_pci_reasons", _bool, "show PCI_REASONS", "1"),
)

#: endpoint -> (the versions the simulator serves, its parameter table)
ENDPOINTS: dict[str, tuple[tuple[str, ...], dict[str, Param]]] = {
    "knowledge_base": (("2.0", "4.0"), KNOWLEDGE_BASE),
    "host_list": (("2.0", "3.0", "4.0", "5.0"), HOST_LIST),
    "host_detection": (("2.0", "3.0", "4.0", "5.0"), HOST_DETECTION),
}
#: Consultant subscriptions have no TruRisk: Qualys answers these with 1901 there (doc §6).
TRURISK = frozenset({"show_trurisk", "show_trurisk_factors", "show_qds", "show_qds_factors"})


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def accepted(endpoint: str, version: str) -> dict[str, Param]:
    """The parameters ``endpoint`` accepts at API ``version``."""
    table = ENDPOINTS[endpoint][1]
    at = _version_key(version)
    return {name: p for name, p in table.items() if _version_key(p.since) <= at}


def check_params(form: dict[str, str], endpoint: str, version: str,
                 consultant: bool) -> dict[str, object]:
    """The request's parameters, checked and typed like Qualys does; ``ParamError`` if refused."""
    spec = accepted(endpoint, version)
    unknown = [k for k in form if k not in spec or (consultant and k in TRURISK)]
    if unknown:
        raise ParamError(1901, "Unrecognized parameter(s): " + ", ".join(unknown))
    if "action" not in form:
        raise ParamError(1903, "Missing required parameter(s): action")
    values = {name: spec[name].check(name, value) for name, value in form.items()}
    if ("tag_set_include" in form or "tag_set_exclude" in form) and not values.get("use_tags"):
        raise ParamError(1907, "The following combination of key=value pairs is not supported: "
                         "tag_set_include/tag_set_exclude without use_tags=1")
    if values.get("use_tags") and "tag_set_include" not in form and "tag_set_exclude" not in form:
        raise ParamError(1922, "Please specify at least one of the following parameters: "
                         "tag_set_include, tag_set_exclude")
    if "truncation_limit" in values and int(str(values["truncation_limit"])) > 1_000_000:
        raise ParamError(1905, "parameter truncation_limit has invalid value")
    return values
