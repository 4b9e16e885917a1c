"""Parse a FHIR search query into plain, frozen data that any store can compile.

``parse_search(registry, "Observation", [("code", "8480-6"), ("_count", "10")])`` returns a
``SearchRequest``. Values are kept as strings here, each split into its OR-list and prefix;
the index kind of the parameter parses the value itself when the query is compiled, so that a
malformed value is reported as a 400 naming the parameter.

Unknown or unsupported parameters are collected in ``SearchRequest.ignored`` (strict handling
turns them into an error), never silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fhir_server.errors import InvalidRequest, UnknownParameter
from fhir_server.search.registry import CONTROL_PARAMETERS, SearchParam, SearchParamRegistry

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
PREFIXED_TYPES = {"number", "date", "quantity"}
MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"text", "not", "missing", "of-type", "above", "below"},
    "reference": {"missing", "identifier"},  # plus a resource type, e.g. subject:Patient
    "uri": {"above", "below", "missing"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "composite": {"missing"},
}
SUMMARY_MODES = {"true", "false", "count", "text", "data"}
TOTAL_MODES = {"none", "estimate", "accurate"}
# Chain links (subject:Patient.organization.name has 2) plus nested _has levels in one parameter,
# and values in one OR list. Each link nests a subquery; SQLite refuses SQL nested too deeply
# (parser stack, expression depth 1000): these limits keep every such query valid there.
MAX_CHAIN_DEPTH = 5
MAX_VALUES = 100
_NUMBER_PREFIX = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)(?=[-+0-9.])")
_DATE_PREFIX = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)(?=\d)")


@dataclass(frozen=True)
class Value:
    raw: str
    prefix: str = "eq"


@dataclass(frozen=True)
class Link:
    """One step of a chain: follow ``param`` (a reference) to resources of ``target``."""

    param: SearchParam
    target: str


@dataclass(frozen=True)
class Filter:
    """One query parameter: its values are ORed; separate filters are ANDed."""

    param: SearchParam
    modifier: str | None
    values: tuple[Value, ...]
    chain: tuple[Link, ...] = ()


@dataclass(frozen=True)
class ReverseChain:
    """``_has:<source>:<reference param>:<inner>``: resources referred to by matching sources."""

    source_type: str
    reference: SearchParam
    inner: Filter | ReverseChain


@dataclass(frozen=True)
class SortKey:
    param: SearchParam
    descending: bool


@dataclass(frozen=True)
class Include:
    source_type: str
    param: SearchParam | None  # None means every reference parameter ("*")
    target_type: str | None
    iterate: bool
    reverse: bool


@dataclass(frozen=True)
class SearchRequest:
    resource_type: str
    filters: tuple[Filter | ReverseChain, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 20
    offset: int = 0
    includes: tuple[Include, ...] = ()
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: str | None = None
    ignored: tuple[str, ...] = field(default=())


def parse_search(
    registry: SearchParamRegistry, resource_type: str, pairs: list[tuple[str, str]], *,
    default_count: int = 20, max_count: int = 1000, strict: bool = False,
) -> SearchRequest:
    filters: list[Filter | ReverseChain] = []
    sort: list[SortKey] = []
    includes: list[Include] = []
    ignored: list[str] = []
    options: dict = {"count": default_count, "offset": 0, "summary": None, "elements": (), "total": None}

    for name, value in pairs:
        if "\x00" in name or "\x00" in value:  # no stored value has one; PostgreSQL rejects it
            raise InvalidRequest(f"Search parameter {name!r} contains a NUL character")
        base = name.split(":", 1)[0]
        try:
            if base in CONTROL_PARAMETERS:
                _control(registry, resource_type, name, value, options, sort, includes, max_count)
            elif name.count("_has:") + name.count(".") > MAX_CHAIN_DEPTH:
                raise InvalidRequest(f"{name!r} chains more than {MAX_CHAIN_DEPTH} references (links and _has)")
            elif base == "_has":
                filters.append(_reverse_chain(registry, resource_type, name, value))
            else:
                filters.append(_filter(registry, resource_type, name, value))
        except UnknownParameter as exc:
            if strict:
                raise
            ignored.append(exc.message)
    return SearchRequest(
        resource_type=resource_type, filters=tuple(filters), sort=tuple(sort),
        includes=tuple(includes), ignored=tuple(ignored), **options,
    )


def _filter(registry: SearchParamRegistry, rtype: str, name: str, value: str) -> Filter:
    """``code:text=x``, ``subject:Patient.name=x``, ``subject.identifier=x`` and deeper chains."""
    head, _, rest = name.partition(".")
    code, _, modifier = head.partition(":")
    param = _param(registry, rtype, code)
    if rest:  # a chain: the head must be a reference, the modifier (if any) its target type
        if param.type != "reference":
            raise InvalidRequest(f"Chained parameter {name!r}: {code} is not a reference parameter")
        target = modifier or _single_target(param, name)
        if target not in registry.supported_types:
            raise InvalidRequest(f"Chained parameter {name!r}: {target} is not a supported type")
        inner = _filter(registry, target, rest, value)
        return Filter(inner.param, inner.modifier, inner.values, (Link(param, target), *inner.chain))
    modifier = modifier or None
    if modifier is not None:
        allowed = MODIFIERS.get(param.type, set())
        is_type_modifier = param.type == "reference" and modifier in registry.supported_types
        if modifier not in allowed and not is_type_modifier:
            raise InvalidRequest(f"Modifier :{modifier} is not supported for {param.type} parameter {code!r}")
    if modifier == "missing":
        if value not in ("true", "false"):
            raise InvalidRequest(f"{name} must be true or false, not {value!r}")
        return Filter(param, modifier, (Value(value),))
    return Filter(param, modifier, tuple(_values(param, value, name)))


def _values(param: SearchParam, value: str, name: str) -> list[Value]:
    parts = split_escaped(value, ",")
    if not parts or all(p == "" for p in parts):
        raise InvalidRequest(f"Search parameter {name!r} has an empty value")
    if len(parts) > MAX_VALUES:
        raise InvalidRequest(f"Search parameter {name!r} has more than {MAX_VALUES} values")
    return [Value(raw, prefix) for prefix, raw in (split_prefix(param.type, part) for part in parts)]


def split_prefix(param_type: str, part: str) -> tuple[str, str]:
    """``ge2024`` → (``ge``, ``2024``) for prefixed types; otherwise (``eq``, part)."""
    if param_type in PREFIXED_TYPES:
        pattern = _DATE_PREFIX if param_type == "date" else _NUMBER_PREFIX
        match = pattern.match(part)
        if match:
            return match.group(1), part[2:]
    return "eq", part


def _reverse_chain(registry: SearchParamRegistry, rtype: str, name: str, value: str) -> ReverseChain:
    # _has:Observation:patient:code=x  or nested: _has:Observation:patient:_has:AuditEvent:entity:agent=y
    parts = name.split(":", 3)
    if len(parts) < 4:
        raise InvalidRequest(f"{name!r} must have the form _has:Type:reference:parameter")
    _, source, ref_code, inner_name = parts
    if source not in registry.supported_types:
        raise InvalidRequest(f"{name!r}: {source} is not a supported type")
    reference = _param(registry, source, ref_code)
    if reference.type != "reference":
        raise InvalidRequest(f"{name!r}: {ref_code} is not a reference parameter of {source}")
    if inner_name.startswith("_has:"):
        inner: Filter | ReverseChain = _reverse_chain(registry, source, inner_name, value)
    else:
        inner = _filter(registry, source, inner_name, value)
    return ReverseChain(source, reference, inner)


def _control(registry, rtype, name, value, options, sort, includes, max_count) -> None:
    base, _, modifier = name.partition(":")
    if base == "_count":
        options["count"] = min(_non_negative(name, value), max_count)
    elif base == "_offset":
        options["offset"] = _non_negative(name, value)
    elif base == "_sort":
        unknown = None
        for key in filter(None, value.split(",")):
            descending = key.startswith("-")
            code = key.lstrip("-")
            try:
                sort.append(SortKey(_param(registry, rtype, code, for_sort=True), descending))
            except UnknownParameter as exc:  # the other keys still apply
                unknown = unknown or exc
        if unknown:
            raise unknown
    elif base in ("_include", "_revinclude"):
        if modifier not in ("", "iterate", "recurse"):
            raise InvalidRequest(f"{name}: unknown modifier :{modifier}")
        includes.append(_include(registry, value, base == "_revinclude", modifier != ""))
    elif base == "_summary":
        if value not in SUMMARY_MODES:
            raise InvalidRequest(f"_summary must be one of {', '.join(sorted(SUMMARY_MODES))}")
        options["summary"] = None if value == "false" else value
    elif base == "_elements":
        options["elements"] = tuple(e.strip() for e in value.split(",") if e.strip())
    elif base == "_total":
        if value not in TOTAL_MODES:
            raise InvalidRequest(f"_total must be one of {', '.join(sorted(TOTAL_MODES))}")
        options["total"] = value
    # _format, _pretty, _contained, _containedType, _page are handled elsewhere or ignored


def _include(registry: SearchParamRegistry, value: str, reverse: bool, iterate: bool) -> Include:
    parts = value.split(":")
    if value == "*" and not reverse:
        return Include("*", None, None, iterate, reverse)
    if len(parts) not in (2, 3):
        raise InvalidRequest(f"_include value {value!r} must be Type:parameter[:targetType]")
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if source not in registry.supported_types:
        raise InvalidRequest(f"_include value {value!r}: {source} is not a supported type")
    param = None
    if code != "*":
        param = registry.get(source, code)
        if param is None or param.type != "reference":
            raise InvalidRequest(f"_include value {value!r}: {code} is not a reference parameter of {source}")
    return Include(source, param, target, iterate, reverse)


def _param(registry: SearchParamRegistry, rtype: str, code: str, for_sort: bool = False) -> SearchParam:
    param = registry.get(rtype, code)
    if param is None:
        raise UnknownParameter(f"Unknown search parameter {code!r} for {rtype}; it was ignored")
    if for_sort and param.type == "composite":
        raise InvalidRequest(f"_sort: cannot sort by composite parameter {code!r}")
    return param


def _single_target(param: SearchParam, name: str) -> str:
    if len(param.targets) == 1:
        return param.targets[0]
    raise InvalidRequest(
        f"Chained parameter {name!r}: {param.code} may refer to several types; "
        f"name one, e.g. {param.code}:{param.targets[0] if param.targets else 'Patient'}.…"
    )


def _non_negative(name: str, value: str) -> int:
    if not value.isdigit():
        raise InvalidRequest(f"{name} must be a non-negative integer, not {value!r}")
    return int(value)


def split_escaped(value: str, sep: str) -> list[str]:
    """Split on ``sep`` not preceded by a backslash; other escapes are kept for the next split."""
    parts, current, escaped = [], [], False
    for ch in value:
        if escaped:
            current.append(ch if ch == sep else "\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def unescape(raw: str) -> str:
    return re.sub(r"\\([,$|\\])", r"\1", raw)
