"""Benchmark the simulator itself: stream every detection of a big subscription.

    python -m benchmarks.simulator [--hosts 100000] [--detections-per-host 50]

Fetches Host List Detection in host-id batches (``ids=<lo>-<hi>``, ``truncation_limit=0``, the
pattern QualysETL uses) with as many client threads as the concurrency limit, counts detections
without parsing, and samples the simulator's RSS. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import requests

from qualys_simulator.testing import SimulatorProcess

HLD = "/api/5.0/fo/asset/host/vm/detection/"
MARK = b"<DETECTION>"


def fetch(sim: SimulatorProcess, ids: str, show_results: bool) -> tuple[int, int]:
    """(detections, bytes) of one batch, streamed."""
    data = {"action": "list", "ids": ids, "truncation_limit": "0",
            "status": "New,Active,Re-Opened,Fixed", "show_igs": "1",
            "show_results": "1" if show_results else "0", "show_qds": "1"}
    for _ in range(20):
        with requests.post(sim.url + HLD, data=data, auth=(sim.username, sim.password),
                           headers={"X-Requested-With": "benchmark"}, stream=True,
                           timeout=600) as response:
            if response.status_code == 409:
                time.sleep(0.2)
                continue
            response.raise_for_status()
            count = size = 0
            tail = b""
            for chunk in response.iter_content(256 * 1024):
                size += len(chunk)
                block = tail + chunk
                count += block.count(MARK)
                # Keep a short tail so a mark split across chunks is counted once.
                tail = block[-(len(MARK) - 1):]
                count -= tail.count(MARK)
            return count, size
    raise RuntimeError(f"batch {ids} kept getting 409")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=100_000)
    parser.add_argument("--detections-per-host", type=float, default=50)
    parser.add_argument("--batch", type=int, default=1000, help="hosts per request")
    parser.add_argument("--workers", type=int, default=2, help="= the concurrency limit")
    parser.add_argument("--no-results", action="store_true", help="show_results=0")
    args = parser.parse_args()

    with SimulatorProcess(hosts=args.hosts, seed=1, detections_per_host=args.detections_per_host,
                          concurrency_limit=args.workers, startup_timeout=120) as sim:
        process = psutil.Process(sim.pid)
        peak = [process.memory_info().rss]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], process.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # Batches as id ranges; host ids are ascending, so ranges cut by index are exact.
        ids = [1_000_000 + 16 * i for i in range(0, args.hosts, args.batch)]
        ends = [*ids[1:], 1_000_000 + 16 * args.hosts + 16]
        ranges = [f"{lo}-{hi - 1}" for lo, hi in zip(ids, ends, strict=True)]
        started = time.monotonic()
        with ThreadPoolExecutor(args.workers) as pool:
            results = list(pool.map(lambda r: fetch(sim, r, not args.no_results), ranges))
        elapsed = time.monotonic() - started
        cpu = process.cpu_times()
        done.set()
        sampler.join()
        detections = sum(r[0] for r in results)
        size = sum(r[1] for r in results)

    # CPU seconds of the simulator make the rate comparable on a busy machine.
    cpu_seconds = cpu.user + cpu.system
    print("| hosts | detections | MB served | seconds | detections/s | MB/s "
          "| simulator CPU s | detections/CPU-s | simulator peak RSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.hosts:,} | {detections:,} | {size / 1e6:,.0f} | {elapsed:,.1f} | "
          f"{detections / elapsed:,.0f} | {size / 1e6 / elapsed:,.1f} | {cpu_seconds:,.0f} | "
          f"{detections / cpu_seconds:,.0f} | {peak[0] / 2**20:,.0f} MB |")


if __name__ == "__main__":
    main()
