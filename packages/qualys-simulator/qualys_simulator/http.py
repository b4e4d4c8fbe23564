"""Transport-neutral request/response types shared by every API module of the simulator.

The VM API module, the gateway module and the admin endpoints all take a ``Request`` and return
a ``Response``; only ``server.py`` knows about sockets. An iterable body is streamed with chunked
transfer encoding, which lets huge documents be generated lazily and lets faults cut them short.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass
class Request:
    """One HTTP request, as the API modules see it."""
    method: str
    path: str  # without the query string
    query: dict[str, str]  # last value wins
    form: dict[str, str]  # query + urlencoded form body merged (VM API style)
    headers: Mapping[str, str]  # case-insensitive lookup
    body: bytes


@dataclass
class Response:
    """One answer: status, body (bytes, or chunks to stream), content type and headers."""
    status: int
    body: bytes | Iterable[bytes]  # an iterable is streamed (chunked) and may be cut/dropped
    content_type: str = "text/xml; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
