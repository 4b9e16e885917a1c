"""Profile validation: the county StructureDefinitions compiled into fast checkers."""

from fhir_server.validation.validator import LOCAL_CANONICAL_BASE, ProfileValidator, Terminology

__all__ = ["ProfileValidator", "Terminology", "LOCAL_CANONICAL_BASE"]
