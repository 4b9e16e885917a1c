"""Fast structural check of FHIR JSON, compiled from the fhir.resources R4B model metadata.

Validating a dict with a fhir.resources model builds a tree of model objects through
Python validators at every level, which costs a large share of a write. This module walks
the plain dict instead, with checks compiled once per model class (at first use) from
the same models' field metadata: element names (JSON aliases, ``_name`` primitive
extension siblings, choice-type names), list or single cardinality, required elements and
required primitives (which an extension may stand in for), one-of-many choices, nested
element types, resources dispatched on ``resourceType``, and primitive formats.

The checker is never laxer than the models: whatever it accepts, the models accept. It is
stricter where the models are lax in ways no FHIR client relies on (JSON text in a string
for an object, a null for a required element, a contained resource without resourceType,
python field names for element names, a number for a date), so a refusal here is a reason
to ask the model, not yet a verdict (see ``models.check_resource``).
"""

from __future__ import annotations

import datetime
import decimal
import threading
import types
import typing
from dataclasses import dataclass
from functools import cache

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.fhirprimitiveextension import FHIRPrimitiveExtension
from fhir.resources.R4B.resource import Resource
from fhir_core import types as fhir_types
from fhir_core.constraints import FHIR_PRIMITIVES_MAPS
from pydantic import TypeAdapter


@cache
def model_class(resource_type: str):
    """The R4B model of a resource type, None for any other name (datatypes included)."""
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return None
    return model if issubclass(model, Resource) else None


@dataclass(frozen=True)
class Problem:
    """The first structural fault found: where (``Patient.name.0.given``) and what."""

    location: str
    message: str


def structure_problem(resource: dict) -> Problem | None:
    """None if ``resource`` (whose resourceType is a known resource) is well-formed."""
    rtype = resource["resourceType"]
    try:
        _check_object(_structure(model_class(rtype)), resource, 0)
    except _Invalid as exc:
        return Problem(".".join([rtype, *map(str, exc.loc)]), exc.message)
    return None


class _Invalid(Exception):
    """Raised at the fault; each enclosing object or list puts its key in front of ``loc``."""

    def __init__(self, message: str, loc: list | None = None):
        super().__init__(message)
        self.message = message
        self.loc = loc if loc is not None else []


@dataclass(frozen=True, eq=False)
class _Structure:
    """The compiled form of one model class."""

    name: str
    resource_type: str | None  # the "resourceType" a resource's JSON carries
    # JSON name -> (check of a non-null value, choice group the name belongs to or None)
    elements: dict[str, tuple[typing.Callable, str | None]]
    required: tuple[str, ...]  # complex elements with min cardinality 1
    required_primitives: tuple[tuple[str, str | None], ...]  # (name, "_name")
    required_choices: tuple[str, ...]
    # FHIRPrimitiveExtension: one of these must be non-null (its model validator says so)
    one_of: tuple[str, ...]


# The models' validation recurses through Python frames and fails with RecursionError past
# about a hundred nested objects; deeper content is left to them (see models.check_resource).
MAX_DEPTH = 64


def _check_object(structure: _Structure, data: dict, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _Invalid(f"more than {MAX_DEPTH} nested objects")
    depth += 1
    elements = structure.elements
    chosen = None
    try:
        for key, value in data.items():
            entry = elements.get(key)
            if entry is None:
                if key == "resourceType" and value == structure.resource_type:
                    continue
                raise _Invalid(f"unknown element of {structure.name}")
            if value is None:  # the models read a null as an absent element
                continue
            check, choice = entry
            if choice is not None:
                if chosen is None:
                    chosen = {choice}
                elif choice in chosen:
                    raise _Invalid(f"a second type for the choice element {choice}[x]")
                else:
                    chosen.add(choice)
            check(value, depth)
    except _Invalid as exc:
        exc.loc.insert(0, key)
        raise
    for name in structure.required:
        if data.get(name) is None:
            raise _Invalid(f"required element of {structure.name} missing", [name])
    for name, extension_name in structure.required_primitives:
        if data.get(name) is None and not _has_extensions(data.get(extension_name)):
            raise _Invalid(f"required element of {structure.name} missing", [name])
    for choice in structure.required_choices:
        if chosen is None or choice not in chosen:
            raise _Invalid(f"required choice element of {structure.name} missing", [choice + "[x]"])
    if structure.one_of and all(data.get(name) is None for name in structure.one_of):
        raise _Invalid(f"{structure.name} needs one of {', '.join(structure.one_of)}")


def _has_extensions(primitive_extension) -> bool:
    """Whether a required primitive's ``_name`` sibling carries the extensions standing in for it."""
    return type(primitive_extension) is dict and bool(primitive_extension.get("extension"))


# --- compiling ---------------------------------------------------------------------------

_STRUCTURES: dict[type, _Structure] = {}
_LOCK = threading.Lock()


def _structure(model: type) -> _Structure:
    """The compiled structure of a model class, compiled on first use.

    Nested element types are compiled when first met, not with their parent, so that a
    structure is complete when it is published and content that is never sent costs nothing.
    """
    structure = _STRUCTURES.get(model)
    if structure is None:
        with _LOCK:
            structure = _STRUCTURES.get(model)
            if structure is None:
                structure = _STRUCTURES[model] = _compile(model)
    return structure


def _compile(model: type) -> _Structure:
    fields = model.model_fields
    alias = {name: info.alias or name for name, info in fields.items()}
    by_element = model.get_alias_mapping()  # element name -> field name
    instance = model.model_construct()  # the rules below are instance methods
    choices = instance.get_one_of_many_fields()  # choice name -> its field names
    choice_of = {name: prefix for prefix, names in choices.items() for name in names}
    return _Structure(
        name=model.__name__,
        resource_type=model.get_resource_type() if issubclass(model, Resource) else None,
        elements={alias[name]: (_field_check(info), choice_of.get(name)) for name, info in fields.items()},
        required=tuple(alias[name] for name, info in fields.items() if info.is_required()),
        required_primitives=tuple(
            (alias[by_element[name]], alias[extension] if extension else None)
            for name, extension in instance.get_required_fields()
        ),
        required_choices=tuple(
            prefix
            for prefix, names in choices.items()
            if fields[names[0]].json_schema_extra.get("one_of_many_required") is True
        ),
        one_of=("id", "extension", "fhir_comments") if model is FHIRPrimitiveExtension else (),
    )


def _field_check(info) -> typing.Callable:
    """The check of one field's non-null JSON value, from its annotation.

    The generated models use few shapes: ``X | None``, ``List[X] | None`` and ``List[X | None]
    | None`` where X is a primitive type or a model (or any resource, dispatched on
    resourceType), and required ``X`` / ``List[X]``. Anything else is checked with a
    pydantic adapter of the whole annotation.
    """
    shape = _without_none(info.annotation)
    if typing.get_origin(shape) is list:
        (item,) = typing.get_args(shape)
        item_check = _value_check(_without_none(item))
        if item_check is not None:
            return _list_check(item_check, nullable_items=_without_none(item) is not item)
    return _value_check(shape) or _adapter_check(info.annotation)


def _without_none(annotation):
    """``X`` for ``X | None``, the annotation itself otherwise."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _value_check(annotation) -> typing.Callable | None:
    if isinstance(annotation, type) and issubclass(annotation, fhir_types.FhirElementOrResourceBase):
        return _check_resource_value  # R4B uses it for "any resource" only
    if isinstance(annotation, type) and issubclass(annotation, fhir_types.FhirBase):
        return _object_check(annotation)
    if annotation is bool or typing.get_origin(annotation) is typing.Annotated:
        return _primitive_check(annotation)
    return None


def _object_check(fhir_type: type[fhir_types.FhirBase]) -> typing.Callable:
    structure = None

    def check(value, depth):
        nonlocal structure
        if structure is None:  # the model module is imported here, when first needed
            structure = _structure(fhir_type.get_model_klass())
        if type(value) is not dict:
            raise _Invalid(f"{structure.name} must be a JSON object")
        _check_object(structure, value, depth)

    return check


def _check_resource_value(value, depth: int) -> None:
    if type(value) is not dict:
        raise _Invalid("a resource must be a JSON object")
    rtype = value.get("resourceType")
    model = model_class(rtype) if type(rtype) is str else None
    if model is None:
        raise _Invalid(f"unknown resourceType {rtype!r}", ["resourceType"])
    _check_object(_structure(model), value, depth)


def _list_check(item_check: typing.Callable, nullable_items: bool) -> typing.Callable:
    def check(value, depth):
        if type(value) is not list:
            raise _Invalid("must be a JSON array")
        for index, item in enumerate(value):
            if item is None:
                if nullable_items:  # primitive lists line values up with their "_name" list
                    continue
                raise _Invalid("null in an array", [index])
            try:
                item_check(item, depth)
            except _Invalid as exc:
                exc.loc.insert(0, index)
                raise

    return check


def _primitive_check(annotation) -> typing.Callable:
    valid, type_name = _primitive_validator(annotation)

    def check(value, _depth):
        if not valid(value):
            raise _Invalid(f"invalid {type_name} value")

    return check


@cache
def _adapter_check(annotation) -> typing.Callable:
    valid = TypeAdapter(annotation).validator.isinstance_python

    def check(value, _depth):
        if not valid(value):
            raise _Invalid("invalid value")

    return check


# --- primitive formats -------------------------------------------------------------------
#
# Most primitive types are plain pydantic-core schemas (strings with fhir_core's regex
# patterns and length limits, integers with bounds, booleans): their adapter is exact and
# fast. Dates, times and decimals are checked by fhir_core in Python; they are redone here
# with fhir_core's own regexes, plus the calendar check the date parser makes.


def _is_real_day(text: str) -> bool:
    """``YYYY-MM-DD...`` names a day of the calendar (the regexes only bound month and day)."""
    try:
        datetime.date(int(text[0:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        return False
    return True


def _date_format(pattern):
    def valid(value) -> bool:
        return (
            type(value) is str
            and pattern.fullmatch(value) is not None
            and (len(value) < 10 or _is_real_day(value))
        )

    return valid


def _time_format(value) -> bool:
    return type(value) is str and fhir_types.Time.pattern.fullmatch(value) is not None


def _decimal_format(value) -> bool:
    if type(value) not in (int, float, str):
        return False
    try:
        text = str(value)
        if fhir_types.Decimal.pattern.fullmatch(text) is None:
            return False
        decimal.Decimal(text)  # as fhir_core does, which fails on an exponent too large
    except (ValueError, ArithmeticError):  # an int too long to print, an exponent too large
        return False
    return True


_PYTHON_CHECKED = {
    fhir_types.Date: _date_format(fhir_types.Date.pattern),
    fhir_types.DateTime: _date_format(fhir_types.DateTime.pattern),
    fhir_types.Instant: _date_format(fhir_types.Instant.pattern),
    fhir_types.Time: _time_format,
    fhir_types.Decimal: _decimal_format,
}


@cache
def _primitive_validator(annotation) -> tuple[typing.Callable, str]:
    """(value -> bool, FHIR type name) for a primitive type annotation, shared by all fields."""
    markers = [type(marker) for marker in typing.get_args(annotation)[1:]]
    for marker in markers:
        if marker in _PYTHON_CHECKED:
            return _PYTHON_CHECKED[marker], marker.__visit_name__
    valid = TypeAdapter(annotation).validator.isinstance_python
    if fhir_types.Url in markers:  # fhir_core's url validator fails with AttributeError on a non-string
        return (lambda value: type(value) is str and valid(value)), "url"
    return valid, FHIR_PRIMITIVES_MAPS[annotation]
