"""Deterministic generators for hosts, detections and QIDs.

Every generator seeds its own ``random.Random`` from ``(world seed, kind, index[, epoch])`` so a
host or QID comes out identical whenever it is asked for, in any order, on any thread. The draw
order inside a generator is part of the data: changing it changes every generated value.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from qualys_simulator.model import CloudInfo, Detection, Epoch, Host, Tag, mix, unit

if TYPE_CHECKING:
    from qualys_simulator.world import World

DAY = timedelta(days=1)

TAGS = [
    Tag(7_100_001, "Cloud Agent", "#FFFFFF", "#2196F3"),
    Tag(7_100_002, "Production", "#FFFFFF", "#E53935"),
    Tag(7_100_003, "Linux Servers", "#000000", "#FFEB3B"),
    Tag(7_100_004, "Windows Servers", "#FFFFFF", "#3F51B5"),
    Tag(7_100_005, "PCI", "#FFFFFF", "#9C27B0"),
    Tag(7_100_006, "Internet Facing", "#FFFFFF", "#FF5722"),
    Tag(7_100_007, "Zone: EMEA", "#000000", "#8BC34A"),
    Tag(7_100_008, "Zone: AMER", "#000000", "#CDDC39"),
    Tag(7_100_009, "Business Unit: R&D", "#FFFFFF", "#607D8B"),
    Tag(7_100_010, "Owner: Müller & Söhne <EU>", "#FFFFFF", "#795548"),
    Tag(7_100_011, "Workstations", "#000000", "#00BCD4"),
    Tag(7_100_012, "Decommission", "#FFFFFF", "#000000"),
]

OSES = [
    ("Windows Server 2019 Datacenter 64 bit Edition Version 1809",
     "cpe:/o:microsoft:windows_server_2019:-:-:x64:", "win"),
    ("Windows Server 2022 Standard 64 bit Edition Version 21H2",
     "cpe:/o:microsoft:windows_server_2022:-:-:x64:", "win"),
    ("Windows 11 Enterprise 64 bit Edition Version 23H2",
     "cpe:/o:microsoft:windows_11:23h2:-:x64:", "win"),
    ("Red Hat Enterprise Linux 8.9", "cpe:/o:redhat:enterprise_linux:8.9:::", "linux"),
    ("Red Hat Enterprise Linux 9.4", "cpe:/o:redhat:enterprise_linux:9.4:::", "linux"),
    ("Ubuntu 22.04.4 LTS", "cpe:/o:canonical:ubuntu_linux:22.04:::", "linux"),
    ("Ubuntu 24.04.1 LTS", "cpe:/o:canonical:ubuntu_linux:24.04:::", "linux"),
    ("Amazon Linux 2023", "cpe:/o:amazon:linux_2023:-:::", "linux"),
    ("Cisco IOS XE 17.9.4a", "cpe:/o:cisco:ios_xe:17.9.4a:::", "net"),
    ("macOS 14.5", "cpe:/o:apple:mac_os:14.5:::", "mac"),
]
OS_FAMILY = {name: family for name, _, family in OSES}
OS_UPGRADES = {
    "Red Hat Enterprise Linux 8.9": "Red Hat Enterprise Linux 8.10",
    "Ubuntu 22.04.4 LTS": "Ubuntu 22.04.5 LTS",
    "macOS 14.5": "macOS 14.6.1",
}
TRACKING = ["IP", "IP", "DNS", "NETBIOS", "AGENT", "AGENT"]
PORTS = [(22, "tcp", 0, "ssh"), (80, "tcp", 0, "http"), (443, "tcp", 1, "https"),
         (445, "tcp", 0, "microsoft-ds"), (3389, "tcp", 1, "msrdp"), (8443, "tcp", 1, "https"),
         (161, "udp", 0, "snmp"), (123, "udp", 0, "ntp"), (1433, "tcp", 0, "mssql"),
         (3306, "tcp", 0, "mysql"), (25, "tcp", 0, "smtp")]
QDS_FACTORS = ["CVSS", "CVSS_version", "epss", "CVSS_vector", "RTI", "exploit_maturity",
               "CISA_vuln", "trending", "mitigation_controls"]
STATUSES = ["New", "Active", "Active", "Active", "Active", "Fixed", "Fixed", "Re-Opened"]
# KB VULN_TYPE by the code stored in World._kb_vuln_type.
VULN_TYPES = ["Vulnerability", "Potential Vulnerability", "Information Gathered",
              "Vulnerability or Potential Vulnerability"]
CATEGORIES = ["Windows", "Local", "Web server", "CGI", "General remote services", "Database",
              "Information gathering", "Security Policy", "TCP/IP", "SUSE", "Ubuntu", "RedHat"]


@dataclass(frozen=True)
class RealVuln:
    """A real, well-known QID: the first KnowledgeBase indices, so that queries people actually
    run (a CVE, "log4j") find rows. Only QIDs that Qualys' own pages and tools name are listed:
    Log4Shell (Qualys blog and Qualys/log4jscanwin) and MS17-010 / ETERNALBLUE (Qualys blog
    on WannaCry). Titles are descriptive; the CVE lists are the public ones."""

    qid: int
    title: str
    severity: int
    category: str
    published: datetime
    cves: tuple[str, ...]
    product: tuple[str, str]  # (PRODUCT, VENDOR)
    families: frozenset[str]  # OS families (OSES) the detection occurs on
    cvss_base: float
    cvss3_base: float
    cvss3_vector: str
    diagnosis: str


_LOG4J_DIAGNOSIS = ("<p>Apache Log4j2 2.0-beta9 through 2.14.1 JNDI features do not protect "
                    "against attacker-controlled LDAP and other JNDI endpoints (Log4Shell).</p>")
_MS17_010_CVES = ("CVE-2017-0143", "CVE-2017-0144", "CVE-2017-0145", "CVE-2017-0146",
                  "CVE-2017-0147", "CVE-2017-0148")
_LOG4J_VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"
_SMB_VECTOR = "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H"
_UTC = timezone.utc

# In QID order: World gives them the first indices, below every synthetic QID.
REAL_VULNS: tuple[RealVuln, ...] = (
    RealVuln(91345, "Microsoft SMB Server Security Update (MS17-010)", 5, "Windows",
             datetime(2017, 3, 14, tzinfo=_UTC), _MS17_010_CVES, ("windows", "microsoft"),
             frozenset({"win"}), 9.3, 8.1, _SMB_VECTOR,
             "<p>Microsoft SMBv1 server mishandles certain requests (MS17-010).</p>"),
    RealVuln(91360, "Microsoft SMBv1 Remote Code Execution Vulnerability (ETERNALBLUE) (MS17-010)",
             5, "Windows", datetime(2017, 4, 14, tzinfo=_UTC), ("CVE-2017-0144",),
             ("windows", "microsoft"), frozenset({"win"}), 9.3, 8.1, _SMB_VECTOR,
             "<p>ETERNALBLUE exploits the SMBv1 flaw fixed by MS17-010.</p>"),
    RealVuln(376157, "Apache Log4j Remote Code Execution (RCE) Vulnerability (Log4Shell)", 5,
             "Local", datetime(2021, 12, 10, tzinfo=_UTC), ("CVE-2021-44228",),
             ("log4j", "apache"), frozenset({"linux", "win"}), 9.3, 10.0, _LOG4J_VECTOR,
             _LOG4J_DIAGNOSIS),
    RealVuln(376160, "Apache Log4j Vulnerability Detected by the Qualys Log4j Scan Utility "
             "(Log4Shell)", 5, "Local", datetime(2021, 12, 17, tzinfo=_UTC),
             ("CVE-2021-44228", "CVE-2021-45046"), ("log4j", "apache"), frozenset({"win"}),
             9.3, 10.0, _LOG4J_VECTOR, _LOG4J_DIAGNOSIS),
    RealVuln(730297, "Apache Log4j Remote Code Execution (RCE) Vulnerability (Log4Shell) "
             "(Unauthenticated Check)", 5, "CGI", datetime(2021, 12, 11, tzinfo=_UTC),
             ("CVE-2021-44228",), ("log4j", "apache"), frozenset({"linux", "win"}), 9.3, 10.0,
             _LOG4J_VECTOR, _LOG4J_DIAGNOSIS),
)
#: Share of the hosts of a matching OS family on which each real QID is detected.
REAL_VULN_SHARE = 0.2

# RESULTS text pieces. Some are XML-hostile on purpose: the renderer must escape them.
RESULT_LINES = [
    "Package\tInstalled Version\tRequired Version",
    "openssl\t3.0.2-0ubuntu1.10\t3.0.2-0ubuntu1.15",
    "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion CurrentBuild = 17763",
    "Server: Apache/2.4.41 (Ubuntu)",
    "TLSv1.0 is enabled; cipher TLS_RSA_WITH_3DES_EDE_CBC_SHA & RC4 accepted",
    "<html><title>Index of /</title></html>",
    "CDATA terminator inside text: ]]> and again ]]]]>",
    "Größe: 5 MiB — Überprüfung fehlgeschlagen (naïve café) 漏洞 検出",
    "\"quoted\" 'single' a<b && c>d",
    "%SystemRoot%\\System32\\drivers\\srv2.sys  Version is  10.0.17763.1",
]


def _dt(base: datetime, seconds: float) -> datetime:
    # Bases are whole seconds already; int() keeps results whole too.
    return base + timedelta(seconds=int(seconds))


def make_host(world: World, index: int, created: Epoch | None) -> Host:
    """Host ``index`` as created (at start, or by the advance ``created``), before any rescan."""
    rng = random.Random(mix(world.seed, 1, index))
    host_id = world.host_id_of(index)
    if created is None:
        window_end = world.options.start
        window = 30 * 86400.0
    else:
        window_end = created.end
        window = max((created.end - created.start).total_seconds(), 1.0)
    os_name, os_cpe, family = OSES[rng.randrange(len(OSES))]
    tracking = TRACKING[rng.randrange(len(TRACKING))]
    cloud_roll = rng.random()
    name = f"{family}-{index:06d}"
    domain = rng.choice(["corp.example.com", "dmz.example.net", "eu.example.org"])
    scanned = _dt(window_end, -rng.random() * window)
    processed = min(scanned + timedelta(minutes=rng.randint(2, 180)), window_end)
    first_found = scanned if created else _dt(scanned, -rng.randint(0, 800) * 86400)
    tags = [TAGS[t] for t in sorted(rng.sample(range(len(TAGS)), rng.randint(0, 4)))]
    cloud = None
    if cloud_roll < 0.15:
        aws = cloud_roll < 0.10
        instance = f"i-{mix(world.seed, 12, index):017x}"[:19]
        stamp = scanned.strftime("%Y-%m-%dT%H:%M:%SZ")
        if aws:
            tracking = "EC2"
            region = rng.choice(["us-east-1", "eu-west-1", "ap-southeast-2"])
            attributes = [
                ("latest/meta-data/instance-id", instance, stamp),
                ("latest/meta-data/placement/availability-zone", region + "a", stamp),
                ("latest/meta-data/instance-type", rng.choice(["t3.micro", "m5.large"]), stamp),
            ]
            cloud = CloudInfo("AWS", "EC2", instance, instance, "EC2", attributes,
                              [("Name", name, stamp), ("env", rng.choice(["prod", "dev"]), stamp)])
        else:
            vm_id = f"{mix(world.seed, 13, index):032x}"
            resource = (f"/subscriptions/{vm_id[:8]}-{vm_id[8:12]}-{vm_id[12:16]}/resourceGroups/"
                        f"rg-{index % 7}/providers/Microsoft.Compute/virtualMachines/{name}")
            attributes = [
                ("compute/vmId", vm_id, stamp),
                ("compute/location", rng.choice(["westeurope", "eastus2"]), stamp),
            ]
            cloud = CloudInfo("Azure", "VM", resource, None, "AZURE", attributes,
                              [("costcenter", f"CC-{index % 97}", stamp)])
    auth = rng.random() < 0.6
    octets = mix(world.seed, 14, index)
    return Host(
        index=index,
        id=host_id,
        asset_id=30_000_000 + 16 * index + mix(world.seed, 15, index) % 16,
        ip=f"10.{octets >> 8 & 255}.{index >> 8 & 255}.{index & 255}",
        ipv6=(f"fd00:{index >> 16 & 0xffff:x}:{index & 0xffff:x}::{octets & 0xfff:x}"
              if rng.random() < 0.3 else None),
        dns=f"{name}.{domain}",
        hostname=name,
        domain=domain,
        fqdn=f"{name}.{domain}",
        netbios=name.upper().replace("-", "")[:15],
        os=os_name,
        os_cpe=os_cpe,
        tracking_method=tracking,
        network_id=0,
        qg_hostid=f"{mix(world.seed, 16, index):032x}"[:36] if tracking in ("AGENT", "EC2") else "",
        tags=tags,
        cloud=cloud,
        first_found=first_found,
        last_vm_scanned=scanned,
        last_vm_scanned_duration=rng.randint(30, 4000),
        last_vm_auth_scanned=scanned if auth else None,
        last_vm_auth_scanned_duration=rng.randint(30, 4000) if auth else None,
        last_vm_processed=processed,
        last_compliance_scan=_dt(scanned, -rng.randint(0, 20) * 86400) if auth else None,
        owner=rng.choice(["jdoe", "asmith", "qa_sim_user"]),
        comments=rng.choice([None, "Rack 4 & 5", "Migrated from DC-Nord — siehe Ticket <1234>"]),
        trurisk_score=rng.randint(0, 1000),
        asset_criticality=rng.randint(1, 5),
        last_boot=_dt(scanned, -rng.randint(3600, 90 * 86400)),
        serial_number=f"SN{mix(world.seed, 17, index) % 10**10:010d}",
        hardware_uuid=f"{mix(world.seed, 18, index):016x}-{mix(world.seed, 19, index):016x}",
        agent_status="STATUS_ACTIVE" if tracking in ("AGENT", "EC2") else None,
        detection_seed=rng.getrandbits(32),
    )


def rescan_host(world: World, host: Host, epoch: Epoch, scanned: datetime,
                processed: datetime) -> None:
    """Apply the rescan of ``epoch`` to ``host``: scan dates, now and then an OS upgrade."""
    rng = random.Random(mix(world.seed, 6, host.index, epoch.number))
    host.last_vm_scanned = scanned
    host.last_vm_processed = processed
    host.last_vm_scanned_duration = rng.randint(30, 4000)
    if host.last_vm_auth_scanned is not None:
        host.last_vm_auth_scanned = scanned
    if rng.random() < 0.1 and host.os in OS_UPGRADES:
        host.os = OS_UPGRADES[host.os]


# Doubled so that any run of up to len(RESULT_LINES) lines is one slice.
_RESULT_RING = RESULT_LINES * 2


def _results(world: World, bits: int, rng: random.Random) -> str | None:
    roll = (bits & 0xFFFF) / 65536.0
    if roll < 0.08:
        return None
    if roll < 0.08 + world.options.long_results_fraction:
        # Tens of KB: long package listings are common in real RESULTS.
        size = rng.randint(300, 900)
        return "\n".join(RESULT_LINES * (size // len(RESULT_LINES)))
    start = (bits >> 18) % len(RESULT_LINES)
    return "\n".join(_RESULT_RING[start:start + 1 + (bits >> 16) % 4])


def _new_detection(world: World, host: Host, rng: random.Random, k: int, *, serial: int,
                   first_found: datetime, status: str, processed: datetime) -> Detection:
    # One 128-bit draw per detection, sliced into fields: generation speed bounds how fast
    # the simulator can stream, and most fields only need a few bits each.
    bits = rng.getrandbits(128)
    severity = world.kb_severity(k)
    vt = world.kb_vuln_type(k)
    kind = ("Confirmed", "Potential", "Info")[vt] if vt < 3 else (
        "Confirmed" if bits & 1 else "Potential")
    port = protocol = ssl = service = None
    if kind != "Info" or (bits >> 1) % 10 < 3:
        port, protocol, ssl, service = PORTS[(bits >> 5) % len(PORTS)]
    qds = None
    qds_bits = bits >> 64
    if kind != "Info":
        qds = max(1, min(100, severity * 18 + qds_bits % 31 - 15))
    scanned = host.last_vm_scanned
    return Detection(
        (host.index + 1) * 4096 + serial, world.qid_of(k), kind, severity, port, protocol, ssl,
        None, _results(world, bits >> 10, rng), status, first_found, scanned,
        1 if status == "New" else 2 + (bits >> 40) % 299, scanned, processed,
        None, None, None, 0, qds, qds_bits, processed, service,
    )


def make_detections(world: World, host: Host, created: Epoch | None) -> list[Detection]:
    """The detections of ``host`` as created; ``host`` must be its state before any rescan."""
    rng = random.Random(mix(world.seed, 2, host.index))
    options = world.options
    if rng.random() < options.no_detection_fraction:
        return []
    # Mean count = detections_per_host over all hosts, hosts without detections included.
    top = max(1, round(2 * options.detections_per_host / (1 - options.no_detection_fraction) - 1))
    count = min(rng.randint(1, top), options.kb_size, 3000)
    detections: list[Detection] = []
    drawn = rng.sample(range(options.kb_size), count)
    for k in drawn:
        detections.append(_created_detection(world, host, created, rng, k,
                                             serial=len(detections)))
    # The real QIDs sit on a fixed share of the hosts of their OS family, from their own hash so
    # that the draws above (and every other detection) do not depend on them.
    family = OS_FAMILY.get(host.os)
    for k, real in enumerate(REAL_VULNS[:options.kb_size]):
        if k not in drawn and family in real.families and \
                unit(world.seed, 22, host.index, k) < REAL_VULN_SHARE:
            own = random.Random(mix(world.seed, 23, host.index, k))
            detections.append(_created_detection(world, host, created, own, k,
                                                 serial=len(detections)))
    return detections


def _created_detection(world: World, host: Host, created: Epoch | None, rng: random.Random,
                       k: int, *, serial: int) -> Detection:
    scanned = host.last_vm_scanned
    processed = host.last_vm_processed
    bits = rng.getrandbits(32)
    if created is None:
        status = STATUSES[bits % len(STATUSES)]
        first = _dt(scanned, -(1 + (bits >> 3) % 700) * 86400)
    else:
        status, first = "New", scanned
    detection = _new_detection(world, host, rng, k, serial=serial, first_found=first,
                               status=status, processed=processed)
    if status == "Fixed":
        detection.last_fixed = scanned
        detection.last_found = max(first, _dt(scanned, -(7 + (bits >> 13) % 54) * 86400))
    elif status == "Re-Opened":
        detection.times_reopened = 1 + (bits >> 19) % 3
        detection.first_reopened = _dt(scanned, -(30 + (bits >> 21) % 61) * 86400)
        detection.last_reopened = scanned
        detection.last_fixed = _dt(scanned, -(7 + (bits >> 27) % 23) * 86400)
    return detection


def rescan_detections(world: World, host: Host, detections: list[Detection], epoch: Epoch, *,
                      scanned: datetime, processed: datetime) -> None:
    """Apply the rescan of ``epoch`` to a host's detections: fixes, re-opens, new ones."""
    rng = random.Random(mix(world.seed, 3, host.index, epoch.number))
    if not detections and rng.random() < 0.8:
        return  # hosts without findings mostly stay clean
    for d in detections:
        roll = rng.random()
        d.last_test = scanned
        d.last_processed = processed
        if d.status == "Fixed":
            if roll < epoch.reopen_probability:
                d.status = "Re-Opened"
                d.last_found = scanned
                d.times_found += 1
                d.times_reopened += 1
                d.first_reopened = d.first_reopened or scanned
                d.last_reopened = scanned
                d.last_update = processed
        elif roll < epoch.fix_probability:
            d.status = "Fixed"
            d.last_fixed = scanned
            d.last_update = processed
        else:
            if d.status != "Active":
                d.last_update = processed
            d.status = "Active"
            d.last_found = scanned
            d.times_found += 1
    owned = {world.index_of_qid(d.qid) for d in detections}
    for _ in range(rng.randint(0, 2)):
        k = rng.randrange(world.options.kb_size)
        if k in owned or len(detections) >= 4000:
            continue
        owned.add(k)
        serial = len(detections)
        detections.append(_new_detection(world, host, rng, k, serial=serial,
                                         first_found=scanned, status="New",
                                         processed=processed))


# ---- KnowledgeBase ---------------------------------------------------------------------------
@dataclass(slots=True)
class Vuln:
    """One KnowledgeBase entry (a QID) with its dates, CVEs and texts."""
    qid: int
    vuln_type: str
    severity: int
    title: str
    category: str
    published: datetime
    last_modified: datetime
    code_modified: datetime
    patch_published: datetime | None
    patchable: int
    cves: list[str]
    bugtraq: list[int]
    software: list[tuple[str, str]]
    vendor_refs: list[tuple[str, str]]
    diagnosis: str
    consequence: str
    solution: str
    compliance: list[tuple[str, str, str]]
    exploits: list[tuple[str, str, str]]
    malware: list[tuple[str, str]]
    cvss_base: float
    cvss_temporal: float
    cvss3_base: float
    cvss3_temporal: float
    cvss3_vector: str
    pci_flag: int
    pci_reasons: list[str]
    threat_intel: list[tuple[int, str]]
    supported_modules: str | None
    remote: int
    auth_types: list[str]
    disabled: int
    change_log: list[tuple[datetime, str]] = field(default_factory=list)


def kb_class(world: World, k: int) -> tuple[int, int]:
    """(severity, vuln type code) of QID index ``k``: the first draws of make_vuln's RNG."""
    rng = random.Random(mix(world.seed, 20, k))
    severity = rng.randint(1, 5)
    roll = rng.random()
    vuln_type = 0 if roll < 0.55 else 1 if roll < 0.75 else 2 if roll < 0.9 else 3
    if k < len(REAL_VULNS):
        return REAL_VULNS[k].severity, 0
    return severity, vuln_type


def make_vuln(world: World, k: int) -> Vuln:
    """KnowledgeBase entry ``k`` as it is now, its modifications by later advances included."""
    rng = random.Random(mix(world.seed, 20, k))
    severity = rng.randint(1, 5)
    rng.random()  # the vuln type roll, already taken by kb_class
    vuln_type = VULN_TYPES[world.kb_vuln_type(k)]
    qid = world.qid_of(k)
    created = world.kb_created_epoch(k)
    start = world.options.start
    if created is None:
        published = _dt(start, -rng.randint(30, 3 * 365) * 86400 - rng.randint(0, 86399))
        last_modified = _dt(published, rng.random() * (start - published).total_seconds())
    else:
        published = _dt(created.end, -rng.random() * (created.end - created.start).total_seconds())
        last_modified = published
    change_log = []
    for epoch in world.kb_modifications(k):
        last_modified = _dt(epoch.end, -rng.random() * 3600)
        change_log.append((last_modified, "Detection logic updated; CVSS re-scored"))
    product = rng.choice(["openssl", "apache http server", "windows", "chrome", "log4j"])
    vendor = rng.choice(["openssl", "apache", "microsoft", "google", "apache"])
    cve_count = rng.choice([0, 1, 1, 2, 3, 5])
    year = 2015 + k % 11
    cves = [f"CVE-{year}-{10000 + (k * 7 + i * 131) % 89999}" for i in range(cve_count)]
    title = rng.choice([
        f"{product.title()} Multiple Vulnerabilities (QID {qid})",
        f"Microsoft Windows Security Update for {['January', 'June', 'Oktober'][k % 3]} {year}",
        f"{product} < {k % 9}.{k % 17}.{k % 5} Remote Code Execution & Denial of Service",
        f"Überprüfung: {product} configuration weakness — «{k}»",
    ])
    cvss3_vector = rng.choice([
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N",
        "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:L/I:L/A:N",
    ])
    pci_flag = 1 if severity >= 4 or rng.random() < 0.2 else 0
    vuln = Vuln(
        qid=qid,
        vuln_type=vuln_type,
        severity=severity,
        title=title,
        category=rng.choice(CATEGORIES),
        published=published,
        last_modified=last_modified,
        code_modified=min(last_modified, _dt(published, 86400 * rng.randint(0, 30))),
        patch_published=published if rng.random() < 0.7 else None,
        patchable=1 if rng.random() < 0.7 else 0,
        cves=cves,
        bugtraq=[100000 + k] if rng.random() < 0.2 else [],
        software=[(product, vendor)],
        vendor_refs=[(f"{vendor.upper()}-SA-{year}-{k % 1000:03d}",
                      f"https://{vendor}.example.com/advisories/{k}")]
        if rng.random() < 0.6 else [],
        diagnosis=(f"<p>The {product} package before version {k % 9}.{k % 17} is affected by "
                   f"a flaw in the <b>parser</b> &amp; the &lt;config&gt; loader.</p>"
                   "<p>Affected: a &lt; b, \"quoted\", ]]&gt; & naïve ümlaut text.</p>"),
        consequence="<p>Successful exploitation allows a remote attacker to execute code.</p>",
        solution=(f"<p>Update to the latest version. Refer to <a href=\"https://{vendor}"
                  f".example.com/advisories/{k}\" target=\"_blank\">{vendor} advisory</a>.</p>"
                  "<p>Patch:<br/>Following are links for downloading patches to fix the "
                  "vulnerabilities:</p>"),
        compliance=[("PCI", "6.2", "Ensure all system components are protected")]
        if pci_flag else [],
        exploits=[("The Exploit-DB", f"CVE-{year}-{10000 + k}", f"{product} remote exploit")]
        if rng.random() < 0.2 else [],
        malware=[("Trend Micro", "BKDR_GENERIC")] if rng.random() < 0.05 else [],
        cvss_base=round(rng.uniform(1.0, 10.0), 1),
        cvss_temporal=round(rng.uniform(1.0, 8.0), 1),
        cvss3_base=round(rng.uniform(1.0, 10.0), 1),
        cvss3_temporal=round(rng.uniform(1.0, 9.0), 1),
        cvss3_vector=cvss3_vector,
        pci_flag=pci_flag,
        pci_reasons=["Vulnerability has a CVSS v3 score of 4.0 or higher"] if pci_flag else [],
        threat_intel=[(i, name) for i, name in ((1, "Zero_Day"), (2, "Exploit_Public"),
                                                (5, "Remote_Code_Execution"))
                      if rng.random() < 0.2],
        supported_modules=rng.choice([None, "CA-Windows Agent,CA-Linux Agent", "VM"]),
        remote=1 if rng.random() < 0.6 else 0,
        auth_types=rng.sample(["Windows Authentication", "Unix Authentication"], rng.randint(0, 2)),
        disabled=1 if rng.random() < 0.01 else 0,
        change_log=change_log,
    )
    if k < len(REAL_VULNS):
        _make_real(vuln, REAL_VULNS[k], created is None)
    return vuln


def _make_real(vuln: Vuln, real: RealVuln, initial: bool) -> None:
    """Replace the facts of a generated entry by those of its real QID; the rest stays generated."""
    vuln.title = real.title
    vuln.severity = real.severity
    vuln.vuln_type = VULN_TYPES[0]
    vuln.category = real.category
    vuln.cves = list(real.cves)
    vuln.software = [real.product]
    vuln.diagnosis = real.diagnosis
    vuln.cvss_base = real.cvss_base
    vuln.cvss3_base = real.cvss3_base
    vuln.cvss3_vector = real.cvss3_vector
    vuln.exploits = []
    vuln.vendor_refs = []
    vuln.disabled = 0
    vuln.pci_flag = 1
    vuln.pci_reasons = ["Vulnerability has a CVSS v3 score of 4.0 or higher"]
    vuln.compliance = [("PCI", "6.2", "Ensure all system components are protected")]
    if initial:
        # Generated dates could precede the real publication; Qualys' own modifications follow it.
        vuln.published = real.published
        vuln.code_modified = max(vuln.code_modified, real.published)
        vuln.last_modified = max(vuln.last_modified, real.published)
        if vuln.patch_published is not None:
            vuln.patch_published = real.published
