"""The FastAPI application: the route table mounted under ``/fhir`` and one error boundary.

Every error leaves as an OperationOutcome with the status of its ``FhirError`` class; anything
unexpected is logged with a request id and answered 500 with a generic message, never a trace.
"""

from __future__ import annotations

import logging
import uuid

import anyio
from fastapi import FastAPI, Request
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from fhir_server.api.http import FhirRequest, FhirResponse, render_response
from fhir_server.api.openapi import openapi_document
from fhir_server.api.routes import ROUTES, Route
from fhir_server.errors import (
    Conflict,
    FhirError,
    Issue,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    operation_outcome,
)
from fhir_server.fhir.formats import JSON, response_format
from fhir_server.server import Server

log = logging.getLogger(__name__)
FHIR_PREFIX = "/fhir"


def create_app(server: Server) -> FastAPI:
    app = FastAPI(
        title="County chronic-disease FHIR server",
        description="FHIR R4 REST API (JSON and XML) for county hospital, township and village systems.",
        docs_url="/docs", openapi_url="/openapi.json", redoc_url=None,
    )
    app.state.server = server
    document = openapi_document(ROUTES, server.registry.supported_types, FHIR_PREFIX)
    app.openapi = lambda: document
    for route in ROUTES:
        app.router.routes.append(StarletteRoute(
            FHIR_PREFIX + route.path, _endpoint(server, route), methods=[route.method],
            name=f"{route.method} {route.path}",
        ))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        error: FhirError
        if exc.status_code == 405:
            error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        elif exc.status_code == 404:
            error = NotFound(f"No FHIR endpoint at {request.url.path}")
        else:
            error = FhirError(str(exc.detail))
            error.status = exc.status_code
        return _error_response(error, request.query_params.get("_format"), request.headers.get("accept"))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return _unexpected(exc, request.query_params.get("_format"), request.headers.get("accept"))

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return Response(status_code=307, headers={"Location": f"{FHIR_PREFIX}/metadata"})

    return app


def _endpoint(server: Server, route: Route):
    async def endpoint(request: Request) -> Response:
        format_param = request.query_params.get("_format")
        accept = request.headers.get("accept")
        try:
            body = await _read_body(request, server.settings.max_body_bytes)
            fhir_request = FhirRequest(
                method=request.method,
                path_params=dict(request.path_params),
                query=list(request.query_params.multi_items()),
                headers={k.lower(): v for k, v in request.headers.items()},
                raw_body=body,
                base_url=_base_url(server, request),
            )
            media_type = response_format(format_param, accept)
            response: FhirResponse = await anyio.to_thread.run_sync(route.handler, server, fhir_request)
            pretty = request.query_params.get("_pretty") == "true"
            return render_response(response, media_type, pretty)
        except FhirError as exc:
            return _error_response(exc, format_param, accept)
        except IntegrityError:
            # another request created or changed the same resource at the same moment
            conflict = Conflict("The resource was changed by another request at the same time; retry")
            return _error_response(conflict, format_param, accept)
        except Exception as exc:  # noqa: BLE001 - the one boundary for unexpected faults
            return _unexpected(exc, format_param, accept)

    endpoint.__name__ = f"{route.method.lower()}_{route.path}"
    return endpoint


async def _read_body(request: Request, limit: int) -> bytes:
    if request.method in ("GET", "HEAD", "DELETE"):
        return b""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is larger than the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _base_url(server: Server, request: Request) -> str:
    """The FHIR base as the client reached it (host header), else the configured one."""
    host = request.headers.get("host")
    if host:
        return f"{request.url.scheme}://{host}{FHIR_PREFIX}"
    return server.settings.base_url


def _error_response(error: FhirError, format_param: str | None, accept: str | None) -> Response:
    try:
        media_type = response_format(format_param, accept)
    except FhirError:
        media_type = JSON
    return render_response(
        FhirResponse(error.status, operation_outcome(error.issues), dict(error.headers)), media_type, False,
    )


def _unexpected(exc: Exception, format_param: str | None, accept: str | None) -> Response:
    request_id = uuid.uuid4().hex[:12]
    log.error("unexpected error, request id %s", request_id, exc_info=exc)
    error = FhirError(f"Internal server error (request id {request_id})")
    error.issues = [Issue("fatal", "exception", error.message)]
    return _error_response(error, format_param, accept)
