"""A record validator compiled from the stream schema, for the SDK's ``Sink.get_validator`` hook.

The SDK's default validator runs the full ``jsonschema`` machinery on every record, which costs
tens of microseconds for a 30-field Qualys record and dominated the target's profile. Tap schemas
mostly use a small subset of JSON Schema (``type``, ``properties``, ``items``, ``required``,
``format``), so this validator compiles that subset into plain ``isinstance`` checks. It never
decides *invalid* on its own: when the fast check fails (or a subschema uses anything outside the
subset) the full ``jsonschema`` validator decides and words the error, so the accepted set is
exactly the SDK's.
"""

from __future__ import annotations

import datetime
import sys
import typing as t

import jsonschema.exceptions
from singer_sdk.exceptions import InvalidRecord
from singer_sdk.sinks.core import BaseJSONSchemaValidator, JSONSchemaValidator

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

Check = t.Callable[[t.Any], bool]

# Keywords that do not restrict values (annotations) or that the compiler handles itself.
ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "description",
        "title",
        "default",
        "examples",
        "readOnly",
        "writeOnly",
    }
)
_HANDLED = frozenset({"type", "properties", "items", "required", "format", "additionalProperties"})

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


class _Missing:
    """Marks an absent property, which only ``required`` forbids."""


_MISSING = _Missing()


class _Compiler:
    """Generates one Python function per (sub)schema, so a record costs one dict lookup and one
    exact-class test per property instead of a walk through jsonschema's keyword machinery.

    Exact classes (``type(v) in {...}``) are right for parsed JSON, which only yields builtins, and
    make ``True`` fail an ``integer`` check as JSON Schema requires (bool is an int subclass).
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, t.Any] = {"_MISSING": _MISSING}
        self.count = 0

    def _const(self, value: object) -> str:
        self.count += 1
        name = f"_k{self.count}"
        self.namespace[name] = value
        return name

    @staticmethod
    def _classes(schema: dict[str, t.Any]) -> frozenset[type] | None:
        if not isinstance(schema, dict) or not set(schema) <= ANNOTATIONS | _HANDLED:
            return None
        types = schema.get("type")
        names = [types] if isinstance(types, str) else list(types or [])
        if not names or any(n not in _PY_TYPES for n in names):
            return None
        return frozenset(tp for n in names for tp in _PY_TYPES[n])

    def function(self, schema: dict[str, t.Any]) -> str | None:
        """Name of a generated ``(value) -> bool``, or None if the schema is outside the subset."""
        classes = self._classes(schema)
        if classes is None:
            return None
        body = [f"    if type(v) not in {self._const(classes)}: return False"]
        if dict in classes:
            checks = self._object_checks(schema, "v")
            if checks is None:
                return None
            body += ["    if type(v) is dict:", *("    " + c for c in checks or ["    pass"])]
        if list in classes:
            items = schema.get("items", {})
            if items not in ({}, True):
                item_check = self.function(items)
                if item_check is None:
                    return None
                body += [
                    "    if type(v) is list:",
                    "        for x in v:",
                    f"            if not {item_check}(x): return False",
                ]
        self.count += 1
        name = f"_f{self.count}"
        self.lines += [f"def {name}(v):", *body, "    return True", ""]
        return name

    def _object_checks(self, schema: dict[str, t.Any], var: str) -> list[str] | None:
        additional = schema.get("additionalProperties", True)
        if additional not in (True, False):
            return None
        checks: list[str] = []
        for name, sub in schema.get("properties", {}).items():
            if sub in ({}, True):
                continue
            classes = self._classes(sub)
            if classes is None:
                return None
            key = repr(name)
            if classes & {dict, list}:
                nested = self.function(sub)
                if nested is None:
                    return None
                checks += [
                    f"    x = {var}.get({key}, _MISSING)",
                    f"    if x is not _MISSING and not {nested}(x): return False",
                ]
            else:
                allowed = self._const(classes | {_Missing})
                checks += [
                    f"    if type({var}.get({key}, _MISSING)) not in {allowed}: return False"
                ]
        for name in schema.get("required", []):
            checks.append(f"    if {name!r} not in {var}: return False")
        if additional is False:
            known = self._const(frozenset(schema.get("properties", {})))
            checks.append(f"    if not {known}.issuperset({var}): return False")
        return checks


def compile_check(schema: dict[str, t.Any]) -> Check | None:
    """A check that is True only for values the schema accepts, or None if unsupported."""
    compiler = _Compiler()
    name = compiler.function(schema)
    if name is None:
        return None
    source = "\n".join(compiler.lines)
    exec(compile(source, "<target_qualys_sqlite.validation>", "exec"), compiler.namespace)  # noqa: S102
    return t.cast("Check", compiler.namespace[name])


def _datetime_fields(schema: dict[str, t.Any]) -> tuple[str, ...]:
    """Top-level properties that are ``string``/``date-time``, checked for parseability."""
    return tuple(
        name
        for name, sub in schema.get("properties", {}).items()
        if isinstance(sub, dict) and sub.get("format") == "date-time"
    )


class CompiledSchemaValidator(BaseJSONSchemaValidator):
    """Fast type checks for the common subset of JSON Schema, ``jsonschema`` for the rest.

    Date-time fields must parse with ``datetime.fromisoformat`` (as the SDK's own timestamp
    parsing would demand); their text is stored unchanged.
    """

    def __init__(self, schema: dict[str, t.Any]) -> None:
        super().__init__(schema)
        # Also checks the schema itself (InvalidJSONSchema on a broken schema).
        self._full = JSONSchemaValidator(schema)
        self._fast = compile_check(schema) if "$ref" not in str(schema) else None
        self._datetime_fields = _datetime_fields(schema)

    @override
    def validate(self, record: dict[str, t.Any]) -> None:
        if self._fast is None or not self._fast(record):
            error = jsonschema.exceptions.best_match(self._full.validator.iter_errors(record))
            if error is not None:
                where = ".".join(str(part) for part in error.absolute_path) or "<record>"
                raise InvalidRecord(f"field '{where}': {error.message}", record)
        for name in self._datetime_fields:
            value = record.get(name)
            if value is not None:
                try:
                    datetime.datetime.fromisoformat(value)
                except (TypeError, ValueError) as exc:
                    msg = f"{value!r} in field '{name}' is not an ISO 8601 date-time"
                    raise InvalidRecord(msg, record) from exc
