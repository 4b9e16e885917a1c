"""Who sent this request: the bearer token of a FHIR request turned into an ``Identity``.

``Authentication`` is built once per application from the settings and the database, and
holds what the HTTP layer needs: the client registry, client authentication for the token
endpoint, the server's own tokens and, when configured, the external OpenID Connect provider.

A token is tried as one of the server's own when its ``iss`` is the server's issuer, as the
external provider's when its ``iss`` is that provider's; any other token, a missing one or a
bad one is a 401 whose ``WWW-Authenticate`` challenge follows RFC 6750 3.
"""

from __future__ import annotations

import logging

import jwt

from fhir_server.auth.client_authentication import ClientAuthentication
from fhir_server.auth.clients import ClientRegistry
from fhir_server.auth.external import ExternalProvider
from fhir_server.auth.identity import Identity
from fhir_server.auth.signing_key import load_or_create
from fhir_server.auth.tokens import AccessTokens
from fhir_server.errors import NotAuthenticated
from fhir_server.settings import Settings
from fhir_server.storage.engine import Database

log = logging.getLogger(__name__)
REALM = "county-fhir"
# What every request gets when authentication is off (serve --no-auth): development only.
UNAUTHENTICATED = Identity("anonymous (authentication disabled)", None, ("system/*.cruds", "system/AuditEvent.rs"),
                           unrestricted=True, audited=False)
# The caller of a public request (GET /metadata) when authentication is on: allowed nothing.
ANONYMOUS = Identity("anonymous", None, ())


class Authentication:
    def __init__(self, settings: Settings, db: Database):
        self.enabled = settings.auth_enabled
        self.clients = ClientRegistry(db)
        self.client_authentication = ClientAuthentication(self.clients)
        self.tokens = AccessTokens(db, load_or_create(db), settings.base_url,
                                   settings.auth_token_lifetime_seconds)
        self.external: ExternalProvider | None = None
        if settings.auth_jwks_url and settings.auth_issuer and settings.auth_audience:
            self.external = ExternalProvider(settings.auth_jwks_url, settings.auth_issuer,
                                             settings.auth_audience, settings.auth_organization_claim)
        elif settings.auth_jwks_url or settings.auth_issuer or settings.auth_audience:
            log.warning("FHIR_AUTH_JWKS_URL, FHIR_AUTH_ISSUER and FHIR_AUTH_AUDIENCE are needed together: "
                        "tokens of the external provider are not accepted")

    def needs_io(self, authorization: str | None) -> bool:
        """Whether ``identify`` may wait on the database or the network for this header (to
        reload the revocations, or fetch an external provider's keys): else it is quick enough
        to run on the event loop. A token seen before, with fresh revocations, is."""
        if not self.enabled:
            return False
        scheme, _, token = (authorization or "").partition(" ")
        return not (self.tokens.remembers(token.strip()) and self.tokens.revocations.fresh())

    def identify(self, authorization: str | None) -> Identity:
        """The caller of a FHIR request, from its ``Authorization`` header; 401 if none is proven."""
        if not self.enabled:
            return UNAUTHENTICATED
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated("This server needs an access token: Authorization: Bearer <token>", None)
        token = token.strip()
        try:
            if self.tokens.remembers(token) or _issuer(token) == self.tokens.issuer:
                claims = self.tokens.verify(token)
                if self.tokens.revocations.is_revoked(claims):
                    raise unauthenticated("The access token has been revoked")
                return self.tokens.identity(claims)
            if self.external is not None and _issuer(token) == self.external.issuer:
                return self.external.identity(self.external.decode(token))
        except jwt.ExpiredSignatureError:
            raise unauthenticated("The access token has expired") from None
        except jwt.PyJWTError as exc:
            log.warning("access token refused: %s", exc)
            raise unauthenticated("The access token is not valid for this server") from None
        raise unauthenticated("The access token's issuer is not trusted by this server")


def _issuer(token: str) -> object:
    """The ``iss`` a token claims, before anything is verified: it says which key to check with."""
    return jwt.decode(token, options={"verify_signature": False}).get("iss")


def unauthenticated(description: str, error: str | None = "invalid_token") -> NotAuthenticated:
    """A 401 with its Bearer challenge; ``error`` is left out when no token was sent (RFC 6750 3.1)."""
    exc = NotAuthenticated(description)
    challenge = f'Bearer realm="{REALM}"'
    if error:
        challenge += f', error="{error}", error_description="{description}"'
    exc.headers["WWW-Authenticate"] = challenge
    return exc
