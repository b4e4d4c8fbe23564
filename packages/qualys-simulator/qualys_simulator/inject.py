"""Crafted answers for tests: ``POST /admin/inject`` makes the next N answers of an endpoint
exactly the payload given, before any authentication, limit or fault logic runs.

Tests use it to serve hostile or broken input the simulator never produces by itself (XXE,
entity expansion, invalid UTF-8, a proxy's HTML login page, a JWT endpoint without a token...)::

    POST /admin/inject {"endpoint": "host_list", "status": 200,
                        "content_type": "text/xml; charset=UTF-8",
                        "body_b64": "<base64>", "times": 1}

- ``endpoint``: the endpoint name used by ``/admin/stats`` (``knowledge_base``, ``host_list``,
  ``host_detection``, ``auth``, ``csam_search``, ``pcrs_policy_list``, ``pcrs_hostids``,
  ``pcrs_posture_info``, ``tag_search``, ...).
- ``status`` (200), ``content_type`` (``text/xml; charset=UTF-8``), ``headers`` ({}),
  ``times`` (1; how many answers in a row get the payload).
- The body is ``body_b64`` + ``repeat_b64`` x ``repeat_count`` + ``tail_b64`` (all optional,
  base64), streamed in chunks, so a 50 MB text node needs no 50 MB admin request.
- ``POST /admin/inject {"clear": true}`` drops every pending payload; ``GET /admin/inject``
  lists them. Each injected answer counts in ``/admin/stats`` as a request, a response and the
  fault ``inject``.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from qualys_simulator import gateway, tag_api
from qualys_simulator.faults import Stats
from qualys_simulator.http import Response
from qualys_simulator.vm_api import VMAPI

CHUNK_BYTES = 64 * 1024
_GATEWAY_ENDPOINTS = {
    "/auth": gateway.AUTH,
    gateway.CSAM_SEARCH: gateway.CSAM_SEARCH_NAME,
    gateway.CSAM_COUNT: gateway.CSAM_COUNT_NAME,
    **dict.fromkeys(gateway.PCRS_POLICY_LIST, "pcrs_policy_list"),
    **dict.fromkeys(gateway.PCRS_HOST_IDS, "pcrs_hostids"),
    **dict.fromkeys(gateway.PCRS_POSTURE, gateway.PCRS_POSTURE_NAME),
    tag_api.PATH: tag_api.ENDPOINT,
}
# The VM API's stats names (vm_api's routing table is private to it).
_VM_ENDPOINTS = ("knowledge_base", "host_list", "host_detection", "session", "portal_version",
                 "about")
KNOWN_ENDPOINTS = frozenset(_VM_ENDPOINTS) | frozenset(_GATEWAY_ENDPOINTS.values())


def endpoint_of(path: str) -> str | None:
    """The stats name of the endpoint serving ``path``, or None."""
    return VMAPI.endpoint_of(path) or _GATEWAY_ENDPOINTS.get(path.rstrip("/") or "/")


def _b64(payload: dict[str, Any], key: str) -> bytes:
    try:
        return base64.b64decode(str(payload.get(key) or ""), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{key} is not valid base64") from None


@dataclass
class Injection:
    """One crafted answer from ``POST /admin/inject`` and how many more times it is served."""
    endpoint: str
    status: int
    content_type: str
    headers: dict[str, str]
    head: bytes
    repeat: bytes
    repeat_count: int
    tail: bytes
    remaining: int

    @property
    def size(self) -> int:
        """The body's length in bytes."""
        return len(self.head) + len(self.repeat) * self.repeat_count + len(self.tail)

    def body(self) -> bytes | Iterator[bytes]:
        """The body: bytes when small, chunks to stream when large."""
        if self.size <= CHUNK_BYTES:
            return self.head + self.repeat * self.repeat_count + self.tail
        return self._stream()

    def _stream(self) -> Iterator[bytes]:
        yield self.head
        if self.repeat and self.repeat_count:
            per_chunk = max(CHUNK_BYTES // len(self.repeat), 1)
            left = self.repeat_count
            while left:
                count = min(per_chunk, left)
                yield self.repeat * count
                left -= count
        yield self.tail

    def describe(self) -> dict[str, Any]:
        """This injection, as ``GET /admin/inject`` lists it."""
        return {"endpoint": self.endpoint, "status": self.status,
                "content_type": self.content_type, "bytes": self.size,
                "remaining": self.remaining}


@dataclass
class Injector:
    """Pending crafted answers, per endpoint, in the order they were injected."""

    stats: Stats
    _pending: dict[str, deque[Injection]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def configure(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue a crafted answer, or drop every pending one (``clear``); the pending list."""
        if payload.get("clear"):
            with self._lock:
                self._pending.clear()
            return self.snapshot()
        endpoint = payload.get("endpoint")
        if endpoint not in KNOWN_ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; known: "
                             f"{', '.join(sorted(KNOWN_ENDPOINTS))}")
        times = int(payload.get("times", 1))
        count = int(payload.get("repeat_count", 0))
        if times < 1 or count < 0:
            raise ValueError("times must be >= 1 and repeat_count >= 0")
        headers = payload.get("headers") or {}
        if not isinstance(headers, dict):
            raise TypeError("headers must be an object")
        injection = Injection(
            endpoint=str(endpoint), status=int(payload.get("status", 200)),
            content_type=str(payload.get("content_type", "text/xml; charset=UTF-8")),
            headers={str(k): str(v) for k, v in headers.items()},
            head=_b64(payload, "body_b64"), repeat=_b64(payload, "repeat_b64"),
            repeat_count=count, tail=_b64(payload, "tail_b64"), remaining=times,
        )
        with self._lock:
            self._pending.setdefault(injection.endpoint, deque()).append(injection)
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """The pending injections (``GET /admin/inject``)."""
        with self._lock:
            return {"pending": [i.describe() for queue in self._pending.values() for i in queue]}

    def answer(self, path: str) -> Response | None:
        """The crafted answer for a request to ``path``, when one is pending."""
        endpoint = endpoint_of(path)
        if endpoint is None:
            return None
        with self._lock:
            queue = self._pending.get(endpoint)
            if not queue:
                return None
            injection = queue[0]
            injection.remaining -= 1
            if injection.remaining <= 0:
                queue.popleft()
        self.stats.request(endpoint)
        self.stats.response(endpoint, injection.status)
        self.stats.fault("inject")
        return Response(injection.status, injection.body(), injection.content_type,
                        dict(injection.headers))
