"""Who is calling (the bearer token, a failure audited); security headers on every response, and
CORS only for the origins configured.

- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
  ``X-Frame-Options: DENY`` and ``Content-Security-Policy: frame-ancestors 'none'`` always;
- ``Cache-Control: no-store`` on every answer to a request that carried credentials and on
  the OAuth endpoints (health data and tokens must not sit in shared caches), unless the
  handler set its own;
- ``Strict-Transport-Security`` only when ``FHIR_HSTS_MAX_AGE`` is set (behind TLS);
- CORS (``FHIR_CORS_ORIGINS``) is closed by default: without configured origins no
  ``Access-Control-*`` header is ever sent, so browsers keep other sites out.
"""

from __future__ import annotations

import logging

import anyio
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.auth.identity import Identity
from fhir_server.errors import NotAuthenticated
from fhir_server.settings import Settings

log = logging.getLogger(__name__)

ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
]
CORS_HEADERS = ["Authorization", "Content-Type", "Accept", "Prefer", "If-Match", "If-None-Match",
                "If-None-Exist", "If-Modified-Since"]
CORS_EXPOSED = ["ETag", "Location", "Last-Modified", "Content-Location", "WWW-Authenticate"]


class SecurityHeaders:
    """Pure ASGI middleware (streaming responses pass through untouched)."""

    def __init__(self, app: ASGIApp, hsts_max_age: int = 0):
        self.app = app
        self.extra = list(ALWAYS)
        if hsts_max_age > 0:
            self.extra.append((b"strict-transport-security", f"max-age={hsts_max_age}".encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        credentials = any(name == b"authorization" for name, _ in scope["headers"])
        no_store = credentials or scope["path"].startswith("/auth/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in self.extra if name not in present]
                if no_store and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_security_middleware(app, settings: Settings) -> None:
    """CORS (if configured) inside, security headers outside, so preflights get them too."""
    origins = settings.cors_origin_list
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=CORS_HEADERS, expose_headers=CORS_EXPOSED, allow_credentials=False, max_age=600,
        )
    app.add_middleware(SecurityHeaders, hsts_max_age=settings.hsts_max_age)


async def caller(server, authentication, request: Request) -> Identity:
    """The identity the request's bearer token proves (401 ``NotAuthenticated``, audited, if it
    proves none). With authentication off, every request is logged as served without a token."""
    if not authentication.enabled:
        log.warning("authentication disabled: %s %s served without a token", request.method, request.url.path)
    try:
        header = request.headers.get("authorization")
        if not authentication.needs_io(header):
            return authentication.identify(header)
        return await anyio.to_thread.run_sync(authentication.identify, header)
    except NotAuthenticated as exc:
        server.audit.failed_authentication(None, exc.message, request.client.host if request.client else None)
        raise
