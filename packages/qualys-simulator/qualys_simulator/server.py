"""The HTTP/1.1 server: sockets, routing, streaming, and the /admin endpoints.

Iterable bodies are sent with chunked transfer encoding as they are generated, so a multi-GB
document is never held in memory. A body may raise ``DropConnection`` to make the server abort
the TCP connection mid-body, the way Qualys connections die on big responses (doc §3).
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import sys
from collections.abc import Callable, Iterator, Mapping
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from qualys_simulator.faults import DropConnection, FaultInjector, Limits, Stats
from qualys_simulator.http import Request, Response
from qualys_simulator.inject import Injector
from qualys_simulator.model import fmt
from qualys_simulator.tag_api import TagAPI
from qualys_simulator.vm_api import VMAPI, VMConfig
from qualys_simulator.world import World

LIMIT_KEYS = {"concurrency_limit", "rate_limit", "rate_window_sec", "held_slots",
              "reset_rate_windows"}
FAULT_KEYS = {"faults", "fault_budget", "fault_endpoints", "slow_first_byte_sec",
              "record_delay_sec"}
VM_KEYS = {"doctype", "consultant", "kb_page_size", "warning_url_extra_params",
           "detection_truncation_limit"}
GATEWAY_PREFIXES = ("/auth", "/rest/", "/pcrs/")


class GatewayLike(Protocol):
    """What the app needs of the gateway module: an answer, or None for a path not its own."""

    def handle(self, request: Request) -> Response | None: ...


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only view of request headers."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = {k.lower(): v for k, v in items}
        self._names = {k.lower(): k for k, _ in items}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._items)


class SimulatorApp:
    """Everything one server process serves: the world, limits, faults, stats and the APIs."""

    def __init__(self, world: World, faults: FaultInjector, limits: Limits, stats: Stats, *,
                 vm_config: VMConfig, gateway: GatewayLike | None = None,
                 log_requests: bool = False) -> None:
        self.world = world
        self.faults = faults
        self.limits = limits
        self.stats = stats
        self.vm_config = vm_config
        self.vm = VMAPI(world, faults, limits, stats, vm_config)
        # The tag API (QPS) takes the VM API's Basic credentials, as Qualys does.
        self.tags = TagAPI(world, faults, stats,
                           lambda: (vm_config.username, vm_config.password))
        self.gateway = gateway
        self.log_requests = log_requests
        self.injector = Injector(stats)  # crafted answers for tests: POST /admin/inject

    def handle(self, req: Request) -> Response:
        """Answer one request: admin, an injected answer, the VM API, the tag API, the gateway,
        else 404."""
        if req.path.startswith("/admin/"):
            return self.admin(req)
        injected = self.injector.answer(req.path)
        if injected is not None:
            return injected
        response = self.vm.handle(req)
        if response is None:
            response = self.tags.handle(req)
        if response is None and self.gateway is not None and req.path.startswith(GATEWAY_PREFIXES):
            response = self.gateway.handle(req)
        if response is None:
            return Response(404, b'{"error": "not found"}', "application/json")
        return response

    # ---- admin -------------------------------------------------------------------------------
    @staticmethod
    def _json(data: Any, status: int = 200) -> Response:
        return Response(status, json.dumps(data, ensure_ascii=False).encode(), "application/json")

    def config_snapshot(self) -> dict[str, Any]:
        """Every run-time setting (``GET /admin/config``)."""
        return {
            **self.limits.snapshot(), **self.faults.snapshot(),
            "doctype": self.vm_config.doctype, "consultant": self.vm_config.consultant,
            "kb_page_size": self.vm_config.kb_page_size,
            "warning_url_extra_params": self.vm_config.warning_url_extra_params,
            "detection_truncation_limit": self.vm_config.detection_truncation_limit,
            **(getattr(self.gateway, "snapshot", dict)()),
        }

    def configure(self, config: dict[str, Any]) -> None:
        """Apply ``POST /admin/config``: each key goes to the limits, faults, VM API or gateway."""
        self.limits.configure({k: v for k, v in config.items() if k in LIMIT_KEYS})
        self.faults.configure({k: v for k, v in config.items() if k in FAULT_KEYS})
        for key in VM_KEYS & config.keys():
            setattr(self.vm_config, key, type(getattr(self.vm_config, key))(config[key]))
        # Every other key belongs to the gateway module (token lifetime, its 429 window...).
        rest = {k: v for k, v in config.items() if k not in LIMIT_KEYS | FAULT_KEYS | VM_KEYS}
        if rest:
            configure = getattr(self.gateway, "configure", None)
            if configure is None:
                raise ValueError(f"unknown config keys: {', '.join(sorted(rest))}")
            configure(rest)

    def admin(self, req: Request) -> Response:
        """Answer an ``/admin/`` request (no auth: the simulator is a test tool)."""
        routes: dict[str, Callable[[Request, dict[str, Any]], Any]] = {
            "GET /admin/stats": lambda _r, _p: {**self.stats.snapshot(),
                                                "limits": self.limits.snapshot()},
            "POST /admin/stats/reset": self._reset_stats,
            "GET /admin/config": lambda _r, _p: self.config_snapshot(),
            "POST /admin/config": self._configure,
            "POST /admin/advance": self._advance,
            "GET /admin/clock": lambda _r, _p: {"now": fmt(self.world.clock.now()),
                                                "epoch": self.world.epoch},
            "GET /admin/ground-truth": self._ground_truth,
            "POST /admin/purge": self._purge,
            "GET /admin/purged": lambda _r, _p: {"host_ids": self.world.purged_host_ids()},
            "GET /admin/inject": lambda _r, _p: self.injector.snapshot(),
            "POST /admin/inject": lambda _r, payload: self.injector.configure(payload),
        }
        route = routes.get(f"{req.method} {req.path.rstrip('/')}")
        if route is None:
            return self._json({"error": "not found"}, 404)
        try:
            payload = json.loads(req.body or b"{}") if req.method == "POST" else {}
            if not isinstance(payload, dict):
                raise TypeError("the body must be a JSON object")
            result = route(req, payload)
        except LookupError as exc:
            return self._json({"error": str(exc)}, 404)
        except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            return self._json({"error": str(exc)}, 400)
        return self._json(result)

    def _reset_stats(self, _req: Request, _payload: dict[str, Any]) -> dict[str, Any]:
        self.stats.reset()
        return {"ok": True}

    def _configure(self, _req: Request, payload: dict[str, Any]) -> dict[str, Any]:
        self.configure(payload)
        return self.config_snapshot()

    def _advance(self, _req: Request, payload: dict[str, Any]) -> dict[str, Any]:
        seconds = float(payload.pop("seconds", 86400))
        epoch = self.world.advance(seconds, **payload)
        return {"now": fmt(self.world.clock.now()), "epoch": epoch.number,
                "purged_host_ids": sorted(self.world.host_id_of(i) for i in epoch.purged),
                "new_hosts": epoch.new_hosts, "new_qids": epoch.kb_new}

    def _purge(self, _req: Request, payload: dict[str, Any]) -> dict[str, Any]:
        ids = payload.get("host_ids")
        if not isinstance(ids, list) or not all(type(i) is int for i in ids):
            raise TypeError("host_ids must be a list of integers")
        return {"purged_host_ids": self.world.purge(ids)}

    def _ground_truth(self, req: Request, _payload: dict[str, Any]) -> dict[str, Any]:
        stream = req.query.get("stream")
        if stream is None:
            return {"now": fmt(self.world.clock.now()),
                    "streams": self.world.ground_truth_summary()}
        if stream not in self.world.ground_truth_streams():
            raise LookupError(f"unknown stream {stream}")
        return {"records": list(self.world.ground_truth(stream))}


class Handler(BaseHTTPRequestHandler):
    """Turns each HTTP request into a ``Request`` for the app and writes its ``Response``."""
    protocol_version = "HTTP/1.1"
    server_version = "qualys-simulator"

    def version_string(self) -> str:
        return self.server_version

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header tells the simulated clock, like RESPONSE/DATETIME: clients that take
        # the server's time from either must see the same one (tests move it with --start).
        if timestamp is not None:
            return super().date_time_string(timestamp)
        return format_datetime(self.server.simulator.world.clock.now(), usegmt=True)
    server: SimulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.simulator.log_requests:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _request(self) -> Request:
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        form = dict(query)
        content_type = self.headers.get("Content-Type", "")
        if body and ("x-www-form-urlencoded" in content_type or not content_type):
            form.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return Request(self.command, split.path, query, form, Headers(list(self.headers.items())),
                       body)

    def _serve(self) -> None:
        response = self.server.simulator.handle(self._request())
        try:
            self._send(response)
        except DropConnection:
            self._abort()
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True
        finally:
            # Always close a streamed body: closing is what releases its concurrency slot.
            close = getattr(response.body, "close", None)
            if close is not None:
                close()

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            for line in value.split("\n"):
                self.send_header(name, line)
        body = response.body
        if isinstance(body, bytes):
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in body:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except DropConnection:
            raise
        except Exception:
            # A bug mid-stream: the status line is gone already, so end the connection
            # without the terminating chunk; the client sees a broken body, never a short one.
            self.close_connection = True
            raise
        self.wfile.write(b"0\r\n\r\n")

    def _abort(self) -> None:
        """Kill the connection with a RST, mid-body, like a dying Qualys stream."""
        self.close_connection = True
        try:
            # Linger 0: closing sends a RST instead of a clean FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()


class SimulatorHTTPServer(ThreadingHTTPServer):
    """The threaded HTTP(S) server in front of one ``SimulatorApp``."""
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: SimulatorApp,
                 tls: ssl.SSLContext | None = None) -> None:
        self.simulator = simulator
        self.tls = tls
        super().__init__(address, Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            # Handshake in the handler thread, not here, so one slow client cannot block accept.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients resetting idle keep-alive connections is normal; only log real errors.
        if isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)
