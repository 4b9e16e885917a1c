"""Apply one segment map (``mappings/hl7v2/segments/SEG.Resource.csv``) to a segment.

Columns, as in the v2-to-FHIR IG's segment sheets:

``v2_field``        ``PID-5`` (the field the row reads)
``v2_name``         its name in the standard (for the reader)
``v2_type``         its v2 datatype (for the reader)
``condition``       empty, or ``PV1-2 IN I,O,E`` / ``OBX-2 NOT IN TX,FT`` / ``PID-7 VALUED``
``fhir_element``    where the value goes: ``gender``, ``name`` (a list replaces), ``identifier[]``
                    (a list or value is appended), ``value[x]`` (the map returns ``{valueX: ...}``),
                    ``a.b`` for a nested element
``datatype_map``    the map's name in ``datatypes.DATATYPE_MAPS`` (or a domain map registered there)
``vocabulary``      ``table.column`` of ``vocabulary/*.csv`` for coded fields
``comment``
"""

from __future__ import annotations

import re

from adapters.hl7v2.context import MappingContext
from adapters.hl7v2.datatypes import DATATYPE_MAPS
from adapters.hl7v2.parsing import Segment

__all__ = ["apply_segment_map", "check_segment_maps"]

_FIELD = re.compile(r"^([A-Z][A-Z0-9]{2})-(\d+)$")
_CONDITION = re.compile(r"^([A-Z][A-Z0-9]{2})-(\d+)\s+(NOT IN|IN|VALUED|NOT VALUED)\s*(.*)$")


def apply_segment_map(name: str, segment: Segment, context: MappingContext, resource: dict) -> dict:
    """Fill ``resource`` from ``segment`` by the rows of segment map ``name``; returns it."""
    for field, condition, convert, element, vocabulary in _compiled(context.tables, name):
        if condition is not None and not _holds(condition, segment):
            continue
        value = convert(segment, field, context, vocabulary)
        if value is None or value == [] or value == {}:
            continue
        _put(resource, element, value)
    return resource


_COMPILED: dict[tuple[int, str], list[tuple]] = {}


def _compiled(tables, name: str) -> list[tuple]:
    """The rows of one map as (field, condition, datatype map, element, vocabulary), built once."""
    key = (id(tables), name)
    if key not in _COMPILED:
        _COMPILED[key] = [
            (int(_FIELD.match(row["v2_field"]).group(2)), row["condition"] or None,
             DATATYPE_MAPS[row["datatype_map"]], row["fhir_element"], row["vocabulary"])
            for row in tables.segment_maps[name]
        ]
    return _COMPILED[key]


def _holds(condition: str, segment: Segment) -> bool:
    m = _CONDITION.match(condition)
    if not m:
        raise ValueError(f"Condition {condition!r} is not 'SEG-n IN a,b', 'SEG-n NOT IN a,b' or 'SEG-n VALUED'")
    value = segment.get(int(m.group(2))).strip()
    operator, operands = m.group(3), [v.strip() for v in m.group(4).split(",")]
    if operator == "VALUED":
        return bool(value)
    if operator == "NOT VALUED":
        return not value
    return (value in operands) == (operator == "IN")


def _put(resource: dict, path: str, value: object) -> None:
    *parents, last = path.split(".")
    node = resource
    for part in parents:
        node = node.setdefault(part, {})
    if last == "value[x]" or last.endswith("[x]"):
        node.update(value)  # type: ignore[arg-type]
    elif last.endswith("[]"):
        items = node.setdefault(last[:-2], [])
        items.extend(value if isinstance(value, list) else [value])
    else:
        node[last] = value


def check_segment_maps(context_tables) -> list[str]:
    """Problems in the tables themselves: unknown datatype maps, fields or conditions."""
    errors = []
    for name, rows in context_tables.segment_maps.items():
        segment_id = name.split(".")[0]
        for number, row in enumerate(rows, start=2):
            where = f"segments/{name}.csv line {number}"
            m = _FIELD.match(row["v2_field"])
            if not m or m.group(1) != segment_id:
                errors.append(f"{where}: v2_field {row['v2_field']!r} is not a field of {segment_id}")
            if row["datatype_map"] not in DATATYPE_MAPS:
                errors.append(f"{where}: no datatype map named {row['datatype_map']!r}")
            if row["condition"] and not _CONDITION.match(row["condition"]):
                errors.append(f"{where}: condition {row['condition']!r} cannot be read")
            if row["vocabulary"]:
                table = row["vocabulary"].split(".")[0]
                if table not in context_tables.vocabulary_names():
                    errors.append(f"{where}: no vocabulary table {table!r}")
            if not row["fhir_element"]:
                errors.append(f"{where}: no fhir_element")
    return errors
