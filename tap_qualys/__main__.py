"""Run the tap: ``python -m tap_qualys --config config.json``."""

from __future__ import annotations

from tap_qualys.tap import TapQualys

TapQualys.cli()
