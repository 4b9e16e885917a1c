"""Access tokens from an external OpenID Connect provider (``FHIR_AUTH_JWKS_URL``,
``FHIR_AUTH_ISSUER``, ``FHIR_AUTH_AUDIENCE``).

Such a token is accepted when its signature checks against the provider's published keys
(fetched from the JWKS URL and cached for five minutes; an unknown ``kid`` fetches them
again) and its ``iss``, ``aud`` and ``exp`` are right. The scopes come from ``scope``
(space-separated) or ``scp`` (a list), the organisation from the configured claim
(``FHIR_AUTH_ORGANIZATION_CLAIM``, default ``organization``), the patient of a SMART launch
from ``patient``.
"""

from __future__ import annotations

import jwt

from fhir_server.auth.identity import Identity

# Asymmetric algorithms only: an HMAC "signature" would let a key's public half forge tokens.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
# Clock difference tolerated between the provider and this server.
LEEWAY_SECONDS = 30


class ExternalProvider:
    def __init__(self, jwks_url: str, issuer: str, audience: str, organization_claim: str):
        self.issuer = issuer
        self.audience = audience
        self.organization_claim = organization_claim
        self._keys = jwt.PyJWKClient(jwks_url, lifespan=300, timeout=10)

    def decode(self, token: str) -> dict:
        """The verified claims; ``jwt.PyJWTError`` if the token is not valid for this server."""
        key = self._keys.get_signing_key_from_jwt(token)
        return jwt.decode(
            token, key.key, algorithms=ALGORITHMS, audience=self.audience, issuer=self.issuer,
            leeway=LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud", "sub"]},
        )

    def identity(self, claims: dict) -> Identity:
        scopes = claims.get("scope") or claims.get("scp") or ""
        if isinstance(scopes, str):
            scopes = scopes.split()
        return Identity(
            subject=str(claims["sub"]),
            organization=_reference("Organization", claims.get(self.organization_claim)),
            scopes=tuple(str(s) for s in scopes),
            patient=_reference("Patient", claims.get("patient")),
        )


def _reference(res_type: str, value: object) -> str | None:
    """``Type/id`` from a claim holding either the id or the reference; None if absent."""
    if not isinstance(value, str) or not value:
        return None
    return value if value.startswith(f"{res_type}/") else f"{res_type}/{value}"
