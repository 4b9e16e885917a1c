"""Property-based run over the API's own OpenAPI description (schemathesis), with auth on.

Every operation the document describes is called with generated path parameters, query
parameters and bodies, with a full-scope token and without one; no answer may be a 5xx, every
error must be an OperationOutcome, and a call without a token must be refused with 401 (except
the public paths). Data-changing calls land in the per-test emptied database.
"""

from __future__ import annotations

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from fhir_server.api.app import FHIR_PREFIX
from fhir_server.api.routes import ROUTES
from fhir_server.auth.permissions import PUBLIC_INTERACTIONS


OPERATIONS = [(FHIR_PREFIX + route.path, route.method) for route in ROUTES]
_FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                 suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _fuzz(api_schema, path: str, method: str, check) -> None:
    """Call ``path``/``method`` with generated requests, checking every response with ``check``."""

    @given(case=api_schema[path][method].as_strategy())
    @_FUZZ
    def run(case):
        check(case)

    run()


def _assert_fhir_error_or_success(response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
        assert orjson.loads(response.content)["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_no_operation_answers_5xx_with_a_token(api_schema, access_token, path, method):
    def check(case):
        _assert_fhir_error_or_success(case.call(headers={"Authorization": f"Bearer {access_token}"}))

    _fuzz(api_schema, path, method, check)


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_no_operation_answers_without_a_token(api_schema, path, method):
    public = path.endswith("/metadata")

    def check(case):
        response = case.call()
        _assert_fhir_error_or_success(response)
        if not public:
            assert response.status_code == 401, (method, case.formatted_path, response.status_code)

    _fuzz(api_schema, path, method, check)


def test_the_document_declares_the_token_schemes(fhir):
    document = fhir.http.get("/openapi.json").json()
    assert set(document["components"]["securitySchemes"]) == {"smart", "bearer"}
    assert document["components"]["securitySchemes"]["smart"]["flows"]["clientCredentials"]["tokenUrl"] == "/auth/token"
    metadata = document["paths"]["/fhir/metadata"]["get"]
    assert metadata["security"] == [] and "capabilities" in PUBLIC_INTERACTIONS
