"""Authentication (SMART on FHIR tokens), scopes, organisation-scoped access and audit."""
