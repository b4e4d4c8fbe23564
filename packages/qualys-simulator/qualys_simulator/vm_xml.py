"""XML rendering of the VM API documents, by hand, as text.

The element order follows the trees of doc §5-7 exactly. Text fields vary in style the way real
Qualys output does (doc §4): CDATA padded with newlines, bare CDATA, or escaped plain text, so a
client that only handles one style fails against the simulator as it would against Qualys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from qualys_simulator.datagen import Vuln
from qualys_simulator.model import ARS_FORMULA, Detection, Host, fmt, fmt_utc

XML_DECL = '<?xml version="1.0" encoding="UTF-8" ?>\n'
DTD_BASE = "https://qualysapi.qualys.com/api/2.0"


def esc(text: str) -> str:
    """``text`` escaped for XML character data."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cdata(text: str) -> str:
    """``text`` as a CDATA section."""
    # "]]>" cannot appear inside a CDATA section: close it and open a new one between "]]" and ">".
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def el(name: str, value: object) -> str:
    """``<name>value</name>``, or nothing when ``value`` is None."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = fmt(value)
    return f"<{name}>{esc(str(value))}</{name}>"


def text_el(name: str, value: str | None, style: int) -> str:
    """A text element in one of Qualys' three styles (0 padded CDATA, 1 CDATA, 2 escaped)."""
    if value is None:
        return ""
    if style == 0:
        return f"<{name}>\n  {cdata(value)}\n</{name}>"
    if style == 1:
        return f"<{name}>{cdata(value)}</{name}>"
    return f"<{name}>{esc(value)}</{name}>"


def document_head(root: str, dtd_path: str | None, now: datetime,
                  echo: str = "") -> str:
    """The XML declaration, the DOCTYPE and the opening of RESPONSE up to its DATETIME."""
    doctype = f'<!DOCTYPE {root} SYSTEM "{DTD_BASE}/{dtd_path}">\n' if dtd_path else ""
    return f"{XML_DECL}{doctype}<{root}>\n{echo}  <RESPONSE>\n    <DATETIME>{fmt(now)}</DATETIME>\n"


def request_echo(now: datetime, user: str, resource: str, params: Sequence[tuple[str, str]],
                 post_data: str | None) -> str:
    """The REQUEST element that echoes the call (``echo_request=1``)."""
    param_xml = "".join(
        f"<PARAM><KEY>{esc(k)}</KEY><VALUE>{cdata(v)}</VALUE></PARAM>" for k, v in params
    )
    post = f"<POST_DATA>{cdata(post_data)}</POST_DATA>" if post_data else ""
    return (f"  <REQUEST>\n    <DATETIME>{fmt(now)}</DATETIME>\n    <USER_LOGIN>{esc(user)}"
            f"</USER_LOGIN>\n    <RESOURCE>{esc(resource)}</RESOURCE>\n"
            f"    <PARAM_LIST>{param_xml}</PARAM_LIST>\n    {post}\n  </REQUEST>\n")


def warning(limit: int, url: str) -> str:
    """The WARNING 1980 element: the record limit and the URL of the next page."""
    return (f"    <WARNING>\n      <CODE>1980</CODE>\n      <TEXT>{limit} record limit exceeded. "
            f"Use URL to get next batch of results.</TEXT>\n      <URL>{cdata(url)}</URL>\n"
            "    </WARNING>\n")


def simple_return(now: datetime, text: str, code: int | None = None, *,
                  items: Iterable[tuple[str, str]] = (), doctype: bool = True) -> bytes:
    """A SIMPLE_RETURN document: how the VM API answers errors and simple actions."""
    item_xml = "".join(
        f"      <ITEM>\n        <KEY>{esc(k)}</KEY>\n        <VALUE>{esc(v)}</VALUE>\n"
        "      </ITEM>\n" for k, v in items
    )
    item_list = f"    <ITEM_LIST>\n{item_xml}    </ITEM_LIST>\n" if item_xml else ""
    code_xml = f"    <CODE>{code}</CODE>\n" if code is not None else ""
    doctype_line = (f'<!DOCTYPE SIMPLE_RETURN SYSTEM "{DTD_BASE}/simple_return.dtd">\n'
                    if doctype else "")
    return (f"{XML_DECL}{doctype_line}<SIMPLE_RETURN>\n  <RESPONSE>\n    <DATETIME>{fmt(now)}"
            f"</DATETIME>\n{code_xml}    <TEXT>{esc(text)}</TEXT>\n{item_list}  </RESPONSE>\n"
            "</SIMPLE_RETURN>\n").encode()


# ---- hosts -----------------------------------------------------------------------------------
def _tags(host: Host) -> str:
    if not host.tags:
        return ""
    inner = "".join(
        f"<TAG><TAG_ID>{t.tag_id}</TAG_ID>{text_el('NAME', t.name, host.index % 3)}"
        f"<COLOR>{t.color}</COLOR><BACKGROUND_COLOR>{t.background_color}</BACKGROUND_COLOR></TAG>"
        for t in host.tags
    )
    return f"<TAGS>{inner}</TAGS>"


def _metadata(host: Host) -> str:
    cloud = host.cloud
    if cloud is None:
        return ""
    attributes = "".join(
        f"<ATTRIBUTE><NAME>{esc(n)}</NAME><LAST_STATUS>Success</LAST_STATUS>"
        f"<VALUE>{cdata(v)}</VALUE><LAST_SUCCESS_DATE>{d}</LAST_SUCCESS_DATE>"
        f"<LAST_ERROR_DATE /><LAST_ERROR /></ATTRIBUTE>"
        for n, v, d in cloud.attributes
    )
    return f"<METADATA><{cloud.metadata_kind}>{attributes}</{cloud.metadata_kind}></METADATA>"


def _cloud_tags(host: Host) -> str:
    if host.cloud is None or not host.cloud.cloud_tags:
        return ""
    inner = "".join(
        f"<CLOUD_TAG><NAME>{esc(n)}</NAME><VALUE>{esc(v)}</VALUE>"
        f"<LAST_SUCCESS_DATE>{d}</LAST_SUCCESS_DATE></CLOUD_TAG>"
        for n, v, d in host.cloud.cloud_tags
    )
    return f"<CLOUD_PROVIDER_TAGS>{inner}</CLOUD_PROVIDER_TAGS>"


def _cloud_fields(host: Host) -> str:
    c = host.cloud
    if c is None:
        return ""
    return (el("CLOUD_PROVIDER", c.provider) + el("CLOUD_SERVICE", c.service)
            + el("CLOUD_RESOURCE_ID", c.resource_id) + el("EC2_INSTANCE_ID", c.instance_id))


def _dns_data(host: Host, style: int) -> str:
    return (f"<DNS_DATA>{text_el('HOSTNAME', host.hostname, style)}"
            f"{text_el('DOMAIN', host.domain, style)}{text_el('FQDN', host.fqdn, style)}"
            "</DNS_DATA>")


class HostOptions:
    """The output switches of Host List / Host List Detection requests."""

    __slots__ = ("details", "host_metadata", "mitre_attack_details", "show_arf_data", "show_ars",
                 "show_ars_factors", "show_asset_id", "show_cloud_tags", "show_qds",
                 "show_qds_factors", "show_reopened_info", "show_results", "show_tags",
                 "show_trurisk", "show_trurisk_factors")

    def __init__(self) -> None:
        self.details = "Basic"
        self.show_asset_id = False
        self.show_tags = False
        self.show_cloud_tags = False
        self.host_metadata = False
        self.show_trurisk = False
        self.show_trurisk_factors = False
        self.show_results = True
        self.show_reopened_info = False
        self.show_qds = False
        self.show_qds_factors = False
        self.show_ars = False
        self.show_ars_factors = False
        self.show_arf_data = False
        self.mitre_attack_details = False


def id_set(ids: Iterable[int]) -> str:
    """The ID_SET of a ``details=None`` Host List: one ID per lone id, ID_RANGE for runs.

    ``ids`` ascend. A run of consecutive ids is written ``<ID_RANGE>first-last</ID_RANGE>``, as
    Qualys compresses its id lists (host_list_output.dtd: ``ID_SET ((ID|ID_RANGE)+)``).
    """
    parts = ["    <ID_SET>\n"]
    first = last = None
    for host_id in ids:
        if last is not None and host_id == last + 1:
            last = host_id
            continue
        if first is not None:
            parts.append(_id_or_range(first, last))  # type: ignore[arg-type]
        first = last = host_id
    if first is not None:
        parts.append(_id_or_range(first, last))  # type: ignore[arg-type]
    parts.append("    </ID_SET>\n")
    return "".join(parts)


def _id_or_range(first: int, last: int) -> str:
    if first == last:
        return f"      <ID>{first}</ID>\n"
    return f"      <ID_RANGE>{first}-{last}</ID_RANGE>\n"


def host_list_host(host: Host, o: HostOptions) -> str:
    """One HOST element of a Host List answer."""
    style = host.index % 3
    parts = [f"      <HOST>\n        <ID>{host.id}</ID>"]
    if o.show_asset_id:
        parts.append(f"<ASSET_ID>{host.asset_id}</ASSET_ID>")
    if o.details != "None":
        parts += [
            el("IP", host.ip), el("IPV6", host.ipv6), el("TRACKING_METHOD", host.tracking_method),
            el("NETWORK_ID", host.network_id), text_el("DNS", host.dns, style),
            _dns_data(host, style), text_el("OS_HOSTNAME", host.fqdn, style), _cloud_fields(host),
            text_el("NETBIOS", host.netbios, style), text_el("OS", host.os, style),
            el("QG_HOSTID", host.qg_hostid or None),
        ]
        if o.show_tags:
            parts.append(_tags(host))
        if o.host_metadata:
            parts.append(_metadata(host))
        if o.show_cloud_tags:
            parts.append(_cloud_tags(host))
        parts += [
            el("LAST_VULN_SCAN_DATETIME", host.last_vm_scanned),
            el("LAST_VM_SCANNED_DATE", host.last_vm_scanned),
            el("LAST_VM_SCANNED_DURATION", host.last_vm_scanned_duration),
            el("LAST_VM_AUTH_SCANNED_DATE", host.last_vm_auth_scanned),
            el("LAST_VM_AUTH_SCANNED_DURATION", host.last_vm_auth_scanned_duration),
            el("LAST_COMPLIANCE_SCAN_DATETIME", host.last_compliance_scan),
        ]
    if o.details.startswith("All"):
        parts += [
            text_el("OWNER", host.owner, style), text_el("COMMENTS", host.comments, style),
            "<USER_DEF />", "<ASSET_GROUP_IDS />",
        ]
    if o.show_ars:
        parts.append(el("ASSET_RISK_SCORE", host.asset_risk_score))
    if o.show_trurisk:
        parts += [el("TRURISK_SCORE", host.trurisk_score),
                  el("ASSET_CRITICALITY_SCORE", host.asset_criticality)]
    if o.show_ars_factors:
        parts.append(_ars_factors(host))
    if o.show_trurisk_factors:
        parts.append(
            "<TRURISK_SCORE_FACTORS><TRURISK_SCORE_FORMULA>"
            + cdata("Sum of ( Weight[Sev] * Weighted QDS[Sev] ) * ACS")
            + "</TRURISK_SCORE_FORMULA>"
            + "".join(f'<VULN_COUNT qds_severity="{s}">{(host.trurisk_score >> i) % 7}</VULN_COUNT>'
                      for i, s in enumerate(("LOW", "MEDIUM", "HIGH", "CRITICAL")))
            + "</TRURISK_SCORE_FACTORS>"
        )
    if o.details.startswith("All"):
        parts += [
            el("LAST_BOOT", host.last_boot), el("SERIAL_NUMBER", host.serial_number),
            el("HARDWARE_UUID", host.hardware_uuid), el("FIRST_FOUND_DATE", host.first_found),
            el("LAST_ACTIVITY", host.last_vm_processed), el("AGENT_STATUS", host.agent_status),
        ]
    parts.append("</HOST>\n")
    return "".join(parts)


def _ars_factors(host: Host) -> str:
    return ("<ARS_FACTORS><ARS_FORMULA>" + cdata(ARS_FORMULA) + "</ARS_FORMULA>"
            + "".join(f'<VULN_COUNT qds_severity="{s}">{n}</VULN_COUNT>'
                      for s, n in host.ars_vuln_counts)
            + "</ARS_FACTORS>")


_ARF_TAGS = ("AFFECT_RUNNING_KERNEL", "AFFECT_RUNNING_SERVICE", "AFFECT_EXPLOITABLE_CONFIG")


def _arf(d: Detection) -> str:
    # A flag that does not apply to the QID (None) is left out, as Qualys does.
    return "".join(f"<{tag}>{flag}</{tag}>" for tag, flag in zip(_ARF_TAGS, d.arf, strict=True)
                   if flag is not None)


def _mitre(d: Detection) -> str:
    mitre = d.mitre
    if mitre is None:
        return ""
    tactic, technique, tactic_id, technique_id = mitre
    return (f"<MITRE_TACTIC_NAME>{cdata(tactic)}</MITRE_TACTIC_NAME>"
            f"<MITRE_TECHNIQUE_NAME>{cdata(technique)}</MITRE_TECHNIQUE_NAME>"
            f"<MITRE_TACTIC_ID>{tactic_id}</MITRE_TACTIC_ID>"
            f"<MITRE_TECHNIQUE_ID>{technique_id}</MITRE_TECHNIQUE_ID>")


def _qds_level(qds: int) -> str:
    return "LOW" if qds < 40 else "MEDIUM" if qds < 70 else "HIGH" if qds < 90 else "CRITICAL"


def _detection(d: Detection, o: HostOptions) -> str:
    # One f-string per detection: this function runs millions of times per big sync.
    port = ("" if d.port is None else
            f"<PORT>{d.port}</PORT><PROTOCOL>{d.protocol}</PROTOCOL><SSL>{d.ssl}</SSL>")
    # RESULTS is CDATA in real output; some carry "]]>" and must be split (see cdata()).
    results = ("" if not o.show_results or d.results is None
               else f"<RESULTS>{cdata(d.results)}</RESULTS>")
    qds = ("" if not o.show_qds or d.qds is None
           else f'<QDS severity="{_qds_level(d.qds)}">{d.qds}</QDS>')
    factors = ""
    if o.show_qds_factors and d.qds is not None:
        factors = "<QDS_FACTORS>" + "".join(
            f'<QDS_FACTOR name="{n}">{cdata(v)}</QDS_FACTOR>' for n, v in d.qds_factors
        ) + "</QDS_FACTORS>"
    fixed = ("" if d.last_fixed is None
             else f"<LAST_FIXED_DATETIME>{fmt_utc(d.last_fixed)}</LAST_FIXED_DATETIME>")
    reopened = ""
    if o.show_reopened_info and d.times_reopened:
        reopened = (f"<FIRST_REOPENED_DATETIME>{fmt(d.first_reopened)}</FIRST_REOPENED_DATETIME>"
                    f"<LAST_REOPENED_DATETIME>{fmt(d.last_reopened)}</LAST_REOPENED_DATETIME>"
                    f"<TIMES_REOPENED>{d.times_reopened}</TIMES_REOPENED>")
    service = "" if d.service is None else f"<SERVICE>{esc(d.service)}</SERVICE>"
    arf = _arf(d) if o.show_arf_data else ""
    mitre = _mitre(d) if o.mitre_attack_details else ""
    return (
        f"<DETECTION><UNIQUE_VULN_ID>{d.unique_vuln_id}</UNIQUE_VULN_ID><QID>{d.qid}</QID>"
        f"<TYPE>{d.type}</TYPE><SEVERITY>{d.severity}</SEVERITY>{port}{results}"
        f"<STATUS>{d.status}</STATUS><FIRST_FOUND_DATETIME>{fmt_utc(d.first_found)}"
        f"</FIRST_FOUND_DATETIME><LAST_FOUND_DATETIME>{fmt_utc(d.last_found)}"
        f"</LAST_FOUND_DATETIME>{qds}{factors}<TIMES_FOUND>{d.times_found}</TIMES_FOUND>"
        f"<LAST_TEST_DATETIME>{fmt_utc(d.last_test)}</LAST_TEST_DATETIME>"
        f"<LAST_UPDATE_DATETIME>{fmt_utc(d.last_update)}</LAST_UPDATE_DATETIME>{fixed}{reopened}"
        f"{service}<IS_IGNORED>0</IS_IGNORED><IS_DISABLED>0</IS_DISABLED>{arf}"
        f"<LAST_PROCESSED_DATETIME>{fmt(d.last_processed)}</LAST_PROCESSED_DATETIME>{mitre}"
        "</DETECTION>"
    )


def detection_host(host: Host, detections: list[Detection], o: HostOptions) -> str:
    """One HOST element of a Host List Detection answer, with its detections."""
    style = host.index % 3
    parts = [f"      <HOST>\n        <ID>{host.id}</ID>"]
    if o.show_asset_id:
        parts.append(f"<ASSET_ID>{host.asset_id}</ASSET_ID>")
    parts += [
        el("IP", host.ip), el("IPV6", host.ipv6), el("TRACKING_METHOD", host.tracking_method),
        "<ASSET_GROUP_LIST />", el("NETWORK_ID", host.network_id),
        text_el("OS", host.os, style), text_el("OS_CPE", host.os_cpe, style),
        text_el("DNS", host.dns, style), _dns_data(host, style), _cloud_fields(host),
        text_el("NETBIOS", host.netbios, style), el("QG_HOSTID", host.qg_hostid or None),
        el("LAST_SCAN_DATETIME", host.last_vm_scanned),
        el("LAST_VM_SCANNED_DATE", host.last_vm_scanned),
        el("LAST_VM_SCANNED_DURATION", host.last_vm_scanned_duration),
        el("LAST_VM_AUTH_SCANNED_DATE", host.last_vm_auth_scanned),
        el("LAST_VM_AUTH_SCANNED_DURATION", host.last_vm_auth_scanned_duration),
        el("LAST_PC_SCANNED_DATE", host.last_compliance_scan),
    ]
    if o.show_tags:
        parts.append(_tags(host))
    if o.host_metadata:
        parts.append(_metadata(host))
    if o.show_cloud_tags:
        parts.append(_cloud_tags(host))
    parts.append("\n        <DETECTION_LIST>")
    parts.extend(_detection(d, o) for d in detections)
    parts.append("</DETECTION_LIST>\n      </HOST>\n")
    return "".join(parts)


# ---- KnowledgeBase ---------------------------------------------------------------------------
def _list(outer: str, rows: str) -> str:
    return f"<{outer}>{rows}</{outer}>" if rows else ""


def vuln(v: Vuln, details: str, flags: set[str]) -> str:
    """One VULN element of a KnowledgeBase answer."""
    style = v.qid % 3
    parts = [
        f"      <VULN>\n        <QID>{v.qid}</QID><VULN_TYPE>{v.vuln_type}</VULN_TYPE>"
        f"<SEVERITY_LEVEL>{v.severity}</SEVERITY_LEVEL>", text_el("TITLE", v.title, style),
    ]
    basic = details in ("Basic", "All")
    if basic:
        parts.append(text_el("CATEGORY", v.category, style))
    parts.append(el("LAST_SERVICE_MODIFICATION_DATETIME", v.last_modified))
    parts.append(el("PUBLISHED_DATETIME", v.published))
    if basic:
        parts.append(el("CODE_MODIFIED_DATETIME", v.code_modified))
        parts.append(el("PATCH_PUBLISHED_DATE", v.patch_published))
    parts.append(el("PATCHABLE", v.patchable))
    if basic:
        parts += [
            _list("BUGTRAQ_LIST", "".join(
                f"<BUGTRAQ><ID>{cdata(str(b))}</ID>"
                f"<URL>{cdata(f'https://www.securityfocus.com/bid/{b}')}</URL></BUGTRAQ>"
                for b in v.bugtraq)),
            _list("SOFTWARE_LIST", "".join(
                f"<SOFTWARE><PRODUCT>{cdata(p)}</PRODUCT><VENDOR>{cdata(ven)}</VENDOR></SOFTWARE>"
                for p, ven in v.software)),
            _list("VENDOR_REFERENCE_LIST", "".join(
                f"<VENDOR_REFERENCE><ID>{cdata(i)}</ID><URL>{cdata(u)}</URL></VENDOR_REFERENCE>"
                for i, u in v.vendor_refs)),
            _list("CVE_LIST", "".join(
                f"<CVE><ID>{cdata(c)}</ID><URL>{cdata(f'https://nvd.nist.gov/vuln/detail/{c}')}"
                f"</URL></CVE>" for c in v.cves)),
        ]
    if details == "All":
        parts += [
            f"<DIAGNOSIS>{cdata(v.diagnosis)}</DIAGNOSIS>",
            f"<CONSEQUENCE>{cdata(v.consequence)}</CONSEQUENCE>",
            f"<SOLUTION>{cdata(v.solution)}</SOLUTION>",
            _list("COMPLIANCE_LIST", "".join(
                f"<COMPLIANCE><TYPE>{t}</TYPE><SECTION>{cdata(s)}</SECTION>"
                f"<DESCRIPTION>{cdata(d)}</DESCRIPTION></COMPLIANCE>" for t, s, d in v.compliance)),
        ]
        correlation = ""
        if v.exploits:
            correlation += "<EXPLOITS><EXPLT_SRC><SRC_NAME>" + cdata(v.exploits[0][0]) + \
                "</SRC_NAME><EXPLT_LIST>" + "".join(
                    f"<EXPLT><REF>{cdata(r)}</REF><DESC>{cdata(d)}</DESC></EXPLT>"
                    for _, r, d in v.exploits) + "</EXPLT_LIST></EXPLT_SRC></EXPLOITS>"
        if v.malware:
            correlation += "<MALWARE><MW_SRC><SRC_NAME>" + cdata(v.malware[0][0]) + \
                "</SRC_NAME><MW_LIST>" + "".join(
                    f"<MW_INFO><MW_ID>{cdata(m)}</MW_ID><MW_TYPE>{cdata('Backdoor')}</MW_TYPE>"
                    f"<MW_RATING>{cdata('High')}</MW_RATING></MW_INFO>"
                    for _, m in v.malware) + "</MW_LIST></MW_SRC></MALWARE>"
        if correlation:
            parts.append(f"<CORRELATION>{correlation}</CORRELATION>")
    if basic:
        parts.append(
            f'<CVSS><BASE source="service">{v.cvss_base}</BASE><TEMPORAL>{v.cvss_temporal}'
            "</TEMPORAL><VECTOR_STRING>CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P</VECTOR_STRING>"
            "<ACCESS><VECTOR>3</VECTOR><COMPLEXITY>1</COMPLEXITY></ACCESS><IMPACT>"
            "<CONFIDENTIALITY>2</CONFIDENTIALITY><INTEGRITY>2</INTEGRITY><AVAILABILITY>2"
            "</AVAILABILITY></IMPACT><AUTHENTICATION>1</AUTHENTICATION><EXPLOITABILITY>3"
            "</EXPLOITABILITY><REMEDIATION_LEVEL>1</REMEDIATION_LEVEL><REPORT_CONFIDENCE>3"
            "</REPORT_CONFIDENCE></CVSS>"
            f"<CVSS_V3><BASE>{v.cvss3_base}</BASE><TEMPORAL>{v.cvss3_temporal}</TEMPORAL>"
            f"<VECTOR_STRING>{v.cvss3_vector}</VECTOR_STRING><CVSS3_VERSION>3.1</CVSS3_VERSION>"
            "<ATTACK><VECTOR>1</VECTOR><COMPLEXITY>1</COMPLEXITY></ATTACK><IMPACT>"
            "<CONFIDENTIALITY>1</CONFIDENTIALITY><INTEGRITY>1</INTEGRITY><AVAILABILITY>1"
            "</AVAILABILITY></IMPACT><PRIVILEGES_REQUIRED>1</PRIVILEGES_REQUIRED>"
            "<USER_INTERACTION>1</USER_INTERACTION><SCOPE>1</SCOPE><EXPLOIT_CODE_MATURITY>2"
            "</EXPLOIT_CODE_MATURITY><REMEDIATION_LEVEL>1</REMEDIATION_LEVEL><REPORT_CONFIDENCE>1"
            "</REPORT_CONFIDENCE></CVSS_V3>"
        )
        parts.append(cvss_v4(v))
        parts.append(f"<PCI_FLAG>{v.pci_flag}</PCI_FLAG>")
        if "show_pci_reasons" in flags and v.pci_reasons:
            parts.append("<PCI_REASONS>" + "".join(
                f"<PCI_REASON>{cdata(r)}</PCI_REASON>" for r in v.pci_reasons) + "</PCI_REASONS>")
        if v.threat_intel:
            parts.append("<THREAT_INTELLIGENCE>" + "".join(
                f'<THREAT_INTEL id="{i}">{cdata(n)}</THREAT_INTEL>' for i, n in v.threat_intel
            ) + "</THREAT_INTELLIGENCE>")
        if "show_supported_modules_info" in flags and v.supported_modules:
            parts.append(f"<SUPPORTED_MODULES>{cdata(v.supported_modules)}</SUPPORTED_MODULES>")
    auth = _list("AUTH_TYPE_LIST", "".join(f"<AUTH_TYPE>{a}</AUTH_TYPE>" for a in v.auth_types))
    parts.append(f"<DISCOVERY><REMOTE>{v.remote}</REMOTE>{auth}</DISCOVERY>")
    if "show_disabled_flag" in flags:
        parts.append(f"<IS_DISABLED>{v.disabled}</IS_DISABLED>")
    if "show_qid_change_log" in flags and v.change_log:
        parts.append("<CHANGE_LOG_LIST>" + "".join(
            f"<CHANGE_LOG_INFO><CHANGE_DATE>{fmt(d)}</CHANGE_DATE><COMMENTS>{cdata(c)}</COMMENTS>"
            "</CHANGE_LOG_INFO>" for d, c in v.change_log) + "</CHANGE_LOG_LIST>")
    parts.append("\n      </VULN>\n")
    return "".join(parts)


CVSS4_VECTORS = (
    "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
    "CVSS:4.0/AV:L/AC:L/AT:P/PR:L/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N",
    "CVSS:4.0/AV:N/AC:H/AT:N/PR:N/UI:A/VC:L/VI:L/VA:N/SC:L/SI:L/SA:N/E:P",
)


def cvss_v4(v: Vuln) -> str:
    """Doc §5: CVSS_V4 is new in 2026 and its inner shape is unsure, so the simulator varies it.

    Only every third QID has one (derived from the QID, so no data draw changes). Every block has
    BASE and VECTOR_STRING; the rest varies: plain extra scalars, or nested groups.
    """
    if v.qid % 3:
        return ""
    vector = CVSS4_VECTORS[v.qid // 3 % len(CVSS4_VECTORS)]
    core = f"<BASE>{v.cvss3_base}</BASE><VECTOR_STRING>{vector}</VECTOR_STRING>"
    variant = v.qid // 3 % 4
    if variant == 1:
        extra = f"<THREAT>{v.cvss3_temporal}</THREAT><CVSS4_VERSION>4.0</CVSS4_VERSION>"
    elif variant == 2:
        extra = ("<THREAT_METRICS><EXPLOIT_MATURITY>A</EXPLOIT_MATURITY></THREAT_METRICS>"
                 "<SUPPLEMENTAL_METRICS><AUTOMATABLE>Y</AUTOMATABLE><RECOVERY>U</RECOVERY>"
                 "</SUPPLEMENTAL_METRICS>")
    elif variant == 3:
        extra = "<THREAT_METRICS />"
    else:
        extra = ""
    return f"<CVSS_V4>{core}{extra}</CVSS_V4>"

