"""tap-qualys: a Singer tap for Qualys VM, CSAM and Policy Compliance, built on the Meltano SDK."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("tap-qualys")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

if sys.argv and Path(sys.argv[0]).stem == "tap-qualys":
    # The console script: guarded from here, before the SDK's imports (see signals.py).
    from tap_qualys import signals

    signals.guard_start_up()
