"""County chronic-disease FHIR server: a FHIR R4 REST API over SQLite or PostgreSQL."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
