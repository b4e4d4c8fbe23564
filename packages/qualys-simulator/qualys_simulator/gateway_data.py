"""Deterministic, lazily built data behind the simulated gateway: CSAM assets and PCRS postures.

Nothing here knows about HTTP. Every value is a pure function of the run seed, the index of the
thing and the list of clock advances so far, so two simulators started with the same seed and
advanced the same way serve byte-identical data, whatever order pages are requested in. Full
documents (an asset's nested inventory, a posture record) are only built when served; what is
kept in memory is one small row per asset and per (policy, host) pair, because filters such as
``asset.lastUpdated`` and ``lastScanDate`` need it for every row on every page.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from qualys_simulator.model import Epoch, Host
from qualys_simulator.world import World

SUBSCRIPTION_ID = "6184390"
CUSTOMER_UUID = "9d1c2f5e-3b7a-4c6e-8f0a-5e2d1b7c4a90"

# Base of the asset id range; real CSAM ids are 8-9 digit integers.
ASSET_ID_BASE = 60_000_000
ASSET_ID_STRIDE = 7
# Software ids in CSAM are 64-bit hashes; starting above 2**53 makes float-parsing clients lose
# precision visibly, which is the bug the tap must not have.
SOFTWARE_ID_BASE = 2**53 + 1_000_003
POLICY_ID_BASE = 4_120_000


# ---------------------------------------------------------------------------------------------
# small deterministic helpers


def unit(*parts: object) -> float:
    """A uniform float in [0, 1) derived from ``parts``; stable across processes and platforms."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def rng(*parts: object) -> random.Random:
    """A random generator seeded by ``parts``: the same numbers in every process."""
    # Seeding with a str hashes it with SHA-512, independent of PYTHONHASHSEED.
    return random.Random("|".join(map(str, parts)))


# Posture records repeat the same few dates thousands of times; strftime dominates otherwise.
@functools.lru_cache(maxsize=1 << 16)
def iso_ms(moment: datetime) -> str:
    """CSAM's ISO form with milliseconds, e.g. ``2025-07-11T14:21:10.000Z``."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@functools.lru_cache(maxsize=1 << 16)
def iso_s(moment: datetime) -> str:
    """PCRS dates: ISO to the second with a ``Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_ms(moment: datetime) -> int:
    """CSAM's other date format (agent, sensor, inventory): integer epoch milliseconds."""
    return int(moment.timestamp() * 1000)


def parse_datetime(text: str) -> datetime:
    """Parse the date forms clients send as filters: ISO (with or without ms/Z), a bare date, or
    epoch milliseconds. Raises ValueError for anything else, which callers turn into 400s."""
    value = text.strip()
    if value.isdigit() and len(value) >= 10:
        return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc)
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


# ---------------------------------------------------------------------------------------------
# CSAM

_OS_CHOICES: tuple[tuple[str, str, str, str, str], ...] = (
    # (osName, category1, publisher, marketVersion, architecture)
    ("Microsoft Windows Server 2019 Datacenter", "Windows", "Microsoft", "2019", "64-Bit"),
    ("Microsoft Windows Server 2022 Standard", "Windows", "Microsoft", "2022", "64-Bit"),
    ("Microsoft Windows 10 Enterprise", "Windows", "Microsoft", "10", "64-Bit"),
    ("Red Hat Enterprise Linux 8.9", "Linux", "Red Hat", "8", "x86_64"),
    ("Ubuntu Linux 22.04.4 LTS", "Linux", "Canonical", "22.04", "x86_64"),
    ("CentOS Linux 7.9.2009", "Linux", "CentOS", "7", "x86_64"),
)
_SOFTWARE: tuple[tuple[str, str, str, str], ...] = (
    # (publisher, product, category, version pattern)
    ("Microsoft", "Edge", "Internet / Browser", "12{a}.0.{b}.{c}"),
    ("Google", "Chrome", "Internet / Browser", "12{a}.0.{b}.{c}"),
    ("Mozilla", "Firefox", "Internet / Browser", "12{a}.0.{c}"),
    ("Oracle", "Java Runtime Environment", "Development / Runtime", "1.8.0_{b}"),
    ("OpenSSL", "OpenSSL", "Security / Encryption", "3.0.{a}"),
    ("Apache", "Log4j", "Development / Library", "2.{a}.{c}"),
    ("Microsoft", "SQL Server", "Database / Server", "15.0.{b}.{c}"),
    ("Adobe", "Acrobat Reader DC", "Office / Viewer", "24.{a}.{b}"),
    ("7-Zip", "7-Zip", "Utility / Compression", "2{a}.0{c}"),
    ("VMware", "Tools", "Virtualization / Agent", "12.{a}.{c}"),
    ("Python Software Foundation", "Python", "Development / Runtime", "3.{a}.{c}"),
    ("Qualys", "Cloud Agent", "Security / Endpoint", "6.{a}.0.{b}"),
)
# A few fixed versions so "hosts running Cloud Agent version X" has many answers (seed 001).
AGENT_VERSIONS = ("6.1.0.28", "6.0.0.41", "5.9.0.14", "6.2.0.8", "4.8.0.31")
_PROFILES = ("Initial Profile", "Server Profile", "Workstation Profile", "PCI Scope")
_MODULES = ("VM", "PC", "CSAM", "EDR", "PM", "FIM")
_CLOUD = ("aws", "azure", "gcp")
_USERS = ("Administrator", "svc_backup", "jdoe", "asmith", "root", "oracle", "qualys_scan")
_PORTS = ((22, "TCP", "ssh"), (80, "TCP", "http"), (443, "TCP", "https"), (135, "TCP", "msrpc"),
          (445, "TCP", "microsoft-ds"), (1433, "TCP", "ms-sql-s"), (3389, "TCP", "ms-wbt-server"),
          (161, "UDP", "snmp"), (5432, "TCP", "postgresql"), (8080, "TCP", "http-proxy"))
_SERVICES = ("sshd", "W32Time", "Spooler", "QualysAgent", "crond", "MSSQLSERVER", "nginx")

# Top-level asset keys, in output order; includeFields names from this list.
ASSET_FIELDS: tuple[str, ...] = (
    "assetId", "assetUUID", "hostId", "lastModifiedDate", "agentId", "createdDate",
    "sensorLastUpdatedDate", "assetType", "address", "dnsName", "assetName", "netbiosName",
    "timeZone", "biosDescription", "lastBoot", "totalMemory", "cpuCount", "lastLoggedOnUser",
    "domainRole", "hwUUID", "biosSerialNumber", "biosAssetTag", "isContainerHost",
    "operatingSystem", "hardware", "userAccountListData", "openPortListData", "volumeListData",
    "networkInterfaceListData", "softwareListData", "softwareComponent", "provider",
    "cloudProvider", "agent", "sensor", "container", "inventory", "activity", "tagList",
    "serviceList", "lastLocation", "criticality", "businessInformation", "assignedLocation",
    "businessAppListData", "riskScore", "passiveSensor", "domain", "subdomain", "missingSoftware",
    "whois", "organizationName", "isp", "asn", "easmTags", "hostingCategory1", "customAttributes",
    "processor",
)


@dataclass
class CsamConfig:
    """How many CSAM assets there are and how much each advance changes."""
    asset_count: int | None = None  # None: 1.5 x the World's host count
    modify_share: float = 0.10  # of existing assets touched per advance
    add_share: float = 0.02  # new assets per advance, relative to the initial count
    inventory_key: str = "inventory"  # or "inventoryListData" / "inventory_list_data" (§8)


@dataclass
class _AssetRow:
    """What filters and ground truth need without building the document."""

    key: str  # "h<host index>" for assets of VM hosts, "u<n>" for CSAM-only assets
    asset_id: int
    host_index: int | None
    host_id: int | None
    created: datetime
    last_modified: datetime
    revision: int  # how many advances touched it; drives agent check-in and software drift


@dataclass(frozen=True)
class AssetIdentity:
    """The few values of an asset that ground truth needs."""
    name: str
    agent_version: str | None  # None: no Cloud Agent on this asset
    checked_in: datetime


@dataclass
class CsamData:
    """The CSAM assets: one per VM host first, then unlinked ones; changed at each advance."""
    world: World
    config: CsamConfig = field(default_factory=CsamConfig)
    _rows: list[_AssetRow] = field(default_factory=list, init=False)
    _unlinked: int = field(default=0, init=False)
    _initial_unlinked: int = field(default=0, init=False)
    _built: bool = field(default=False, init=False)
    _applied: int = field(default=0, init=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False)

    @property
    def seed(self) -> int:
        return self.world.seed

    # -- state ---------------------------------------------------------------------------------

    def rows(self) -> list[_AssetRow]:
        """The asset rows, sorted by assetId, after replaying every advance not yet applied."""
        with self._lock:
            if not self._built:
                self._build_initial()
            epochs = self.world.epochs
            for epoch in epochs[self._applied :]:
                self._apply(epoch)
            self._applied = len(epochs)
            return list(self._rows)

    def _build_initial(self) -> None:
        self._built = True
        start = self.world.options.start
        hosts = self.world.options.hosts
        total = self.config.asset_count
        if total is None:
            total = (hosts * 3 + 1) // 2
        # Every VM host has its CSAM asset (assetId = the Host List ASSET_ID, hostId = its ID);
        # the rest are assets CSAM discovered that VM never scanned, which have no hostId.
        for index in range(min(hosts, total)):
            host = self.world.host_at(index)
            modified = start - timedelta(seconds=unit(self.seed, "asset-mod0", index) * 30 * 86400)
            self._rows.append(_AssetRow(f"h{index}", host.asset_id, index, host.id,
                                        _ms(min(host.first_found, modified)), _ms(modified), 0))
        self._initial_unlinked = max(total - hosts, 0)
        for _ in range(self._initial_unlinked):
            self._add_unlinked(None)
        self._rows.sort(key=lambda row: row.asset_id)

    def _add_unlinked(self, epoch: Epoch | None) -> None:
        n = self._unlinked
        self._unlinked += 1
        # Strictly increasing with n (jitter < stride), above every Host List ASSET_ID.
        asset_id = ASSET_ID_BASE + n * ASSET_ID_STRIDE + int(unit(self.seed, "aid", n) * 5)
        if epoch is None:
            start = self.world.options.start
            created = start - timedelta(days=60 + unit(self.seed, "created", n) * 840)
            modified = start - timedelta(seconds=unit(self.seed, "u-mod0", n) * 30 * 86400)
        else:
            created = modified = _moment_in(epoch, unit(self.seed, "u-new", n))
        self._rows.append(_AssetRow(f"u{n}", asset_id, None, None, _ms(created), _ms(modified), 0))

    def _apply(self, epoch: Epoch) -> None:
        for row in self._rows:
            if unit(self.seed, "asset-mod", epoch.number, row.key) < self.config.modify_share:
                moment = _moment_in(epoch, unit(self.seed, "asset-mod-at", epoch.number, row.key))
                row.last_modified = _ms(moment)
                row.revision += 1
        # New VM hosts appear in CSAM too, and CSAM keeps discovering unscanned assets.
        for index in range(epoch.new_hosts_from, epoch.new_hosts_from + epoch.new_hosts):
            host = self.world.host_at(index)
            moment = _ms(_moment_in(epoch, unit(self.seed, "h-new", index)))
            self._rows.append(_AssetRow(f"h{index}", host.asset_id, index, host.id, moment,
                                        moment, 0))
        for _ in range(max(round(self._initial_unlinked * self.config.add_share), 1)):
            self._add_unlinked(epoch)
        self._rows.sort(key=lambda row: row.asset_id)

    # -- documents -----------------------------------------------------------------------------

    def identity(self, row: _AssetRow, host: Host | None = None) -> AssetIdentity:
        """The few asset values ground truth needs, without building the whole document."""
        if host is None and row.host_index is not None:
            host = self.world.host_at(row.host_index)
        if host is not None:
            name = host.hostname
            has_agent = host.tracking_method in {"AGENT", "EC2"}
        else:
            kinds = ("srv", "ws", "db", "app", "web")
            name = f"{kinds[int(unit(self.seed, 'asset-name', row.key) * len(kinds))]}-{row.key}"
            has_agent = unit(self.seed, "has-agent", row.key) < 0.5
        version = AGENT_VERSIONS[int(unit(self.seed, "agent-version", row.key)
                                     * len(AGENT_VERSIONS))]
        # The agent checks in shortly before each change the asset shows.
        checked_in = row.last_modified - timedelta(
            seconds=unit(self.seed, "checked-in", row.key, row.revision) * 900)
        return AssetIdentity(name, version if has_agent else None, _ms(checked_in))

    def asset(self, row: _AssetRow) -> dict[str, Any]:
        """The full CSAM v2 asset document for one row (§8)."""
        r = rng(self.seed, "asset", row.key)
        host = self.world.host_at(row.host_index) if row.host_index is not None else None
        ident = self.identity(row, host)
        name = ident.name
        has_agent = ident.agent_version is not None
        checked_in = ident.checked_in
        os_name, os_family, os_pub, os_ver, arch = _OS_CHOICES[r.randrange(len(_OS_CHOICES))]
        ip = f"172.{r.randrange(16, 32)}.{r.randrange(256)}.{r.randrange(1, 255)}"
        dns = f"{name}.corp.example.com"
        netbios = name.upper().replace("-", "")[:15]
        ipv6: str | None = f"fe80::{r.randrange(0x10000):x}:{r.randrange(0x10000):x}"
        cloud = _CLOUD[r.randrange(3)] if r.random() < 0.25 else None
        if host is not None:
            # The same machine as the Host List: IP, DNS, NetBIOS, OS and agent presence agree.
            os_name, ip, dns, netbios, ipv6 = host.os, host.ip, host.dns, host.netbios, host.ipv6
            os_family, os_pub, os_ver, arch = _os_of_host(host.os)
            cloud = host.cloud.provider.lower() if host.cloud else None
        agent_uuid = str(uuid.UUID(int=r.getrandbits(128), version=4)) if has_agent else None
        mac = ":".join(f"{r.randrange(256):02X}" for _ in range(6))
        last_boot = row.last_modified - timedelta(days=r.uniform(1, 40))
        rev = rng(self.seed, "asset-rev", row.key, row.revision)
        windows = os_family == "Windows"

        asset: dict[str, Any] = {
            "assetId": row.asset_id,
            "assetUUID": str(uuid.UUID(int=r.getrandbits(128), version=4)),
            "hostId": row.host_id,
            "lastModifiedDate": iso_ms(row.last_modified),
            "agentId": agent_uuid,
            "createdDate": iso_ms(row.created),
            "sensorLastUpdatedDate": iso_ms(checked_in),
            "assetType": "HOST",
            "address": ip,
            "dnsName": dns,
            "assetName": name,
            "netbiosName": netbios,
            "timeZone": ("+00:00", "-05:00", "+01:00", "+05:30")[r.randrange(4)],
            "biosDescription": f"Phoenix Technologies LTD 6.00 {r.randrange(10, 99)}/11/2020",
            "lastBoot": iso_ms(last_boot),
            "totalMemory": r.choice((4096, 8192, 16384, 32768, 65536)),
            "cpuCount": r.choice((1, 2, 4, 8, 16)),
            "lastLoggedOnUser": r.choice(_USERS) if windows else None,
            "domainRole": "Member Server" if windows else None,
            "hwUUID": str(uuid.UUID(int=r.getrandbits(128), version=4)).upper(),
            "biosSerialNumber": f"VMware-{r.getrandbits(64):016x}",
            "biosAssetTag": "No Asset Tag",
            "isContainerHost": r.random() < 0.1,
            "operatingSystem": _operating_system(r, (os_name, os_family, os_pub, os_ver, arch)),
            "hardware": _hardware(r),
            "userAccountListData": {"userAccount": [
                {"name": u} for u in r.sample(_USERS, r.randrange(1, 4))]},
            "openPortListData": {"openPort": [
                {"port": p, "protocol": proto, "detectedService": svc,
                 "firstFound": iso_ms(row.created), "lastUpdated": iso_ms(row.last_modified)}
                for p, proto, svc in sorted(r.sample(_PORTS, r.randrange(1, 6)))]},
            "volumeListData": {"volume": _volumes(r, windows)},
            "networkInterfaceListData": {"networkInterface": [
                {"hostname": name, "interfaceName": "Ethernet0" if windows else "eth0",
                 "macAddress": mac, "type": "LOCAL", "addressIpV4": ip, "addressIpV6": None,
                 "gatewayAddress": ip.rsplit(".", 1)[0] + ".1",
                 "dnsAddress": "10.0.0.2", "addressesByIp": None},
                {"hostname": name, "interfaceName": "Ethernet0" if windows else "eth0",
                 "macAddress": mac, "type": "LOCAL", "addressIpV4": None, "addressIpV6": ipv6,
                 "gatewayAddress": None, "dnsAddress": None, "addressesByIp": None},
            ]},
            "softwareListData": {"software": self._software(r, row, windows)},
            "softwareComponent": None,
            "provider": cloud.upper() if cloud else None,
            "cloudProvider": _cloud_provider(r, cloud, row) if cloud else None,
            "agent": _agent(r, rev, row, ident) if ident.agent_version else None,
            "sensor": {
                "activatedForModules": sorted(r.sample(_MODULES, r.randrange(1, 5))) if has_agent
                else ["VM"],
                "pendingActivationForModules": [],
                "lastVMScan": epoch_ms(checked_in - timedelta(hours=rev.uniform(0, 24))),
                "lastComplianceScan": epoch_ms(checked_in - timedelta(hours=rev.uniform(0, 48))),
                "lastFullScan": epoch_ms(checked_in - timedelta(days=rev.uniform(0, 7))),
                "lastPcScanDateAgent": epoch_ms(checked_in) if has_agent else None,
                "lastVmScanDateAgent": epoch_ms(checked_in) if has_agent else None,
                "lastVmScanDateScanner": None if has_agent else epoch_ms(checked_in),
                "lastPcScanDateScanner": None,
            },
            "container": None,
            "inventory": {"source": "Cloud Agent" if has_agent else "IP Scanner",
                          "created": epoch_ms(row.created),
                          "lastUpdated": epoch_ms(row.last_modified)},
            "activity": {"lastScannedDate": epoch_ms(checked_in)},
            "tagList": {"tag": _tags(r, host, cloud)},
            "serviceList": {"service": [
                {"name": s, "description": f"{s} service", "status": "running"}
                for s in sorted(r.sample(_SERVICES, r.randrange(1, 4)))]},
            "lastLocation": None,
            "criticality": {"score": r.randrange(1, 6), "isDefault": r.random() < 0.5,
                            "lastUpdated": epoch_ms(row.created)},
            "businessInformation": None,
            "assignedLocation": None,
            "businessAppListData": None,
            "riskScore": r.randrange(0, 1000),
            "passiveSensor": None,
            "domain": None,
            "subdomain": None,
            "missingSoftware": None,
            "whois": None,
            "organizationName": None,
            "isp": None,
            "asn": None,
            "easmTags": None,
            "hostingCategory1": None,
            "customAttributes": [{"key": "owner", "value": r.choice(("it-ops", "finance", "dev"))}]
            if r.random() < 0.3 else None,
            "processor": {"description": "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz",
                          "speed": 2500, "numCPUs": 1, "multithreadingStatus": "Enabled"},
        }
        if self.config.inventory_key != "inventory":
            # §8: the key is spelled differently by different sources; one spelling per run.
            asset[self.config.inventory_key] = {"inventory": [asset.pop("inventory")]}
        return asset

    def _software(self, r: random.Random, row: _AssetRow, windows: bool) -> list[dict[str, Any]]:
        chosen = sorted(r.sample(range(len(_SOFTWARE)), r.randrange(3, 9)))
        drift = rng(self.seed, "sw-rev", row.key, row.revision)
        out = []
        for k in chosen:
            publisher, product, category, pattern = _SOFTWARE[k]
            version = pattern.format(a=drift.randrange(1, 9), b=drift.randrange(10, 99),
                                     c=drift.randrange(0, 9))
            cat1, cat2 = category.split(" / ")
            out.append({
                "id": SOFTWARE_ID_BASE + k * 1_000_000_007 + int(unit(version) * 10**6),
                "fullName": f"{publisher} {product} {version}",
                "softwareType": "Application",
                "isIgnored": False,
                "ignoredReason": None,
                "category": category,
                "category1": cat1,
                "category2": cat2,
                "publisher": publisher,
                "product": product,
                "version": version,
                "component": "Desktop" if windows else "Server",
                "edition": None,
                "marketVersion": version.split(".")[0],
                "lifecycle": {"gaDate": "2021-03-01", "eolDate": None, "eosDate": None,
                              "stage": r.choice(("GA", "EOL", "EOS")),
                              "lifeCycleConfidence": "Exact", "lifeCycleConfidenceReason": None},
                "productUrl": None,
                "installDate": iso_ms(row.created),
                "lastUpdated": iso_ms(row.last_modified),
                "formerlyKnownAs": None,
                "isPackage": not windows,
                "packageName": product.lower().replace(" ", "-") if not windows else None,
                "architecture": "x64",
            })
        return out



def _tags(r: random.Random, host: Host | None, cloud: str | None) -> list[dict[str, Any]]:
    # Linked assets carry their VM host's tags, so tags.name filters agree with the Host List.
    tags = [(t.tag_id, t.name, t.color, t.background_color) for t in host.tags] if host else []
    if host is None:
        tags.append((7_200_000 + r.randrange(3), r.choice(("Unmanaged", "Shadow IT", "Discovered")),
                     "#FFFFFF", "#607D8B"))
    if cloud:
        tags.append((7_300_000 + _CLOUD.index(cloud), f"Cloud Asset {cloud.upper()}", "#FFFFFF",
                     "#FF9800"))
    return [{"tagId": tid, "tagName": name, "foregroundColor": fg, "backgroundColor": bg}
            for tid, name, fg, bg in tags]


def _os_of_host(os_name: str) -> tuple[str, str, str, str]:
    """(category1, publisher, marketVersion, architecture) for a Host List OS string."""
    lowered = os_name.lower()
    version = next((word for word in os_name.split() if word[:1].isdigit()), "")
    if "windows" in lowered:
        return "Windows", "Microsoft", version, "64-Bit"
    publisher = next((p for key, p in (("red hat", "Red Hat"), ("ubuntu", "Canonical"),
                                       ("amazon", "Amazon"), ("debian", "Debian"),
                                       ("suse", "SUSE"), ("centos", "CentOS"))
                      if key in lowered), "Linux Foundation")
    return "Linux", publisher, version, "x86_64"


def _moment_in(epoch: Epoch, fraction: float) -> datetime:
    """A moment inside the last ten minutes (at most) of an advance, chosen by ``fraction``."""
    span = min((epoch.end - epoch.start).total_seconds(), 600.0)
    return epoch.end - timedelta(seconds=fraction * span)


def _ms(moment: datetime) -> datetime:
    # CSAM dates carry milliseconds; truncating here keeps filters and output in agreement.
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _operating_system(r: random.Random, os_info: tuple[str, str, str, str, str]) -> dict[str, Any]:
    name, family, publisher, version, arch = os_info
    return {
        "osName": name,
        "fullName": name,
        "category": f"{family} / {'Server' if 'Server' in name or family == 'Linux' else 'Client'}",
        "category1": family,
        "category2": "Server" if "Server" in name or family == "Linux" else "Client",
        "productName": name,
        "publisher": publisher,
        "edition": None,
        "marketVersion": version,
        "version": version,
        "architecture": arch,
        "lifecycle": {"gaDate": "2019-10-02", "eolDate": "2029-01-09", "eosDate": "2029-01-09",
                      "stage": r.choice(("GA", "EOL")), "lifeCycleConfidence": "Exact",
                      "eolSupportStage": "Extended Support", "eosSupportStage": None},
        "productUrl": None,
        "productLifecycleUrl": None,
        "cpeId": None,
        "cpe": f"cpe:2.3:o:{publisher.lower().replace(' ', '_')}:{family.lower()}:{version}",
        "cpeType": "OS",
    }


def _hardware(r: random.Random) -> dict[str, Any]:
    maker, model = r.choice((("VMware", "VMware Virtual Platform"), ("Dell", "PowerEdge R640"),
                             ("HP", "ProLiant DL380 Gen10"), ("Lenovo", "ThinkPad T14")))
    return {
        "fullName": f"{maker} {model}",
        "category": "Computers / Server",
        "category1": "Computers",
        "category2": "Server",
        "manufacturer": maker,
        "productName": model,
        "model": model,
        "lifecycle": {"introDate": "2018-01-01", "gaDate": "2018-03-01", "eolDate": None,
                      "eosDate": None, "obsoleteDate": None, "stage": "GA",
                      "lifeCycleConfidence": "Exact"},
        "productUrl": None,
    }


def _volumes(r: random.Random, windows: bool) -> list[dict[str, Any]]:
    names = ("C:", "D:") if windows else ("/", "/var", "/home")
    out = []
    for name in names[: r.randrange(1, len(names) + 1)]:
        size = r.choice((53_687_091_200, 107_374_182_400, 536_870_912_000))
        out.append({"name": name, "size": size, "free": int(size * r.uniform(0.05, 0.9))})
    return out


def _cloud_provider(r: random.Random, cloud: str, row: _AssetRow) -> dict[str, Any]:
    region = r.choice(("us-east-1", "eu-west-1", "westeurope", "us-central1"))
    instance = f"i-{r.getrandbits(64):016x}" if cloud == "aws" else str(uuid.UUID(
        int=r.getrandbits(128), version=4))
    return {cloud: {
        "instanceId": instance,
        "region": region,
        "accountId": str(r.randrange(10**11, 10**12)),
        "instanceType": r.choice(("m5.large", "Standard_D2s_v3", "e2-standard-4")),
        "imageId": f"ami-{r.getrandbits(32):08x}",
        "state": "RUNNING",
        "lastUpdated": epoch_ms(row.last_modified),
    }}


def _agent(r: random.Random, rev: random.Random, row: _AssetRow,
           ident: AssetIdentity) -> dict[str, Any]:
    checked_in = ident.checked_in
    return {
        "version": ident.agent_version,
        "configurationProfile": r.choice(_PROFILES),
        "activations": [{"key": str(uuid.UUID(int=r.getrandbits(128), version=4)),
                         "status": "ACTIVE"}],
        "connectedFrom": f"203.0.113.{r.randrange(1, 255)}",
        "lastActivity": epoch_ms(checked_in),
        "lastCheckedIn": epoch_ms(checked_in),
        "lastInventory": epoch_ms(checked_in - timedelta(hours=rev.uniform(0, 12))),
        "udcManifestAssigned": False,
        "errorStatus": False,
        "status": "STATUS_ACTIVE",
        "firstInstalled": epoch_ms(row.created),
    }


# ---------------------------------------------------------------------------------------------
# CSAM filters (the JSON body of search and count)


class FilterError(ValueError):
    """A filter the simulator does not understand; the API answers 400."""


_DATE_OPS: dict[str, Callable[[datetime, datetime], bool]] = {
    "GREATER": lambda a, b: a > b,
    "GREATER_THAN": lambda a, b: a > b,
    "GREATER_THAN_OR_EQUAL": lambda a, b: a >= b,
    "LESSER": lambda a, b: a < b,
    "LESS_THAN": lambda a, b: a < b,
    "LESS_THAN_OR_EQUAL": lambda a, b: a <= b,
    "EQUALS": lambda a, b: a == b,
}


@dataclass(frozen=True)
class AssetFilter:
    """One filter of a CSAM search body: field, operator and value."""
    field: str
    operator: str
    value: str

    @classmethod
    def parse_body(cls, body: bytes) -> list[AssetFilter]:
        """The filters of a search body; ``FilterError`` for a body the gateway refuses."""
        if not body.strip():
            return []
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise FilterError(f"Invalid JSON body: {exc}") from exc
        if not isinstance(doc, dict):
            raise FilterError("Request body must be a JSON object")
        raw = doc.get("filters") or []
        if not isinstance(raw, list):
            raise FilterError("filters must be a list")
        out = []
        for item in raw:
            if not isinstance(item, dict):
                raise FilterError("each filter must be an object")
            flt = cls(str(item.get("field", "")), str(item.get("operator", "")).upper(),
                      str(item.get("value", "")))
            flt.check()
            out.append(flt)
        return out

    def check(self) -> None:
        """Raise ``FilterError`` when the gateway does not support this field, operator or value."""
        if self.field in {"asset.lastUpdated", "asset.createdDate"}:
            if self.operator not in _DATE_OPS:
                raise FilterError(f"Unsupported operator {self.operator} for {self.field}")
            try:
                parse_datetime(self.value)
            except ValueError as exc:
                raise FilterError(f"Invalid date value {self.value!r}") from exc
        elif self.field in {"tags.name", "agent.version"}:
            if self.operator not in {"EQUALS", "CONTAINS", "NOT_EQUALS"}:
                raise FilterError(f"Unsupported operator {self.operator} for {self.field}")
        elif self.field == "asset.id":
            if self.operator not in _DATE_OPS or not self.value.isdigit():
                raise FilterError(f"Invalid filter on {self.field}")
        else:
            raise FilterError(f"Unsupported filter field {self.field}")

    def needs_document(self) -> bool:
        """True when matching needs the asset's whole document (its tags or agent)."""
        return self.field in {"tags.name", "agent.version"}

    def matches(self, row: _AssetRow, document: Mapping[str, Any] | None) -> bool:
        """Whether the asset of ``row`` (``document`` for tags and agent) passes this filter."""
        if self.field == "asset.lastUpdated":
            return _DATE_OPS[self.operator](row.last_modified, parse_datetime(self.value))
        if self.field == "asset.createdDate":
            return _DATE_OPS[self.operator](row.created, parse_datetime(self.value))
        if self.field == "asset.id":
            return _DATE_OPS[self.operator](row.asset_id, int(self.value))  # type: ignore[arg-type]
        assert document is not None
        if self.field == "tags.name":
            values = [t["tagName"] for t in document["tagList"]["tag"]]
        else:
            values = [document["agent"]["version"]] if document.get("agent") else []
        if self.operator == "EQUALS":
            return self.value in values
        if self.operator == "NOT_EQUALS":
            return self.value not in values
        return any(self.value.lower() in v.lower() for v in values)


# ---------------------------------------------------------------------------------------------
# PCRS

_POLICY_TITLES = (
    "CIS Benchmark for Microsoft Windows Server 2019, v2.0.0 [Level 1 - Member Server]",
    "DISA STIG for Red Hat Enterprise Linux 8, V1R13",
    "PCI DSS 4.0 Technical Controls Baseline",
    "Qualys Baseline Policy for Windows (inactive copy)",
    "DISA STIG for Microsoft Windows 10, V2R8",
    "CIS Benchmark for Ubuntu Linux 22.04 LTS, v1.0.0 [Level 2 - Server]",
    "NIST SP 800-53 Rev. 5 Moderate Baseline",
    "Legacy HIPAA Security Rule Policy",
    "DISA STIG for Apache Server 2.4 UNIX Server, V2R5",
    "ISO/IEC 27001:2022 Annex A Technical Controls",
    "CIS Benchmark for Oracle Database 19c, v1.1.0",
    "Custom Hardening Policy - Linux Web Tier",
)
_TECHNOLOGIES = (
    (45, "Windows Server 2019"), (91, "Windows 10"), (63, "Red Hat Enterprise Linux 8.x"),
    (128, "Ubuntu 22.x"), (12, "CentOS 7.x"), (104, "Oracle 19c"), (77, "Apache HTTP Server 2.4"),
)
_CRITICALITY = ((1, "MINIMAL"), (2, "MEDIUM"), (3, "SERIOUS"), (4, "CRITICAL"), (5, "URGENT"))
_CONTROL_TOPICS = (
    ("Minimum password length", "Status of the 'Minimum password length' setting"),
    ("Audit logon events", "Status of the 'Audit Logon' setting (Success and Failure)"),
    ("SSH root login", "Status of the 'PermitRootLogin' setting in sshd_config"),
    ("Account lockout threshold", "Status of the 'Account lockout threshold' setting"),
    ("Telnet service", "Status of the 'telnet' service"),
    ("SMBv1 protocol", "Status of the 'SMB 1.0/CIFS File Sharing Support' feature"),
    ("World-writable files", "List of world-writable files under /etc"),
    ("Firewall state", "Status of the host-based firewall"),
    ("TLS 1.0", "Status of the TLS 1.0 protocol (server)"),
    ("Guest account", "Status of the 'Guest' account"),
    ("NTP configuration", "Status of the time synchronization service"),
    ("Core dumps", "Status of the 'hard core 0' limit"),
)
POSTURE_STATUSES = ("Passed", "Failed", "Error")


@dataclass
class PcrsConfig:
    """How many PCRS policies there are and how much each advance re-evaluates."""
    policies: int = 8
    host_share: float = 0.6  # share of World hosts evaluated by each active policy
    reevaluate_share: float = 0.2  # share of (policy, host) pairs re-evaluated per advance
    flip_share: float = 0.15  # share of controls whose status changes at a re-evaluation


@dataclass(frozen=True)
class Policy:
    """One PCRS policy: its technologies and controls."""
    index: int
    id: int
    title: str
    active: bool
    created: datetime
    modified: datetime
    technologies: tuple[tuple[int, str], ...]
    control_ids: tuple[int, ...]


@dataclass
class _Pair:
    """One (policy, host) evaluation history: the moments the host was evaluated."""

    policy_index: int
    host_index: int
    host_id: int
    evaluations: list[tuple[int, datetime]]  # (epoch number, 0 for the initial one; time)


@dataclass
class PostureState:
    """The status history of one control on one host, replayed from its pair's evaluations."""

    status: str
    previous: str
    created: datetime
    last_evaluated: datetime
    modified: datetime  # when the status last changed (or first evaluation)
    first_fail: datetime | None
    last_fail: datetime | None
    first_pass: datetime | None
    last_pass: datetime | None


@dataclass
class PcrsData:
    """The PCRS policies, the hosts each evaluates and their postures; changed at each advance."""
    world: World
    config: PcrsConfig = field(default_factory=PcrsConfig)
    _policies: list[Policy] = field(default_factory=list, init=False)
    _pairs: dict[tuple[int, int], _Pair] = field(default_factory=dict, init=False)
    _policy_eval: dict[int, datetime] = field(default_factory=dict, init=False)
    _built: bool = field(default=False, init=False)
    _applied: int = field(default=0, init=False)
    _purged_seen: int = field(default=0, init=False)
    # (policy id, host id) of every membership that ended: the ground truth of the tombstones.
    _removed: list[tuple[int, int]] = field(default_factory=list, init=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False)

    @property
    def seed(self) -> int:
        return self.world.seed

    def sync(self) -> None:
        """Build on first use, then replay the advances not yet applied."""
        with self._lock:
            if not self._built:
                self._build()
            epochs = self.world.epochs
            for epoch in epochs[self._applied :]:
                self._apply(epoch)
            self._applied = len(epochs)
            purged = self.world.purged_count()
            if purged != self._purged_seen:
                # A purge without an advance (POST /admin/purge): its hosts leave every policy.
                self._purged_seen = purged
                self._drop([key for key in self._pairs
                            if self.world.index_of_host(key[1]) is None])

    def _drop(self, keys: list[tuple[int, int]]) -> None:
        for key in sorted(keys):
            del self._pairs[key]
            self._removed.append((self._policies[key[0]].id, key[1]))

    def _build(self) -> None:
        self._built = True
        start = self.world.options.start
        for i in range(self.config.policies):
            r = rng(self.seed, "policy", i)
            # Every fourth policy is inactive: Qualys does not evaluate those, so they have no
            # hosts and no postures, and their lastEvaluatedDate stays in the past.
            active = i % 4 != 3
            created = _sec(start - timedelta(days=r.uniform(200, 900)))
            techs = tuple(sorted(r.sample(_TECHNOLOGIES, r.randrange(1, 4))))
            controls = tuple(sorted(r.sample(range(1000, 21000), r.randrange(20, 51))))
            suffix = f" #{i // len(_POLICY_TITLES) + 1}" if i >= len(_POLICY_TITLES) else ""
            policy = Policy(i, POLICY_ID_BASE + i * 13 + r.randrange(13),
                            _POLICY_TITLES[i % len(_POLICY_TITLES)] + suffix, active, created,
                            _sec(created + timedelta(days=r.uniform(1, 150))), techs, controls)
            self._policies.append(policy)
            self._policy_eval[i] = _sec(start - timedelta(days=r.uniform(1, 20 if active else 120)))
        for index in range(self.world.options.hosts):
            self._enrol(index, None)

    def _enrol(self, host_index: int, epoch: Epoch | None) -> None:
        host_id = self.world.host_id_of(host_index)
        for policy in self._policies:
            if not policy.active:
                continue
            if unit(self.seed, "pcrs-host", policy.index, host_index) >= self.config.host_share:
                continue
            fraction = unit(self.seed, "pcrs-eval0", policy.index, host_index)
            if epoch is None:
                at = self._policy_eval[policy.index] - timedelta(seconds=fraction * 86400)
            else:
                at = _moment_in(epoch, fraction)
            self._pairs[(policy.index, host_id)] = _Pair(policy.index, host_index, host_id,
                                                         [(0, _sec(at))])

    def _apply(self, epoch: Epoch) -> None:
        # Memberships end first (Epoch.pcrs_leave_share; a purged host leaves every policy): a
        # host that left a policy is not evaluated by it any more. hostids without lastScanDate
        # stops listing it; nothing else says so (§9).
        self._drop([
            (pi, host_id) for (pi, host_id), pair in self._pairs.items()
            if pair.host_index in epoch.purged
            or unit(self.seed, "pcrs-leave", epoch.number, pi, host_id) < epoch.pcrs_leave_share
        ])
        touched: set[int] = set()
        for (pi, host_id), pair in self._pairs.items():
            roll = unit(self.seed, "pcrs-reeval", epoch.number, pi, host_id)
            if roll < self.config.reevaluate_share:
                at = _moment_in(epoch, unit(self.seed, "pcrs-at", epoch.number, pi, host_id))
                pair.evaluations.append((epoch.number, _sec(at)))
                touched.add(pi)
        for pi in touched:
            self._policy_eval[pi] = _sec(epoch.end)
        for index in range(epoch.new_hosts_from, epoch.new_hosts_from + epoch.new_hosts):
            self._enrol(index, epoch)
            for policy in self._policies:
                if (policy.index, self.world.host_id_of(index)) in self._pairs:
                    self._policy_eval[policy.index] = _sec(epoch.end)

    # -- queries -------------------------------------------------------------------------------

    # The lock guards against an advance replaying while a request thread reads.

    def policies(self) -> list[Policy]:
        """Every policy, active and inactive, in creation order."""
        with self._lock:
            return list(self._policies)

    def policy_by_id(self, policy_id: int) -> Policy | None:
        return next((p for p in self.policies() if p.id == policy_id), None)

    def policy_last_evaluated(self, policy: Policy) -> datetime:
        """When ``policy`` was last evaluated (its lastEvaluatedDate)."""
        with self._lock:
            return self._policy_eval[policy.index]

    def pairs_of(self, policy: Policy) -> list[_Pair]:
        """The hosts ``policy`` evaluates, as pairs in host id order."""
        with self._lock:
            pairs = [p for (pi, _), p in self._pairs.items() if pi == policy.index]
        return sorted(pairs, key=lambda p: p.host_id)

    def removed(self) -> list[tuple[int, int]]:
        """(policy id, host id) of every membership ended so far, in the order they ended."""
        with self._lock:
            return list(self._removed)

    def pair(self, policy: Policy, host_id: int) -> _Pair | None:
        """The pair of ``policy`` and ``host_id``; None when the policy does not evaluate it."""
        return self._pairs.get((policy.index, host_id))

    def posture_id(self, policy: Policy, host_id: int, control_id: int) -> int:
        """The posture id of (policy, host, control), unique over all three."""
        # Unique per (policy, host, control): policy ordinal, then the host id, then the control.
        # Host ids stay below 10**10 and control ids below 10**5, so the parts never overlap.
        return ((policy.index + 1) * 10**10 + host_id) * 100_000 + control_id

    def state(self, pair: _Pair, control_id: int) -> PostureState:
        """The posture of ``control_id`` on ``pair`` now, its evaluations replayed."""
        status = ""
        previous = ""
        modified = created = pair.evaluations[0][1]
        fail: list[datetime] = []
        passed: list[datetime] = []
        for adv_index, at in pair.evaluations:
            if not status:
                status = _initial_status(self.seed, pair, control_id)
            elif unit(self.seed, "flip", adv_index, pair.policy_index, pair.host_id,
                      control_id) < self.config.flip_share:
                previous, status = status, _next_status(self.seed, adv_index, pair, control_id,
                                                        status)
                modified = at
            (fail if status == "Failed" else passed if status == "Passed" else []).append(at)
        return PostureState(status, previous, created, pair.evaluations[-1][1], modified,
                            fail[0] if fail else None, fail[-1] if fail else None,
                            passed[0] if passed else None, passed[-1] if passed else None)

    def posture_records(self, policy: Policy, pair: _Pair, *, evidence: bool, batch: int,
                        batches: int) -> Iterator[dict[str, Any]]:
        """The §9 posture records of one host for one policy, one per control."""
        host = self.world.host_at(pair.host_index)
        tech_id, tech_name = policy.technologies[
            int(unit(self.seed, "tech", policy.index, pair.host_id) * len(policy.technologies))]
        agent = host.tracking_method in {"AGENT", "EC2"}
        for control_id in policy.control_ids:
            st = self.state(pair, control_id)
            topic, statement = _CONTROL_TOPICS[control_id % len(_CONTROL_TOPICS)]
            crit_value, crit_label = _CRITICALITY[
                int(unit(self.seed, "criticality", control_id) * len(_CRITICALITY))]
            record: dict[str, Any] = {
                "id": self.posture_id(policy, pair.host_id, control_id),
                # Database and web-server technologies are evaluated per instance, the OS once.
                "instance": {104: "oracle19:1:1521:ORCL", 77: "apache:/etc/httpd"}.get(tech_id,
                                                                                       "os"),
                "policyId": policy.id,
                "policyTitle": policy.title,
                "netBios": host.netbios,
                "controlId": control_id,
                "controlStatement": f"{statement} (CID {control_id})",
                "rationale": f"Configuring '{topic}' reduces the attack surface of the host.",
                "remediation": f"Set '{topic}' to the value required by the policy.",
                "controlReference": f"CIS {control_id % 20}.{control_id % 7}",
                "technologyId": tech_id,
                "status": st.status,
                "previousStatus": st.previous,
                "firstFailDate": _opt(st.first_fail),
                "lastFailDate": _opt(st.last_fail),
                "firstPassDate": _opt(st.first_pass),
                "lastPassDate": _opt(st.last_pass),
                "postureModifiedDate": iso_s(st.modified),
                "lastEvaluatedDate": iso_s(st.last_evaluated),
                "created": iso_s(st.created),
                "hostId": pair.host_id,
                "ip": host.ip,
                "trackingMethod": host.tracking_method,
                "os": host.os,
                "osCpe": host.os_cpe,
                "domainName": host.domain,
                "dns": host.dns,
                "qgHostid": host.qg_hostid,
                "networkId": host.network_id,
                "networkName": "Global Default Network",
                "complianceLastScanDate": iso_s(st.last_evaluated),
                "customerUuid": CUSTOMER_UUID,
                "customerId": SUBSCRIPTION_ID,
                "assetId": host.asset_id,
                "technology": {"id": tech_id, "name": tech_name, "version": "1.0"},
                "criticality": {"value": crit_value, "label": crit_label},
                "evidence": None,
                "causeOfFailure": None,
                "currentBatch": batch,
                "totalBatches": batches,
                "qds": None,
                "scanSource": "AGENT" if agent else "SCANNER",
                "agentLastDetectedDate": iso_s(st.last_evaluated) if agent else "",
                "scannerLastDetectedDate": "" if agent else iso_s(st.last_evaluated),
            }
            if evidence:
                record["evidence"] = {
                    "evaluationDate": iso_s(st.last_evaluated),
                    "systemEvidence": [{
                        "dataPointId": control_id * 10 + 1,
                        "description": statement,
                        "expected": "1",
                        "actual": "1" if st.status == "Passed" else "0",
                        "status": st.status,
                    }],
                }
            if st.status == "Failed":
                record["causeOfFailure"] = {"missing": [f"{topic} = required value"],
                                            "unexpected": [f"{topic} = current value"]}
                record["qds"] = {"score": crit_value * 18, "severity": crit_label}
            yield record


def _initial_status(seed: int, pair: _Pair, control_id: int) -> str:
    roll = unit(seed, "status0", pair.policy_index, pair.host_id, control_id)
    return "Passed" if roll < 0.7 else "Failed" if roll < 0.97 else "Error"


def _next_status(seed: int, adv_index: int, pair: _Pair, control_id: int, current: str) -> str:
    others = [s for s in POSTURE_STATUSES if s != current]
    # Errors are rare: a flip from Passed mostly goes to Failed and vice versa.
    roll = unit(seed, "flipto", adv_index, pair.policy_index, pair.host_id, control_id)
    if current == "Error":
        return others[0] if roll < 0.5 else others[1]
    return "Failed" if current == "Passed" and roll < 0.9 else (
        "Passed" if current == "Failed" and roll < 0.9 else "Error")


def _sec(moment: datetime) -> datetime:
    # PCRS dates have second precision; filters compare against what clients saw.
    return moment.replace(microsecond=0)


def _opt(moment: datetime | None) -> str:
    # PCRS writes "" rather than null for dates that never happened (§9).
    return iso_s(moment) if moment else ""
