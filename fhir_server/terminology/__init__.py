"""Terminology: code systems, value sets and concept maps shipped under ``terminology/``."""

from fhir_server.terminology.service import CodeValidation, Lookup, TerminologyService, Translation

__all__ = ["CodeValidation", "Lookup", "TerminologyService", "Translation"]
