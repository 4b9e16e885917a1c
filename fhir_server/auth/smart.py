"""What the server tells SMART clients about its authorisation: ``.well-known/smart-configuration``
(SMART App Launch 2.0, "Conformance") and ``CapabilityStatement.rest.security``.

The server issues tokens for registered clients by client credentials only (SMART Backend
Services): there is no authorisation endpoint, so no user-facing launch is advertised.
"""

from __future__ import annotations

from fhir_server.auth.external import ALGORITHMS
from fhir_server.auth.tokens import server_origin

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
CAPABILITIES = ["client-confidential-symmetric", "client-confidential-asymmetric", "permission-v2", "permission-v1"]
SCOPES = [f"{context}/*.{permission}" for context in ("system", "user", "patient")
          for permission in ("cruds", "rs", "read", "write", "*")]
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def endpoints(fhir_base: str) -> dict[str, str]:
    """The OAuth endpoints of the server whose FHIR base is ``fhir_base``."""
    origin = server_origin(fhir_base)
    return {"token": f"{origin}/auth/token", "revoke": f"{origin}/auth/revoke", "jwks": f"{origin}/auth/jwks"}


def smart_configuration(fhir_base: str) -> dict:
    urls = endpoints(fhir_base)
    return {
        "issuer": server_origin(fhir_base) + "/auth",
        "jwks_uri": urls["jwks"],
        "token_endpoint": urls["token"],
        "revocation_endpoint": urls["revoke"],
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ALGORITHMS,
        "scopes_supported": SCOPES,
        "response_types_supported": [],
        "capabilities": CAPABILITIES,
    }


def rest_security(fhir_base: str, cors: bool) -> dict:
    """``CapabilityStatement.rest.security`` for a server that requires SMART tokens."""
    urls = endpoints(fhir_base)
    return {
        "extension": [{"url": OAUTH_URIS, "extension": [
            {"url": "token", "valueUri": urls["token"]},
            {"url": "revoke", "valueUri": urls["revoke"]},
        ]}],
        "cors": cors,
        "service": [{
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}],
            "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
        }],
        "description": "Every request except GET /metadata needs an access token (Authorization: Bearer). "
                       "Registered clients get one from the token endpoint with client credentials "
                       "(client_secret_basic, client_secret_post or private_key_jwt).",
    }
