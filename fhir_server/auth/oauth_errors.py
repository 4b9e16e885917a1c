"""Errors of the OAuth endpoints (``/auth/token``, ``/auth/revoke``), shaped by RFC 6749 5.2.

These endpoints are OAuth, not FHIR: OAuth clients (SMART libraries among them) expect
``{"error": "invalid_client", "error_description": "..."}``, not an OperationOutcome.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400, headers: dict | None = None):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status, headers={**NO_STORE, **self.headers},
        )


def invalid_client(description: str, basic: bool = False) -> OAuthError:
    """401 invalid_client; with the Basic challenge when the client tried Basic (RFC 6749 5.2)."""
    headers = {"WWW-Authenticate": 'Basic realm="county-fhir"'} if basic else {}
    return OAuthError("invalid_client", description, 401, headers)
