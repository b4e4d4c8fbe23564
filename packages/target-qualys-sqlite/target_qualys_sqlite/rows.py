"""Typed decoding of a RECORD's payload straight into the row the sink inserts.

The generic path decodes a record into a dict, validates the dict (validation.py) and turns it
into a row at drain time (sink.py): three passes over every value, two of them in Python. For a
schema in the subset below, one msgspec decoder typed from the schema parses and type-checks the
record in C, and a function generated per schema adds what msgspec cannot check (date-times,
nested objects and arrays) and turns the result into the row.

A RowDecoder never judges a record invalid: whatever it does not accept (a type msgspec rejects, a
missing key, a bad date-time, a float like ``1.0`` that JSON Schema counts as an integer) takes the
generic path, which loads it or fails with its usual one-line error. So the accepted records, the
rows they become, and the errors are exactly the generic path's
(tests/target_sqlite/test_rows.py).
"""

from __future__ import annotations

import datetime
import typing as t

import msgspec

from target_qualys_sqlite.deletes import DELETED_AT
from target_qualys_sqlite.validation import ANNOTATIONS, compile_check

Row: t.TypeAlias = tuple[t.Any, ...]
"""A table row, or the fields of a decoded record (``msgspec.structs.astuple``)."""
Convert: t.TypeAlias = t.Callable[[Row], Row | None]

# Decimals (from BATCH files, parsed by the SDK) are written as JSON numbers, not strings.
_json_encoder = msgspec.json.Encoder(decimal_format="number")

_TYPES: dict[str, t.Any] = {
    "string": str,
    "integer": int,
    # int | float keeps a JSON integer an int, as the generic decoder does; plain float would not.
    "number": int | float,
    "boolean": bool,
    "object": dict,
    "array": list,
    "null": None,
}
_SCALAR_KEYWORDS = ANNOTATIONS | {"type", "format"}
_RECORD_KEYWORDS = ANNOTATIONS | {"type", "properties", "required", "additionalProperties"}


def json_text(value: t.Any) -> t.Any:
    """An object or array as the JSON text SQLite's JSON functions read; anything else as is."""
    if isinstance(value, (dict, list)):
        return _json_encoder.encode(value).decode()
    return value


def _type_names(schema: t.Any) -> list[str] | None:
    if not isinstance(schema, dict):
        return None
    names = schema.get("type")
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or any(n not in _TYPES for n in names):
        return None
    return names


def _in_subset(schema: dict[str, t.Any]) -> bool:
    """Whether the record schema's own keywords are ones the typed decoding handles."""
    properties = schema.get("properties")
    return (
        set(schema) <= _RECORD_KEYWORDS
        and "object" in (_type_names(schema) or ["object"])
        and schema.get("additionalProperties", True) in (True, False)
        and isinstance(properties, dict)
        and bool(properties)
        # The SDK strips these from records when it does not add them: the generic path's job.
        # Except _sdc_deleted_at, a column of its own here (see compile_row_decoder).
        and not any(name.startswith("_sdc_") and name != DELETED_AT for name in properties)
    )


class RowDecoder:
    """A stream's record type and the conversion of a decoded record into its table row."""

    def __init__(self, record_type: type[msgspec.Struct], convert: Convert) -> None:
        self.record_type = record_type
        """The msgspec Struct a record of the stream decodes into, typed from its schema."""
        self.convert = convert
        """Struct fields (``msgspec.structs.astuple``) -> row, or None for the generic path."""
        self._decode = msgspec.json.Decoder(record_type).decode

    def row(self, payload: bytes | str) -> Row | None:
        """The row of a record's JSON, or None if the generic path must handle the record."""
        try:
            record = self._decode(payload)
        except msgspec.MsgspecError:
            return None
        return self.convert(msgspec.structs.astuple(record))


def compile_row_decoder(
    schema: dict[str, t.Any], key_properties: t.Sequence[str], *, validate: bool
) -> RowDecoder | None:
    """A RowDecoder for the schema, or None if the schema is outside the subset handled here.

    ``validate`` adds the checks the schema validator would make beyond JSON types (date-times,
    the contents of objects and arrays); without it those records are loaded as they come, as the
    generic path does with ``validate_records`` off.
    """
    if not _in_subset(schema):
        return None
    additional = schema.get("additionalProperties", True)
    properties: dict[str, t.Any] = schema["properties"]
    present = set(schema.get("required", [])) | set(key_properties)
    fields: list[tuple[str, t.Any, t.Any]] = []
    rename: dict[str, str] = {}
    lines = ["def convert(t):"]
    namespace: dict[str, t.Any] = {
        "UNSET": msgspec.UNSET,
        "fromisoformat": datetime.datetime.fromisoformat,
        "encode": _json_encoder.encode,
        "json_text": json_text,
    }
    replaced: list[int] = []
    for index, (name, sub) in enumerate(properties.items()):
        names = _type_names(sub)
        if names is None:
            return None
        nested = {"object", "array"} & set(names)
        if not set(sub) <= _SCALAR_KEYWORDS and not nested:
            return None
        field_type: t.Any = t.Union[tuple(_TYPES[n] for n in names)]  # noqa: UP007
        var = f"x{index}"
        body: list[str] = []
        if name == DELETED_AT:
            # Null only: a tombstone (a date here) fails the decode, so it takes the generic
            # path, where the target applies it as a delete (deletes.py), never as an upsert.
            fields.append((var, None, None))
            rename[var] = name
            continue
        # Fields that must be present have no default: msgspec rejects the record without them.
        # An absent nullable field is a null column, as in the generic path; an absent
        # non-nullable one is UNSET here (msgspec would reject a null) and None in the row.
        if name in present:
            fields.append((var, field_type, msgspec.NODEFAULT))
        elif "null" in names:
            fields.append((var, field_type, None))
        else:
            fields.append((var, t.Union[field_type, msgspec.UnsetType], msgspec.UNSET))  # noqa: UP007
            body.append(f"    if {var} is UNSET: {var} = None")
            replaced.append(index)
        rename[var] = name
        names_other = set(names) - {"string", "null"}
        if validate and sub.get("format") == "date-time":
            body += [
                f"    if {var} is not None:",
                *([f"        if type({var}) is not str: return None"] if names_other else []),
                f"        try: fromisoformat({var})",
                "        except ValueError: return None",
            ]
        if nested:
            check = compile_check(sub) if validate else None
            if validate and check is None:
                return None
            namespace[f"check{index}"] = check
            body.append(f"    if {var} is not None:")
            if validate:
                body.append(f"        if not check{index}({var}): return None")
            if set(names) <= {"object", "array", "null"}:
                body.append(f"        {var} = encode({var}).decode()")
            else:  # e.g. a string or an object: only objects and arrays become JSON text
                body.append(f"        {var} = json_text({var})")
            replaced.append(index)
        if body:
            lines += [f"    {var} = t[{index}]", *body]
    parts = []
    start = 0
    for index in sorted(set(replaced)):
        parts += [f"t[{start}:{index}]", f"(x{index},)"]
        start = index + 1
    parts.append(f"t[{start}:]")
    lines.append(f"    return {' + '.join(parts)}")
    record_type = msgspec.defstruct(
        "Record",
        fields,
        kw_only=True,
        rename=rename,
        forbid_unknown_fields=additional is False,
        gc=False,
    )
    exec(compile("\n".join(lines), "<target_qualys_sqlite.rows>", "exec"), namespace)  # noqa: S102
    return RowDecoder(record_type, namespace["convert"])
