"""The FastAPI application: the route table mounted under ``/fhir`` and one error boundary.

Every error leaves as an OperationOutcome with the status of its ``FhirError`` class; anything
unexpected is logged with a request id and answered 500 with a generic message, never a trace.

Every FHIR request but ``GET /metadata`` is authenticated (``fhir_server/auth``) before its body
is read, its scopes are checked against what the route does (``auth/permissions.py``), and the
handler finds the caller as ``FhirRequest.identity``. The OAuth endpoints live under ``/auth``,
the SMART configuration at ``/.well-known/smart-configuration`` and under the FHIR base.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
from fastapi import FastAPI, Request
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute
from starlette.staticfiles import StaticFiles

from fhir_server.api.http import FhirRequest, FhirResponse, render_response
from fhir_server.api.openapi import openapi_document
from fhir_server.api.routes import ROUTES, Route
from fhir_server.api.security import add_security_middleware, caller
from fhir_server.auth import token_endpoint
from fhir_server.auth.authentication import ANONYMOUS, Authentication
from fhir_server.auth.identity import Identity
from fhir_server.auth.permissions import PUBLIC_INTERACTIONS, authorize_route
from fhir_server.auth.smart import smart_configuration
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
from adapters.hl7v2.inbound_api import inbound_routes  # HL7 v2 inbound messages and replay (issue 5)
from adapters.public_health import urgent_watch  # the urgent-finding rule for follow-ups posted here (issue 6)

log = logging.getLogger(__name__)
FHIR_PREFIX = "/fhir"


def serving(app: FastAPI, server: Server,
            beside: Callable[[], AbstractAsyncContextManager] | None = None) -> FastAPI:
    """``app`` as a server process serves it: ``beside()`` (the MLLP listener) runs for as long as
    the app does, and ``server`` is closed when it stops, so that the audit events still queued
    are written. Both happen in the app's lifespan, which uvicorn runs to its end before it
    re-raises the stop signal (code after ``uvicorn.run`` never runs on SIGTERM)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        try:
            if beside is None:
                yield
            else:
                async with beside():
                    yield
        finally:
            server.close()

    app.router.lifespan_context = lifespan
    return app


def create_app(server: Server) -> FastAPI:
    app = FastAPI(
        title="County chronic-disease FHIR server",
        description="FHIR R4 REST API (JSON and XML) for county hospital, township and village systems.",
        docs_url="/docs", openapi_url="/openapi.json", redoc_url=None,
    )
    app.state.server = server
    app.state.authentication = auth = Authentication(server.settings, server.db)
    if not auth.enabled:
        log.warning("AUTHENTICATION IS DISABLED (--no-auth / FHIR_AUTH_ENABLED=false): every request "
                    "is served without a token. For local development only.")
    document = openapi_document(ROUTES, server.registry.supported_types, FHIR_PREFIX,
                                auth_enabled=auth.enabled, public_interactions=PUBLIC_INTERACTIONS)
    app.openapi = lambda: document

    async def smart_config(request: Request) -> Response:
        return JSONResponse(smart_configuration(_base_url(server, request)))

    for path, endpoint, method in (
        ("/auth/token", token_endpoint.token, "POST"),
        ("/auth/revoke", token_endpoint.revoke, "POST"),
        ("/auth/jwks", token_endpoint.jwks, "GET"),
        ("/.well-known/smart-configuration", smart_config, "GET"),
        (FHIR_PREFIX + "/.well-known/smart-configuration", smart_config, "GET"),
    ):
        app.router.routes.append(StarletteRoute(path, endpoint, methods=[method]))
    for route in ROUTES:
        # POST [base] is the base URL itself (no slash): answered there, not redirected to [base]/
        # (a client need not follow a 307 with its body)
        for path in (FHIR_PREFIX + route.path, FHIR_PREFIX) if route.path == "/" else (FHIR_PREFIX + route.path,):
            app.router.routes.append(StarletteRoute(
                path, _endpoint(server, auth, route), methods=[route.method], name=f"{route.method} {route.path}",
            ))
    app.router.routes.extend(inbound_routes(server, auth))  # /hl7v2/inbound (adapters/hl7v2/inbound_api.py)
    urgent_watch.install(server)
    add_security_middleware(app, server.settings)

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

    # The readable guide to the county profiles, generated by profiles/build.py (public: no PHI).
    app.mount("/guide", StaticFiles(directory=server.settings.profiles_dir / "guide", html=True), name="guide")

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return Response(status_code=307, headers={"Location": f"{FHIR_PREFIX}/metadata"})

    return app


def _endpoint(server: Server, auth: Authentication, route: Route):
    async def endpoint(request: Request) -> Response:
        format_param = request.query_params.get("_format")
        accept = request.headers.get("accept")
        try:
            identity = await _identity(server, auth, route, request)
            body = await _read_body(request, server.settings.max_body_bytes)
            fhir_request = FhirRequest(
                method=request.method,
                path_params=dict(request.path_params),
                query=list(request.query_params.multi_items()),
                headers={k.lower(): v for k, v in request.headers.items()},
                raw_body=body,
                base_url=_base_url(server, request),
                identity=identity,
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


async def _identity(server: Server, auth: Authentication, route: Route, request: Request) -> Identity:
    """The caller, proven by its token (401, audited, if not), allowed by its scopes to do this
    (403 if not)."""
    if route.interaction in PUBLIC_INTERACTIONS and auth.enabled:
        return ANONYMOUS
    identity = await caller(server, auth, request)
    authorize_route(identity, route, request.path_params)
    return identity


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
