"""tap-qualys: a Singer tap for Qualys VM, CSAM and Policy Compliance, built on the Meltano SDK."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tap-qualys")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
