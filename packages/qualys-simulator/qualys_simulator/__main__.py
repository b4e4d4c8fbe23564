"""``python -m qualys_simulator``: start the simulator and print one ready line on stdout."""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
import traceback
from datetime import datetime, timezone
from types import ModuleType

from qualys_simulator.faults import FAULT_NAMES, FaultInjector, Limits, Stats
from qualys_simulator.server import GatewayLike, SimulatorApp, SimulatorHTTPServer
from qualys_simulator.vm_api import VMConfig
from qualys_simulator.world import DEFAULT_START, World, WorldOptions


def _gateway_module() -> ModuleType | None:
    """The gateway module, if present and importable.

    The VM API must stay usable on its own: a missing or broken gateway module disables the
    gateway paths (404) with a warning on stderr instead of taking the whole simulator down.
    """
    try:
        from qualys_simulator import gateway  # noqa: PLC0415 - optional, see docstring
    except ModuleNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - any import error only disables the gateway
        sys.stderr.write("qualys-simulator: gateway disabled, import failed:\n")
        traceback.print_exc()
        return None
    return gateway


def _fault(text: str) -> tuple[str, float]:
    name, _, probability = text.partition("=")
    if name not in FAULT_NAMES:
        raise argparse.ArgumentTypeError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
    try:
        return name, float(probability or "1")
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad probability in {text!r}") from None


def _start(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def build_parser(gateway: ModuleType | None) -> argparse.ArgumentParser:
    """The command line: server, data, limits, faults and, when present, the gateway's flags."""
    parser = argparse.ArgumentParser(prog="qualys-simulator", description=__doc__)
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument("--log-requests", action="store_true", help="log each request to stderr")
    data = parser.add_argument_group("data")
    data.add_argument("--hosts", type=int, default=100)
    data.add_argument("--seed", type=int, default=1)
    data.add_argument("--detections-per-host", type=float, default=8.0,
                      help="average over all hosts, hosts without detections included")
    data.add_argument("--no-detection-fraction", type=float, default=0.1)
    data.add_argument("--kb-size", type=int, default=2000, help="QIDs that detections use")
    data.add_argument("--kb-extra", type=int, default=500, help="QIDs that no host has")
    data.add_argument("--long-results-fraction", type=float, default=0.005,
                      help="share of RESULTS that are tens of KB long")
    data.add_argument("--start", type=_start, default=DEFAULT_START,
                      help="simulated clock start (default 2026-11-01T00:00:00Z)")
    vm = parser.add_argument_group("VM API")
    vm.add_argument("--username", default="qa_sim_user")
    vm.add_argument("--password", default="sim-password")
    vm.add_argument("--concurrency-limit", type=int, default=2)
    vm.add_argument("--rate-limit", type=int, default=2000, help="calls per window, per API")
    vm.add_argument("--rate-window-sec", type=int, default=3600)
    vm.add_argument("--kb-page-size", type=int, default=0,
                    help="page the KB with WARNING/1980 every N QIDs (0 = one document)")
    vm.add_argument("--detection-truncation-limit", type=int, default=0,
                    help="Host List Detection truncates at N hosts with WARNING/1980 even when "
                         "asked for truncation_limit=0 (0 = never)")
    vm.add_argument("--no-doctype", action="store_true", help="omit the DOCTYPE lines")
    vm.add_argument("--consultant", action="store_true",
                    help="reject TruRisk/QDS parameters with 1901, like consultant subscriptions")
    vm.add_argument("--warning-url-extra-params", action="store_true",
                    help="truncation URLs add a parameter the caller never sent (details=None; "
                         "show_results=0 on detections), like Qualys may (doc §4)")
    faults = parser.add_argument_group("faults")
    faults.add_argument("--fault", type=_fault, action="append", default=[],
                        metavar="NAME=PROBABILITY",
                        help=f"inject a fault; names: {', '.join(FAULT_NAMES)}")
    faults.add_argument("--fault-endpoints", default="",
                        help="comma list of endpoints faults apply to (default: all)")
    faults.add_argument("--slow-first-byte-sec", type=float, default=2.0)
    faults.add_argument("--record-delay-sec", type=float, default=0.0,
                        help="server-side delay per record (host or QID) streamed")
    if gateway is not None:
        gateway.add_arguments(parser)
    return parser


def build(args: argparse.Namespace, gateway: ModuleType | None) -> SimulatorApp:
    """The ``SimulatorApp`` the command line describes."""
    world = World(WorldOptions(
        hosts=args.hosts, seed=args.seed, detections_per_host=args.detections_per_host,
        no_detection_fraction=args.no_detection_fraction, kb_size=args.kb_size,
        kb_extra=args.kb_extra, start=args.start, long_results_fraction=args.long_results_fraction,
    ))
    faults = FaultInjector(args.seed)
    faults.configure({
        "faults": dict(args.fault),
        "fault_endpoints": [e for e in args.fault_endpoints.split(",") if e],
        "slow_first_byte_sec": args.slow_first_byte_sec,
        "record_delay_sec": args.record_delay_sec,
    })
    limits = Limits(args.concurrency_limit, args.rate_limit, args.rate_window_sec)
    stats = Stats()
    vm_config = VMConfig(username=args.username, password=args.password,
                         doctype=not args.no_doctype, consultant=args.consultant,
                         kb_page_size=args.kb_page_size,
                         warning_url_extra_params=args.warning_url_extra_params,
                         detection_truncation_limit=args.detection_truncation_limit,
                         scheme="https" if args.tls_cert else "http")
    api: GatewayLike | None = None
    if gateway is not None:
        api = gateway.GatewayAPI(world, faults, stats, gateway.GatewayConfig.from_args(args))
    return SimulatorApp(world, faults, limits, stats, vm_config=vm_config, gateway=api,
                     log_requests=args.log_requests)


def main(argv: list[str] | None = None) -> None:
    """Print the ready line, then serve until SIGTERM or Ctrl-C."""
    gateway = _gateway_module()
    args = build_parser(gateway).parse_args(argv)
    simulator = build(args, gateway)
    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    server = SimulatorHTTPServer((args.bind, args.port), simulator, tls)
    scheme = "https" if tls else "http"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"qualys-simulator listening on {scheme}://{args.bind}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
