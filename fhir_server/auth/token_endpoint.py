"""The OAuth endpoints: ``POST /auth/token`` (client credentials grant, RFC 6749 4.4, as SMART
Backend Services uses it), ``POST /auth/revoke`` (RFC 7009) and ``GET /auth/jwks`` (the public
key that checks the server's tokens).

A token request names the scopes it wants (``scope``, space-separated); it is granted those
the client is registered for (``identity.grant_scopes``), all of them when it names none, and
refused with ``invalid_scope`` when none remains. Responses are never cached.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import anyio
import jwt
from jwt.algorithms import ECAlgorithm
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fhir_server.auth.authentication import Authentication
from fhir_server.auth.identity import grant_scopes
from fhir_server.auth.oauth_errors import NO_STORE, OAuthError
from fhir_server.auth.signing_key import ALGORITHM
from fhir_server.auth.smart import endpoints

FORM = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 64 * 1024


async def token(request: Request) -> Response:
    auth: Authentication = request.app.state.authentication
    try:
        form = await _form(request)
        if form.get("grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "This server grants client_credentials only")
        client = await anyio.to_thread.run_sync(
            auth.client_authentication.authenticate, form, request.headers.get("authorization"),
            _token_urls(request),
        )
        requested = form.get("scope", "").split() or list(client.scopes)
        granted = grant_scopes(requested, list(client.scopes))
        if not granted:
            raise OAuthError("invalid_scope", "None of the requested scopes is allowed for this client")
    except OAuthError as exc:
        return _refused(request, exc)
    issued = auth.tokens.issue(client, granted)
    return JSONResponse(
        {"access_token": issued.access_token, "token_type": "bearer", "expires_in": issued.expires_in,
         "scope": issued.scope},
        headers=NO_STORE,
    )


async def revoke(request: Request) -> Response:
    """Revoke one of the calling client's tokens; 200 even for an unknown token (RFC 7009 2.2)."""
    auth: Authentication = request.app.state.authentication
    try:
        form = await _form(request)
        client = await anyio.to_thread.run_sync(
            auth.client_authentication.authenticate, form, request.headers.get("authorization"),
            _token_urls(request),
        )
        if not form.get("token"):
            raise OAuthError("invalid_request", "The token to revoke is missing")
    except OAuthError as exc:
        return _refused(request, exc)
    try:
        claims = auth.tokens.decode(form["token"], verify_expiry=False)
    except jwt.PyJWTError:  # RFC 7009: an invalid token is not an error
        return Response(status_code=200, headers=NO_STORE)
    if claims.get("sub") == client.client_id:
        await anyio.to_thread.run_sync(auth.tokens.revocations.revoke_token, claims)
    return Response(status_code=200, headers=NO_STORE)


async def jwks(request: Request) -> Response:
    key = request.app.state.authentication.tokens.key
    jwk = {**ECAlgorithm.to_jwk(key.public_key, as_dict=True), "kid": key.kid, "alg": ALGORITHM, "use": "sig"}
    return JSONResponse({"keys": [jwk]})


def _refused(request: Request, error: OAuthError) -> Response:
    """The OAuth error response; a failed client authentication is audited too."""
    if error.status == 401:
        address = request.client.host if request.client else None
        request.app.state.server.audit.failed_authentication(
            None, f"{request.url.path}: {error.description}", address)
    return error.response()


async def _form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        raise OAuthError("invalid_request", f"The request body must be {FORM}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError("invalid_request", "The request body is too large")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=False, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "The request body is not a valid form") from None
    form = dict(pairs)
    if len(form) != len(pairs):
        raise OAuthError("invalid_request", "A parameter is repeated")
    return form


def _token_urls(request: Request) -> list[str]:
    """The token endpoint URLs an assertion's ``aud`` may name: as configured and as reached."""
    configured = endpoints(request.app.state.server.settings.base_url)["token"]
    reached = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}/auth/token"
    return list(dict.fromkeys([configured, reached]))
