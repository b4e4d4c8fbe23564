"""The simulated subscription: a clock, hosts, detections and KnowledgeBase QIDs.

Nothing is stored per host. Every host, its detections and every QID are derived on demand from
``(seed, index)`` and the list of clock advances (``epochs``), so memory stays flat whatever
``--hosts`` is. An advance only stores a few parameters; which hosts it rescanned, which
detections it fixed or re-opened, and which QIDs it modified are pure functions of the seed.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from qualys_simulator import datagen
from qualys_simulator.model import ARS_FORMULA, Detection, Epoch, Host, fmt, mix, unit

HOST_ID_BASE = 1_000_000
HOST_ID_STRIDE = 16
# Above every real QID in datagen.REAL_VULNS (the first indices), so QIDs ascend with the index.
QID_BASE = 800_000
QID_STRIDE = 4
_REAL_QID_INDEX = {real.qid: k for k, real in enumerate(datagen.REAL_VULNS)}
ARF_FIELDS = ("AFFECT_RUNNING_KERNEL", "AFFECT_RUNNING_SERVICE", "AFFECT_EXPLOITABLE_CONFIG")
MITRE_FIELDS = ("MITRE_TACTIC_NAME", "MITRE_TECHNIQUE_NAME", "MITRE_TACTIC_ID",
                "MITRE_TECHNIQUE_ID")
DEFAULT_START = datetime(2026, 11, 1, tzinfo=timezone.utc)

GroundTruthFn = Callable[[], Iterable[dict[str, Any]]]
AdvanceHook = Callable[["World", "Epoch"], None]


class Clock:
    """The simulated clock. It stands still between advances, so every run is reproducible."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now = self._now + timedelta(seconds=seconds)
            return self._now


@dataclass
class WorldOptions:
    """What the world is generated from: the data flags of the command line."""
    hosts: int = 100
    seed: int = 1
    detections_per_host: float = 8.0
    no_detection_fraction: float = 0.1
    kb_size: int = 2000  # QIDs that detections draw from
    kb_extra: int = 500  # QIDs no host has
    start: datetime = DEFAULT_START
    long_results_fraction: float = 0.005  # RESULTS tens of KB long


class World:
    """The data behind every API of the simulator (see README "World API")."""

    def __init__(self, options: WorldOptions) -> None:
        self.options = options
        self.seed = options.seed
        self.clock = Clock(options.start)
        self.epochs: list[Epoch] = []
        self._lock = threading.RLock()
        self._purged: set[int] = set()
        self._host_total = options.hosts
        self._kb_total = options.kb_size + options.kb_extra
        self._hooks: list[AdvanceHook] = []
        self._ground_truth: dict[str, GroundTruthFn] = {}
        self._host_ids_cache: list[int] | None = None
        # Detections need each QID's severity and type; keep those two small arrays only.
        self._kb_severity = bytearray()
        self._kb_vuln_type = bytearray()
        self._kb_qid: list[int] = []
        self._extend_kb_compact(self._kb_total)
        self.register_ground_truth("knowledge_base", self.knowledge_base_truth)
        self.register_ground_truth("hosts", self.hosts_truth)
        self.register_ground_truth("host_detections", self.host_detections_truth)

    # ---- public API used by the API modules (documented in README) --------------------------
    @property
    def epoch(self) -> int:
        """How many advances the world has had (0 at start)."""
        return len(self.epochs)

    def on_advance(self, callback: AdvanceHook) -> None:
        """Call ``callback(world, epoch)`` after every advance."""
        self._hooks.append(callback)

    def register_ground_truth(self, name: str, fn: GroundTruthFn) -> None:
        """Serve ``fn()`` as the ground truth of stream ``name``."""
        self._ground_truth[name] = fn

    def ground_truth_streams(self) -> list[str]:
        """The names of the streams with a ground truth, sorted."""
        return sorted(self._ground_truth)

    def ground_truth(self, name: str) -> Iterable[dict[str, Any]]:
        """The records a full sync of stream ``name`` must load now."""
        return self._ground_truth[name]()

    def ground_truth_summary(self) -> dict[str, dict[str, Any]]:
        """Per stream: its record count and a SHA-256 checksum of its records."""
        summary = {}
        for name in self.ground_truth_streams():
            digest = hashlib.sha256()
            count = 0
            for record in self.ground_truth(name):
                digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
                digest.update(b"\n")
                count += 1
            summary[name] = {"count": count, "checksum": digest.hexdigest()}
        return summary

    def host_ids(self) -> list[int]:
        """Current host ids, ascending, without purged hosts."""
        with self._lock:
            if self._host_ids_cache is None:
                self._host_ids_cache = [
                    self.host_id_of(i) for i in range(self._host_total) if i not in self._purged
                ]
            return self._host_ids_cache

    def host_id_of(self, index: int) -> int:
        """The id of the ``index``-th host ever created (ids ascend with the index)."""
        return HOST_ID_BASE + HOST_ID_STRIDE * index + mix(self.seed, 10, index) % HOST_ID_STRIDE

    def index_of_host(self, host_id: int) -> int | None:
        """The index of the live host ``host_id``; None for an unknown or purged id."""
        index, _ = divmod(host_id - HOST_ID_BASE, HOST_ID_STRIDE)
        with self._lock:
            valid = 0 <= index < self._host_total and index not in self._purged
        if valid and self.host_id_of(index) == host_id:
            return index
        return None

    def host(self, host_id: int) -> Host | None:
        """The live host ``host_id`` as it is now; None for an unknown or purged id."""
        index = self.index_of_host(host_id)
        return None if index is None else self.host_at(index)

    def hosts_from(self, host_id_min: int) -> Iterator[Host]:
        """Hosts with id >= host_id_min in id order, generated one at a time."""
        ids = self.host_ids()
        for host_id in ids[bisect.bisect_left(ids, host_id_min):]:
            index = self.index_of_host(host_id)
            if index is not None:
                yield self.host_at(index)

    def qids(self) -> list[int]:
        """Every QID of the KnowledgeBase now, in index order."""
        with self._lock:
            total = self._kb_total
        return [self.qid_of(k) for k in range(total)]

    def qid_of(self, k: int) -> int:
        """The QID of KnowledgeBase entry ``k``."""
        return self._kb_qid[k]

    def index_of_qid(self, qid: int) -> int | None:
        """The KnowledgeBase index of ``qid``; None when there is no such QID."""
        k = _REAL_QID_INDEX.get(qid)
        if k is None:
            k, _ = divmod(qid - QID_BASE, QID_STRIDE)
        with self._lock:
            valid = 0 <= k < self._kb_total
        return k if valid and self.qid_of(k) == qid else None

    # ---- advancing time ---------------------------------------------------------------------
    def advance(self, seconds: float, **overrides: Any) -> Epoch:
        """Move the clock and apply one advance: rescans, fixes, new and purged hosts, QIDs."""
        with self._lock:
            start = self.clock.now()
            end = self.clock.advance(seconds)
            number = len(self.epochs) + 1
            rng = random.Random(mix(self.seed, 30, number))
            hosts_now = len(self.host_ids())
            new_hosts = int(overrides.get("new_hosts", max(1, hosts_now // 100)))
            purge_count = int(overrides.get("purge", max(1, hosts_now // 200)))
            alive = [i for i in range(self._host_total) if i not in self._purged]
            purged = frozenset(rng.sample(alive, min(purge_count, max(len(alive) - 1, 0))))
            epoch = Epoch(
                number=number,
                start=start,
                end=end,
                rescan_fraction=float(overrides.get("rescan_fraction", 0.25)),
                fix_probability=float(overrides.get("fix_probability", 0.12)),
                reopen_probability=float(overrides.get("reopen_probability", 0.15)),
                new_hosts_from=self._host_total,
                new_hosts=new_hosts,
                purged=purged,
                kb_new_from=self._kb_total,
                kb_new=int(overrides.get("kb_new", 5)),
                kb_modified_fraction=float(overrides.get("kb_modified_fraction", 0.02)),
                pcrs_leave_share=float(overrides.get("pcrs_leave_share", 0.02)),
            )
            self.epochs.append(epoch)
            self._purged |= purged
            self._host_total += new_hosts
            self._kb_total += epoch.kb_new
            self._extend_kb_compact(self._kb_total)
            self._host_ids_cache = None
        for hook in self._hooks:
            hook(self, epoch)
        return epoch

    def purge(self, host_ids: Iterable[int]) -> list[int]:
        """Purge live hosts now (as a user's purge does), without moving the clock.

        They vanish from every later Host List and Host List Detection answer, with their
        detections. Returns the ids purged, ascending; unknown or already purged ids are skipped.
        """
        with self._lock:
            indices = {i for i in map(self.index_of_host, host_ids) if i is not None}
            self._purged |= indices
            self._host_ids_cache = None
        return sorted(self.host_id_of(i) for i in indices)

    def purged_count(self) -> int:
        """How many hosts were purged so far (cheap: lets derived data notice a purge)."""
        with self._lock:
            return len(self._purged)

    def purged_host_ids(self) -> list[int]:
        """Every host id purged so far (by advances or ``purge``), ascending: the ground truth of
        what a destination must mark deleted, hosts and all their detections."""
        with self._lock:
            return sorted(self.host_id_of(i) for i in self._purged)

    # ---- hosts ------------------------------------------------------------------------------
    def _created_epoch(self, index: int) -> Epoch | None:
        if index < self.options.hosts:
            return None
        for epoch in self.epochs:
            if epoch.new_hosts_from <= index < epoch.new_hosts_from + epoch.new_hosts:
                return epoch
        return None

    def _rescan_times(self, index: int, epoch: Epoch) -> tuple[datetime, datetime]:
        span = (epoch.end - epoch.start).total_seconds()
        scanned = epoch.end - timedelta(seconds=int(unit(self.seed, 5, index, epoch.number) * span))
        processed = min(scanned + timedelta(minutes=5 + index % 90), epoch.end)
        return scanned, processed

    def rescans(self, index: int) -> list[Epoch]:
        """The epochs whose advance rescanned host ``index`` (not counting its creation)."""
        return [
            e for e in self.epochs
            if index < e.new_hosts_from and unit(self.seed, 4, index, e.number) < e.rescan_fraction
        ]

    def host_at(self, index: int) -> Host:
        """Host ``index`` as it is now: as created, then every rescan replayed."""
        created = self._created_epoch(index)
        host = datagen.make_host(self, index, created)
        for epoch in self.rescans(index):
            scanned, processed = self._rescan_times(index, epoch)
            datagen.rescan_host(self, host, epoch, scanned, processed)
        return host

    def detections(self, host: Host) -> list[Detection]:
        """All detections of ``host`` now, every status and type, in UNIQUE_VULN_ID order."""
        created = self._created_epoch(host.index)
        # Detections start from the host as it was created, then replay every rescan.
        base = datagen.make_host(self, host.index, created)
        detections = datagen.make_detections(self, base, created)
        for epoch in self.rescans(host.index):
            scanned, processed = self._rescan_times(host.index, epoch)
            datagen.rescan_detections(self, host, detections, epoch, scanned=scanned,
                                      processed=processed)
        return detections

    # ---- KnowledgeBase ----------------------------------------------------------------------
    def _extend_kb_compact(self, total: int) -> None:
        real = datagen.REAL_VULNS
        for k in range(len(self._kb_severity), total):
            self._kb_qid.append(real[k].qid if k < len(real) else
                                QID_BASE + QID_STRIDE * k + mix(self.seed, 11, k) % QID_STRIDE)
            severity, vuln_type = datagen.kb_class(self, k)
            self._kb_severity.append(severity)
            self._kb_vuln_type.append(vuln_type)

    def kb_severity(self, k: int) -> int:
        """The severity (1-5) of KnowledgeBase entry ``k``."""
        return self._kb_severity[k]

    def kb_vuln_type(self, k: int) -> int:
        """The vuln type of KnowledgeBase entry ``k``, as an index into ``VULN_TYPES``."""
        return self._kb_vuln_type[k]

    def kb_created_epoch(self, k: int) -> Epoch | None:
        """The advance that added KnowledgeBase entry ``k``; None if there from the start."""
        for epoch in self.epochs:
            if epoch.kb_new_from <= k < epoch.kb_new_from + epoch.kb_new:
                return epoch
        return None

    def kb_modifications(self, k: int) -> list[Epoch]:
        """The advances that modified KnowledgeBase entry ``k`` after it was added."""
        return [
            e for e in self.epochs
            if k < e.kb_new_from and unit(self.seed, 21, k, e.number) < e.kb_modified_fraction
        ]

    def kb_total(self) -> int:
        """How many QIDs the KnowledgeBase holds now."""
        with self._lock:
            return self._kb_total

    def vuln(self, k: int) -> datagen.Vuln:
        """KnowledgeBase entry ``k`` as it is now."""
        return datagen.make_vuln(self, k)

    # ---- ground truth -----------------------------------------------------------------------
    def knowledge_base_truth(self) -> Iterator[dict[str, Any]]:
        """Ground truth of knowledge_base: what a full sync must load, per QID."""
        for k in range(self.kb_total()):
            vuln = self.vuln(k)
            yield {
                "QID": vuln.qid,
                "VULN_TYPE": vuln.vuln_type,
                "SEVERITY_LEVEL": vuln.severity,
                "TITLE": vuln.title,
                "LAST_SERVICE_MODIFICATION_DATETIME": fmt(vuln.last_modified),
            }

    def hosts_truth(self) -> Iterator[dict[str, Any]]:
        """Ground truth of hosts: what a full sync must load, per live host."""
        for host in self.hosts_from(0):
            yield {
                "ID": host.id,
                "ASSET_ID": host.asset_id,
                "IP": host.ip,
                "IPV6": host.ipv6,
                "DNS": host.dns,
                "NETBIOS": host.netbios,
                "OS": host.os,
                "TRACKING_METHOD": host.tracking_method,
                "LAST_VULN_SCAN_DATETIME": fmt(host.last_vm_scanned),
                "LAST_VM_SCANNED_DATE": fmt(host.last_vm_scanned),
                "ASSET_RISK_SCORE": host.asset_risk_score,
                "ARS_FACTORS": {
                    "ars_formula": ARS_FORMULA,
                    "vuln_count": [{"qds_severity": s, "count": n}
                                   for s, n in host.ars_vuln_counts],
                },
            }

    # The default tap run asks for these (show_arf_data, mitre_attack_details); a field the
    # answer leaves out is null.
    def host_detections_truth(self) -> Iterator[dict[str, Any]]:
        """Ground truth of host_detections: every detection of every live host."""
        for host in self.hosts_from(0):
            for d in self.detections(host):
                yield {
                    "HOST_ID": host.id,
                    "UNIQUE_VULN_ID": d.unique_vuln_id,
                    "QID": d.qid,
                    "TYPE": d.type,
                    "STATUS": d.status,
                    "PORT": d.port,
                    "PROTOCOL": d.protocol,
                    "SSL": d.ssl,
                    "FIRST_FOUND_DATETIME": fmt(d.first_found),
                    "LAST_FOUND_DATETIME": fmt(d.last_found),
                    "LAST_FIXED_DATETIME": fmt(d.last_fixed),
                    "LAST_PROCESSED_DATETIME": fmt(d.last_processed),
                    "TIMES_FOUND": d.times_found,
                    "HOST_OS_CPE": host.os_cpe,
                    **dict(zip(ARF_FIELDS, d.arf, strict=True)),
                    **dict(zip(MITRE_FIELDS, d.mitre or (None,) * 4, strict=True)),
                }
