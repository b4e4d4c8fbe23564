"""Run the tap: ``python -m tap_qualys --config config.json``."""

from __future__ import annotations

from tap_qualys import signals

signals.guard_start_up()  # before the SDK's imports, as for the console script

from tap_qualys.tap import TapQualys  # noqa: E402

TapQualys.cli()
