"""Purged hosts: what the full host-id sweep keeps in the state and how it judges a sweep.

Qualys says nothing when a host is purged (by hand or by a purge rule): the host and its
detections simply stop appearing (docs/qualys-api.md §6). The only way to learn it is to compare
the full list of host ids (Host List ``details=None``, ids only) with the previous one. The
hosts stream keeps that previous list in its state, compact: sorted ids, delta-encoded as
varints, zlib-compressed, base64 (``encode_ids``; about 1.3 bytes a host with the simulator's
ids, see the benchmark). The judging here is pure, so every fail-closed case is unit-tested:

- a sweep that failed or was cut never reaches :func:`judge` (the stream catches the error);
- a previous list taken over another ``id_min``/``id_max`` range is not comparable: the new
  list becomes the baseline and nothing is deleted;
- a sweep that would delete more than ``purge_sweep_max_fraction`` of the hosts seen last time
  (an empty answer, a wrong filter, a subscription switch) deletes nothing, keeps the previous
  list and says so, until the user raises the setting.
"""

from __future__ import annotations

import base64
import binascii
import typing as t
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from tap_qualys.casting import parse_utc
from tap_qualys.errors import CastError, StateError

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: The hosts stream's state key of the last sweep.
STATE_KEY = "purge_sweep"
#: The state encoding's version: a state of another version is a baseline, never compared.
ENCODING = "delta-varint-zlib-b64/1"
DEFAULT_MAX_FRACTION = 0.5


def encode_ids(ids: Iterable[int]) -> str:
    """Ids as ASCII: sorted, deduplicated, deltas as LEB128 varints, zlib (9), base64."""
    out = bytearray()
    previous = 0
    for value in sorted(set(ids)):
        if value < 0:
            msg = f"host id {value} is negative"
            raise ValueError(msg)
        delta = value - previous
        previous = value
        while delta >= 0x80:
            out.append((delta & 0x7F) | 0x80)
            delta >>= 7
        out.append(delta)
    return base64.b64encode(zlib.compress(bytes(out), 9)).decode("ascii")


def decode_ids(text: str) -> list[int]:
    """The ids :func:`encode_ids` wrote, ascending; ``StateError`` if the text is damaged."""
    try:
        data = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (binascii.Error, zlib.error, UnicodeEncodeError, ValueError) as exc:
        msg = f"{STATE_KEY}.ids is not a list of host ids written by this tap ({exc})"
        raise StateError(msg) from None
    ids: list[int] = []
    value = shift = delta = 0
    for byte in data:
        delta |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        value += delta
        ids.append(value)
        delta = shift = 0
    if shift:
        msg = f"{STATE_KEY}.ids ends in the middle of a number"
        raise StateError(msg)
    return ids


def scope_of(config: Mapping[str, t.Any]) -> dict[str, int | None]:
    """The host id range a sweep covers: a tap sharded by ``id_min``/``id_max`` sweeps its own.

    Tag filters are not part of it: the sweep lists every host in the range, so a host that only
    lost a tag is not taken for purged.
    """
    return {"id_min": config.get("id_min"), "id_max": config.get("id_max")}


@dataclass(frozen=True)
class Verdict:
    """What to do with one complete sweep."""

    #: Host ids to emit tombstones for, ascending.
    vanished: list[int]
    #: The state to keep: the new sweep's, or (refused) the previous one unchanged.
    state: dict[str, t.Any]
    #: One line for the log: why nothing was deleted, or what was.
    message: str
    #: The sweep was refused (WARNING): nothing deleted, previous list kept.
    refused: bool = False
    #: Worth a WARNING although not refused (the previous list was unreadable).
    warn: bool = False


def due(
    previous: Mapping[str, t.Any] | None,
    now: datetime,
    interval_hours: float,
) -> bool:
    """Whether a sweep is due at ``now`` (Qualys' clock): every run with interval 0."""
    if not previous or interval_hours <= 0:
        return True
    try:
        last = parse_utc(previous.get("swept_at") or "")
    except CastError:
        return True
    # A last sweep "in the future" means Qualys' clock moved back: sweep rather than wait.
    return not last <= now < last + timedelta(hours=interval_hours)


def judge(
    previous: Mapping[str, t.Any] | None,
    current: list[int],
    *,
    scope: Mapping[str, int | None],
    swept_at: str,
    max_fraction: float = DEFAULT_MAX_FRACTION,
    label: str = "hosts: purge sweep",
    gone: str = "purged",
) -> Verdict:
    """Compare a complete sweep (``current``: every id in ``scope``) with the previous one."""
    state = {
        "encoding": ENCODING,
        "scope": dict(scope),
        "swept_at": swept_at,
        "count": len(set(current)),
        "ids": encode_ids(current),
    }
    if not previous:
        return Verdict([], state, f"{label}: first sweep, {state['count']:,} host ids recorded")
    if previous.get("encoding") != ENCODING or previous.get("scope") != dict(scope):
        return Verdict(
            [],
            state,
            f"{label}: the previous sweep covered another id range ({previous.get('scope')}) "
            f"or encoding; {state['count']:,} host ids recorded as the new baseline, nothing "
            "deleted",
        )
    try:
        before = decode_ids(str(previous.get("ids", "")))
    except StateError as exc:
        # Damaged beyond use: deleting from it could delete anything; start over instead of
        # failing every later run on the same state.
        return Verdict([], state, f"{label}: {exc}; new baseline, nothing deleted", warn=True)
    vanished = sorted(set(before) - set(current))
    if before and len(vanished) > max_fraction * len(before):
        return Verdict(
            [],
            dict(previous),
            f"{label}: {len(vanished):,} of the {len(before):,} hosts seen at "
            f"{previous.get('swept_at')} are missing from this sweep ({len(current):,} ids), "
            f"more than purge_sweep_max_fraction ({max_fraction:g}): refusing to delete them "
            "(a wrong answer or a changed subscription looks like this). If Qualys really "
            "purged them, raise purge_sweep_max_fraction for one run",
            refused=True,
        )
    return Verdict(
        vanished,
        state,
        f"{label}: {len(current):,} host ids, {len(vanished):,} {gone} since "
        f"{previous.get('swept_at')}",
    )
