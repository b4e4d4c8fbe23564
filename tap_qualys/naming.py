"""One naming rule for columns: every stream's top-level field names are snake_case.

XML streams get it from the element names (``UNIQUE_VULN_ID`` -> ``unique_vuln_id``, in
``qualys_xml``). The gateway's JSON keys are camelCase; their top-level names are converted
here, once per key when the stream is built (:class:`Columns`), so the per-record cost is one
dict lookup per field. Values nested inside a column keep Qualys' own keys: they are the API's
documents, and renaming inside them would make every JSON query differ from Qualys' docs.

The schema files keep Qualys' keys too (they describe the API's answers); :class:`GatewaySchemas`
serves them with snake_case top-level names, which is what discovery, the catalog and the
targets see.
"""

from __future__ import annotations

import re
import typing as t

from singer_sdk import SchemaDirectory

from tap_qualys import schemas

if t.TYPE_CHECKING:
    from collections.abc import Mapping

# An acronym before a capitalised word ends where that word starts (``hwUUIDList`` ->
# ``hw_UUID_List``); then every lower-case letter or digit followed by a capital is a word end.
_ACRONYM_END = re.compile(r"([A-Z]+)([A-Z][a-z])")
_WORD_END = re.compile(r"([a-z0-9])([A-Z])")


def snake_case(name: str) -> str:
    """A field's column name: ``assetId`` -> ``asset_id``, ``assetUUID`` -> ``asset_uuid``.

    Acronyms are one word (``hwUUID`` -> ``hw_uuid``), digits stay with the word before them
    (``hostingCategory1`` -> ``hosting_category1``), and names already in snake_case are kept.
    """
    return _WORD_END.sub(r"\1_\2", _ACRONYM_END.sub(r"\1_\2", name)).lower()


def snake_case_schema(schema: Mapping[str, t.Any]) -> dict[str, t.Any]:
    """``schema`` with its top-level property names (and ``required``) in snake_case."""
    renamed = dict(schema)
    renamed["properties"] = {
        snake_case(key): value for key, value in schema.get("properties", {}).items()
    }
    if "required" in schema:
        renamed["required"] = [snake_case(key) for key in schema["required"]]
    return renamed


class GatewaySchemas(SchemaDirectory):
    """Schema files written with Qualys' keys, served with snake_case top-level names."""

    def api_schema(self, key: str) -> dict[str, t.Any]:
        """The file as written: Qualys' own keys."""
        return super().fetch_schema(key)

    def fetch_schema(self, key: str) -> dict[str, t.Any]:
        """The stream's schema: top-level names in snake_case (see :func:`snake_case`)."""
        return snake_case_schema(self.api_schema(key))


#: The schemas of the gateway (CSAM, PCRS) streams.
GATEWAY_SCHEMAS = GatewaySchemas(schemas)


class Columns:
    """Renames the top-level keys of a gateway record to their column names.

    Built once per stream from its API schema; a key the schema does not know (a field Qualys
    added) is converted by :func:`snake_case` and remembered.
    """

    def __init__(self, api_schema: Mapping[str, t.Any]) -> None:
        """Precompute the column of every top-level key of ``api_schema``."""
        names = list(api_schema.get("properties", {}))
        #: Qualys' name of each column, for what the tap sends (``csam_include_fields``).
        self.api_names: dict[str, str] = {snake_case(key): key for key in names}
        self.names: dict[str, str] = {snake_case(key): snake_case(key) for key in names}
        # The API's spelling as well as the column's: records the tap builds itself use columns.
        self.names.update({key: snake_case(key) for key in names})

    def __call__(self, record: Mapping[str, t.Any]) -> dict[str, t.Any]:
        """A new record with the same values under the column names."""
        names = self.names
        try:
            return {names[key]: value for key, value in record.items()}
        except KeyError:
            for key in record:
                if key not in names:
                    names[key] = snake_case(key)
            return {names[key]: value for key, value in record.items()}


#: Field names in states written before columns were snake_case (older versions kept the
#: API's keys): the replication keys and the CSAM resume point's cursor.
_OLD_STATE_NAMES = ("lastModifiedDate", "lastEvaluatedDate")
_OLD_RESUME_CURSOR = "lastSeenAssetId"
RESUME_CURSOR = "last_seen_asset_id"


def upgrade_state(state: dict[str, t.Any]) -> dict[str, t.Any]:
    """Rename, in place, the API names a state from an older tap-qualys holds.

    A bookmark written as ``{"replication_key": "lastModifiedDate", ...}`` or a resume point
    ``{"lastSeenAssetId": N}`` is read as ``last_modified_date`` / ``last_seen_asset_id``, so an
    upgrade keeps its bookmarks and resume points. Shapes it does not know are left to the
    state checks (``bookmarks``).
    """
    bookmarks = state.get("bookmarks") if isinstance(state, dict) else None
    if not isinstance(bookmarks, dict):
        return state
    for stream_state in bookmarks.values():
        if not isinstance(stream_state, dict):
            continue
        partitions = stream_state.get("partitions")
        for each in [stream_state, *(partitions if isinstance(partitions, list) else [])]:
            if not isinstance(each, dict):
                continue
            if each.get("replication_key") in _OLD_STATE_NAMES:
                each["replication_key"] = snake_case(each["replication_key"])
            resume = each.get("resume")
            if isinstance(resume, dict) and _OLD_RESUME_CURSOR in resume:
                resume.setdefault(RESUME_CURSOR, resume.pop(_OLD_RESUME_CURSOR))
    return state
