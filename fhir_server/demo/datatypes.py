"""Small builders for the FHIR datatypes the generator writes as plain dicts."""

from __future__ import annotations

from datetime import datetime

from fhir_server.demo.codes import UCUM, UNITS

__all__ = ["reference", "concept", "quantity", "local_datetime", "CHINA_OFFSET"]

CHINA_OFFSET = "+08:00"


def reference(resource_type: str, resource_id: str, display: str | None = None) -> dict:
    ref = {"reference": f"{resource_type}/{resource_id}"}
    if display is not None:
        ref["display"] = display
    return ref


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict:
    coding = {"system": system, "code": code}
    if display is not None:
        coding["display"] = display
    result: dict = {"coding": [coding]}
    if text is not None:
        result["text"] = text
    return result


def quantity(value: float | int, ucum_code: str) -> dict:
    return {"value": value, "unit": UNITS[ucum_code], "system": UCUM, "code": ucum_code}


def local_datetime(moment: datetime) -> str:
    """A naive China-local datetime as FHIR dateTime with the +08:00 offset, to the second."""
    return moment.replace(microsecond=0).isoformat() + CHINA_OFFSET
