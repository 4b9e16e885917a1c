"""Operation input parameters, from the query string (GET) or a ``Parameters`` body (POST).

``operation_parameters(request)`` gives one ``OperationParameters``: the query-string pairs
first, then each ``Parameters.parameter`` of a POST body as (name, value), where the value is
the ``value[x]`` (a str, bool, number or a dict for complex types such as ``valueMeta``) or the
``resource``. ``query_pairs()`` renders the simple values as strings, for operations that take
search parameters ($lastn) or build paging links.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_server.api.http import FhirRequest
from fhir_server.errors import InvalidRequest


@dataclass
class OperationParameters:
    pairs: list[tuple[str, object]] = field(default_factory=list)

    def all(self, name: str) -> list[object]:
        return [value for key, value in self.pairs if key == name]

    def get(self, name: str, default: object = None) -> object:
        values = self.all(name)
        return values[0] if values else default

    def text(self, name: str) -> str | None:
        """The first value of ``name`` as a string (None when absent or empty)."""
        value = self.get(name)
        if value is None:
            return None
        text = _as_text(value, name)
        return text if text != "" else None

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        value = self.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool) or not (isinstance(value, int) or str(value).strip().isdigit()):
            raise InvalidRequest(f"Parameter {name!r} must be a non-negative integer, not {value!r}")
        number = int(value)
        if number < minimum:
            raise InvalidRequest(f"Parameter {name!r} must be at least {minimum}")
        return number

    def csv(self, *names: str) -> list[str] | None:
        """Comma-separated lists of every value of each name, joined (None when none given)."""
        found: list[str] = []
        given = False
        for name in names:
            for value in self.all(name):
                given = True
                found += [part.strip() for part in _as_text(value, name).split(",") if part.strip()]
        return found if given else None

    def query_pairs(self, exclude: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        """The parameters with simple values as query-string pairs (complex values are skipped)."""
        return [
            (key, _as_text(value, key)) for key, value in self.pairs
            if key not in exclude and not isinstance(value, (dict, list))
        ]


def operation_parameters(request: FhirRequest) -> OperationParameters:
    pairs: list[tuple[str, object]] = list(request.query)
    if request.method == "POST" and request.raw_body.strip():
        body = request.body
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise InvalidRequest("The body of an operation must be a Parameters resource")
        for index, parameter in enumerate(body.get("parameter") or []):
            if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
                raise InvalidRequest(f"Parameters.parameter[{index}] has no name")
            pairs.append((parameter["name"], parameter_value(parameter)))
    return OperationParameters(pairs)


def parameter_value(parameter: dict) -> object:
    """The ``value[x]`` of one Parameters.parameter, else its ``resource``, else its ``part``."""
    for key, value in parameter.items():
        if key.startswith("value") and len(key) > 5 and key[5].isupper():
            return value
    if "resource" in parameter:
        return parameter["resource"]
    return parameter.get("part")


def parameters_resource(*parameters: dict) -> dict:
    """A Parameters resource from ready-made ``{"name": ..., "value[x]": ...}`` entries."""
    return {"resourceType": "Parameters", "parameter": list(parameters)}


def _as_text(value: object, name: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise InvalidRequest(f"Parameter {name!r} must have a simple value")


__all__ = ["OperationParameters", "operation_parameters", "parameter_value", "parameters_resource"]
