"""Plain data types of the simulated subscription, and the integer hash everything derives from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

_MASK = (1 << 64) - 1


def mix(*parts: int) -> int:
    """A fast, well-spread 64-bit hash of small integers (splitmix64 steps)."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = ((h ^ (part & _MASK)) * 0xBF58476D1CE4E5B9) & _MASK
        h ^= h >> 31
        h = (h * 0x94D049BB133111EB) & _MASK
        h ^= h >> 29
    return h


def unit(*parts: int) -> float:
    """A number in [0, 1) derived from ``parts``: the same parts give the same number."""
    return mix(*parts) / 2.0**64


def fmt(value: datetime | None) -> str | None:
    """Qualys' datetime format (doc §4)."""
    return None if value is None else fmt_utc(value)


@lru_cache(maxsize=1 << 16)
def fmt_utc(value: datetime) -> str:
    """A UTC ``value`` as the VM API writes it: ``2026-11-01T00:00:00Z``."""
    # Cached: a host's detections share most of their dates, and strftime is slow.
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Epoch:
    """What one ``advance`` did; per-host effects are derived from it, never stored."""

    number: int
    start: datetime
    end: datetime
    rescan_fraction: float
    fix_probability: float
    reopen_probability: float
    new_hosts_from: int
    new_hosts: int
    purged: frozenset[int]  # host indices purged at this epoch
    kb_new_from: int
    kb_new: int
    kb_modified_fraction: float
    # Share of PCRS (policy, host) memberships that end at this advance (the host left the
    # policy's scope); purged hosts leave every policy regardless.
    pcrs_leave_share: float = 0.02


@dataclass(slots=True)
class Tag:
    """An asset tag on a host."""
    tag_id: int
    name: str
    color: str
    background_color: str


@dataclass(slots=True)
class CloudInfo:
    """A cloud host's provider, instance, metadata and cloud tags."""
    provider: str  # "AWS" or "Azure"
    service: str
    resource_id: str
    instance_id: str | None
    metadata_kind: str  # "EC2" or "AZURE": the METADATA child element
    attributes: list[tuple[str, str, str]]  # (NAME, VALUE, LAST_SUCCESS_DATE)
    cloud_tags: list[tuple[str, str, str]]  # (NAME, VALUE, LAST_SUCCESS_DATE)


@dataclass(slots=True)
class Host:
    """One VM host as it is now: what the Host List and Host List Detection answers show."""
    index: int
    id: int
    asset_id: int
    ip: str
    ipv6: str | None
    dns: str
    hostname: str
    domain: str
    fqdn: str
    netbios: str
    os: str
    os_cpe: str
    tracking_method: str
    network_id: int
    qg_hostid: str
    tags: list[Tag]
    cloud: CloudInfo | None
    first_found: datetime
    last_vm_scanned: datetime
    last_vm_scanned_duration: int
    last_vm_auth_scanned: datetime | None
    last_vm_auth_scanned_duration: int | None
    last_vm_processed: datetime
    last_compliance_scan: datetime | None
    owner: str
    comments: str | None
    trurisk_score: int
    asset_criticality: int
    last_boot: datetime
    serial_number: str
    hardware_uuid: str
    agent_status: str | None
    detection_seed: int = 0

    @property
    def asset_risk_score(self) -> int:
        """The Asset Risk Score, TruRisk's predecessor: close to it, not equal (0-1000)."""
        return min(1000, self.trurisk_score * 9 // 10 + self.id % 97)

    @property
    def ars_vuln_counts(self) -> list[tuple[str, int]]:
        """ARS_FACTORS' VULN_COUNT per QDS severity."""
        score = self.asset_risk_score
        return [(s, (score >> i) % 5) for i, s in enumerate(("LOW", "MEDIUM", "HIGH", "CRITICAL"))]


ARS_FORMULA = "Sum of ( Weight[Sev] * Weighted QDS[Sev] )"


@dataclass(slots=True)
class Detection:
    """One detection of a host: QID, status, dates and results."""
    unique_vuln_id: int
    qid: int
    type: str  # Confirmed | Potential | Info
    severity: int
    port: int | None
    protocol: str | None
    ssl: int | None
    fqdn: str | None
    results: str | None
    status: str  # New | Active | Fixed | Re-Opened
    first_found: datetime
    last_found: datetime
    times_found: int
    last_test: datetime
    last_update: datetime
    last_fixed: datetime | None
    first_reopened: datetime | None
    last_reopened: datetime | None
    times_reopened: int
    qds: int | None
    qds_bits: int = 0  # the random bits QDS_FACTORS derive from (rendered only when asked)
    last_processed: datetime | None = None
    service: str | None = None

    @property
    def qds_factors(self) -> list[tuple[str, str]]:
        """QDS_FACTOR (name, value) pairs; names as Qualys spells them (doc §7)."""
        if self.qds is None:
            return []
        bits, severity = self.qds_bits, self.severity
        factors = [
            ("CVSS", f"{min(10.0, severity * 2 - (bits >> 5) % 10 / 10):.1f}"),
            ("CVSS_version", "v3.x" if bits >> 9 & 1 else "v2"),
            ("epss", f"{(bits >> 10) % 100_000 / 100_000:.5f}"),
            ("CVSS_vector", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
        ]
        if (bits >> 27) % 10 < 3:
            factors.append(("RTI", "Easy_Exploit,High_Lateral_Movement"))
            factors.append(("exploit_maturity", "weaponized" if bits >> 31 & 1 else "poc"))
        if (bits >> 32) % 10 == 0:
            factors.append(("CISA_vuln", "YES"))
        return factors

    @property
    def arf(self) -> tuple[int | None, int | None, int | None]:
        """AFFECT_RUNNING_KERNEL, AFFECT_RUNNING_SERVICE, AFFECT_EXPLOITABLE_CONFIG: None
        where the QID is not about a kernel / service / configuration, else 0 or 1."""
        bits = self.qds_bits >> 36
        return tuple(  # type: ignore[return-value]
            (bits >> (6 * i + 3)) & 1 if (bits >> (6 * i)) % 8 < 2 else None for i in range(3)
        )

    @property
    def mitre(self) -> tuple[str, str, str, str] | None:
        """(tactic name, technique name, tactic id, technique id), a property of the QID."""
        h = mix(self.qid, 0x4D17)
        if h % 3 == 0:
            return None
        return MITRE[(h >> 8) % len(MITRE)]


#: ATT&CK tactics and techniques (public ids and names).
MITRE: tuple[tuple[str, str, str, str], ...] = (
    ("Initial Access", "Exploit Public-Facing Application", "TA0001", "T1190"),
    ("Execution", "Exploitation for Client Execution", "TA0002", "T1203"),
    ("Privilege Escalation", "Exploitation for Privilege Escalation", "TA0004", "T1068"),
    ("Credential Access", "Exploitation for Credential Access", "TA0006", "T1212"),
    ("Lateral Movement", "Exploitation of Remote Services", "TA0008", "T1210"),
    ("Defense Evasion", "Exploitation for Defense Evasion", "TA0005", "T1211"),
    ("Impact", "Endpoint Denial of Service", "TA0040", "T1499"),
)


