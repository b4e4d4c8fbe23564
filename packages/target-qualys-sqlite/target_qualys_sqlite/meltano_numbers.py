"""Numbers that arrive as strings, the way Meltano passes fractional settings.

Meltano casts a `kind: decimal` setting given as an environment variable to `decimal.Decimal` and
then fails to write the plugin's config file (`Object of type Decimal is not JSON serializable`).
meltano.yml therefore declares the plugins' `number` settings as `kind: string`, so they reach the
plugin as "0.5"; this turns them back into numbers before the SDK validates the config.

The same helper as tap_qualys.meltano_numbers: the target is a distribution of its own and does
not depend on the tap.
"""

from __future__ import annotations

import contextlib
import typing as t


def numbers_from_strings(config: dict[str, t.Any], schema: dict[str, t.Any]) -> dict[str, t.Any]:
    """A copy of `config` with each string value of a `number` property parsed as a float.

    A string that is not a number stays as it is, so the config validation names the setting.
    """
    properties = schema.get("properties", {})
    converted = dict(config)
    for name, value in config.items():
        types = properties.get(name, {}).get("type")
        types = [types] if isinstance(types, str) else types or []
        if isinstance(value, str) and "number" in types:
            with contextlib.suppress(ValueError):
                converted[name] = float(value)
    return converted
