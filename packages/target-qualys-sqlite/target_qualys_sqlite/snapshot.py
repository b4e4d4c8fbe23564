"""Point-in-time databases: one file per successful run, and a stable path to the newest.

Layout, for ``database = output/qualys.db`` and ``snapshot_dir = output/snapshots``::

    output/snapshots/qualys-20261123T153000Z.db          a finished run (never written again)
    output/snapshots/qualys-20261124T153000Z.db.partial  a run in progress, or one that failed
    output/qualys.db -> snapshots/qualys-20261123T153000Z.db

``output/qualys.db`` is a relative symlink, repointed by creating a temporary symlink and
``os.replace``-ing it over the old one: rename(2) is atomic, so a reader sees the old snapshot or
the new one, never a missing or half-written file, and a reader that already has the old file open
keeps a consistent view of it. Only a run that finished (every sink drained and committed) is
renamed from ``.partial`` and published, so a failed run never moves ``latest``.
"""

from __future__ import annotations

import datetime
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class Snapshot:
    """The files of one point-in-time run."""

    latest: Path
    """The stable path readers open; a symlink to the newest finished snapshot."""
    final: Path
    """Where this run's snapshot ends up once it succeeds."""

    @property
    def partial(self) -> Path:
        """Where this run writes until it succeeds."""
        return self.final.with_name(self.final.name + PARTIAL_SUFFIX)


def plan_snapshot(latest: Path, snapshot_dir: Path, now: datetime.datetime) -> Snapshot:
    """Name this run's snapshot ``<stem>-<UTC timestamp>.db`` without clobbering another run's.

    The name is reserved by creating the empty partial file exclusively: two runs starting in the
    same second (two schedules) would otherwise both pick the free name and write one file.
    """
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    stamp = now.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = f"{latest.stem}-{stamp}"
    candidate = snapshot_dir / f"{base}{latest.suffix}"
    counter = 1
    while True:
        planned = Snapshot(latest=latest, final=candidate)
        if not candidate.exists():
            try:
                os.close(os.open(planned.partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                pass
            else:
                return planned
        candidate = snapshot_dir / f"{base}-{counter}{latest.suffix}"
        counter += 1


def start_snapshot(snapshot: Snapshot, *, from_latest: bool, busy_timeout: float) -> None:
    """Fill the partial file (reserved empty by :func:`plan_snapshot`) with a copy of latest.

    Incremental syncs only send what changed, so a snapshot started empty would hold a fraction of
    the data; seeding from latest makes every snapshot complete. SQLite's online backup API copies
    a consistent state page by page even if another process is writing to the source.
    """
    if not (from_latest and snapshot.latest.exists()):
        return
    source = sqlite3.connect(snapshot.latest, timeout=busy_timeout)
    target = sqlite3.connect(snapshot.partial, timeout=busy_timeout)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def publish_snapshot(snapshot: Snapshot) -> Path:
    """Rename the finished partial file to its final name and atomically repoint latest.

    The caller must have closed every connection first (no -wal/-shm files left to strand).
    """
    os.replace(snapshot.partial, snapshot.final)
    _fsync_dir(snapshot.final.parent)
    link_target = os.path.relpath(snapshot.final, snapshot.latest.parent)
    temp_link = snapshot.latest.with_name(f".{snapshot.latest.name}.{os.getpid()}.tmp")
    temp_link.unlink(missing_ok=True)
    temp_link.symlink_to(link_target)
    os.replace(temp_link, snapshot.latest)
    _fsync_dir(snapshot.latest.parent)
    return snapshot.final


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable, so a power cut cannot undo a published snapshot.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
