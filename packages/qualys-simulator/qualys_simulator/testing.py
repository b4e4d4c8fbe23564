"""Start the simulator from tests: ``with SimulatorProcess(hosts=50, seed=3) as sim: ...``.

Keyword options become command-line flags (``detections_per_host=5`` ->
``--detections-per-host 5``; ``True`` -> a bare flag; a list -> the flag repeated).
Uses only the standard library, so any test or benchmark can use it.
"""

from __future__ import annotations

import json
import os
import select
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import TracebackType
from typing import Any

READY_PREFIX = "qualys-simulator listening on "


class SimulatorProcess:
    """The simulator as a subprocess on a free port; a context manager for tests and benchmarks."""

    def __init__(self, *, username: str = "qa_sim_user",
                 password: str = "sim-password",  # noqa: S107 - the documented test credential
                 startup_timeout: float = 30.0, **options: Any) -> None:
        self.username = username
        self.password = password
        self.options = options
        self.startup_timeout = startup_timeout
        self.url = ""
        self.process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "simulator not started"
        return self.process.pid

    def command(self) -> list[str]:
        """The command line that starts the simulator with these options."""
        args = [sys.executable, "-m", "qualys_simulator", "--port", "0",
                "--username", self.username, "--password", self.password]
        for key, value in self.options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                args.append(flag)
            elif value is False or value is None:
                continue
            elif isinstance(value, (list, tuple)):
                for item in value:
                    args += [flag, str(item)]
            else:
                args += [flag, str(value)]
        return args

    def start(self) -> SimulatorProcess:
        """Start the subprocess and wait for its ready line; ``RuntimeError`` if it never comes."""
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, text=True, bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.2)
            if ready:
                line = self.process.stdout.readline()
                if line.startswith(READY_PREFIX):
                    self.url = line[len(READY_PREFIX):].strip()
                    return self
                if not line and self.process.poll() is not None:
                    break
            elif self.process.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"qualys simulator did not start: {' '.join(self.command())}")

    def stop(self) -> None:
        """Terminate the subprocess; kill it if it has not ended after 10 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- admin helpers -----------------------------------------------------------------------
    def _open(self, request: urllib.request.Request) -> Any:
        context = None
        if self.url.startswith("https"):
            # Test certificates are self-signed; the admin helpers are a test tool.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            # S310: the URL is always this simulator's own http(s) address.
            with urllib.request.urlopen(request, timeout=600, context=context) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            # Surface the simulator's own explanation ({"error": ...}) in the test failure.
            raise RuntimeError(f"{request.full_url}: {exc.code} {exc.read().decode()}") from None

    def admin_get(self, path: str) -> Any:
        """GET an admin path; the answer's JSON."""
        return self._open(urllib.request.Request(self.url + path))  # noqa: S310 - see _open

    def admin_post(self, path: str, json_body: Any = None) -> Any:
        """POST ``json_body`` to an admin path; the answer's JSON."""
        data = json.dumps(json_body if json_body is not None else {}).encode()
        request = urllib.request.Request(  # noqa: S310 - see _open
            self.url + path, data=data, method="POST",
            headers={"Content-Type": "application/json"})
        return self._open(request)

    def stats(self) -> dict[str, Any]:
        """Request, response, fault and concurrency counters (``GET /admin/stats``)."""
        return dict(self.admin_get("/admin/stats"))

    def reset_stats(self) -> None:
        self.admin_post("/admin/stats/reset")

    def configure(self, **config: Any) -> dict[str, Any]:
        """Change limits, faults and quirks (``POST /admin/config``); the new settings."""
        return dict(self.admin_post("/admin/config", config))

    def advance(self, seconds: float = 86400, **changes: Any) -> dict[str, Any]:
        """Move the clock and apply that time's changes (``POST /admin/advance``); what changed."""
        return dict(self.admin_post("/admin/advance", {"seconds": seconds, **changes}))

    def ground_truth(self, stream: str | None = None) -> Any:
        """The records a full sync of ``stream`` must load; without one, counts and checksums."""
        if stream is None:
            return self.admin_get("/admin/ground-truth")
        return self.admin_get(f"/admin/ground-truth?stream={stream}")["records"]

    def purge(self, host_ids: list[int]) -> list[int]:
        """POST /admin/purge: purge these hosts now; returns the ids purged."""
        return list(self.admin_post("/admin/purge", {"host_ids": host_ids})["purged_host_ids"])

    def purged_host_ids(self) -> list[int]:
        """GET /admin/purged: every host id purged so far (ground truth of deletes)."""
        return list(self.admin_get("/admin/purged")["host_ids"])
