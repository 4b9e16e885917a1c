"""Synthetic demo data: a county chronic-disease network as FHIR R4 resources."""

from fhir_server.demo.county import generate_county
from fhir_server.identifiers import (
    health_record_number,
    is_valid_resident_id,
    resident_id,
)
from fhir_server.demo.parameters import CountyParameters

__all__ = [
    "generate_county",
    "resident_id",
    "is_valid_resident_id",
    "health_record_number",
    "CountyParameters",
]
