"""Tokens of an external OpenID Connect provider (FHIR_AUTH_JWKS_URL / ISSUER / AUDIENCE):
accepted when signed by a key the provider publishes and made for this server; the keys are
served by a tiny HTTP server on loopback."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from fhir_server.auth.external import ExternalProvider
from tests.auth.conftest import app_with, bearer

ISSUER = "https://idp.county.example/realms/county"
AUDIENCE = "county-fhir"
PROVIDER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url():
    document = json.dumps({"keys": [
        {**RSAAlgorithm.to_jwk(PROVIDER_KEY.public_key(), as_dict=True), "kid": "idp-1", "use": "sig"}
    ]}).encode()

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server interface
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/realms/county/certs"
    httpd.shutdown()


@pytest.fixture
def external_app(settings, jwks_url, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with app_with(settings, auth_jwks_url=jwks_url, auth_issuer=ISSUER, auth_audience=AUDIENCE) as http:
        yield http


def _token(key=PROVIDER_KEY, kid="idp-1", **changes) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "doctor-li", "iat": now, "exp": now + 300,
              "scope": "user/Patient.rs", "organization": "org-township-101", **changes}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def test_a_token_of_the_provider_is_accepted_with_its_scopes(external_app):
    ok = external_app.get("/fhir/Patient", headers=bearer(_token()))
    assert ok.status_code == 200, ok.text
    refused = external_app.post("/fhir/Patient", headers=bearer(_token()), json={"resourceType": "Patient"})
    assert refused.status_code == 403  # user/Patient.rs does not allow create


@pytest.mark.parametrize("changes", [
    {"aud": "another-api"}, {"iss": "https://idp.elsewhere.example"}, {"exp": int(time.time()) - 300},
])
def test_a_provider_token_for_another_audience_issuer_or_time_is_refused(external_app, changes):
    response = external_app.get("/fhir/Patient", headers=bearer(_token(**changes)))
    assert response.status_code == 401, response.text


def test_a_token_signed_by_a_key_the_provider_does_not_publish_is_refused(external_app):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert external_app.get("/fhir/Patient", headers=bearer(_token(stranger))).status_code == 401
    assert external_app.get("/fhir/Patient", headers=bearer(_token(stranger, kid="other"))).status_code == 401


def test_without_configuration_provider_tokens_are_refused(anonymous):
    assert anonymous.get("/fhir/Patient", headers=bearer(_token())).status_code == 401


def test_the_identity_takes_organisation_patient_and_scopes_from_the_claims(jwks_url):
    provider = ExternalProvider(jwks_url, ISSUER, AUDIENCE, "organization")
    identity = provider.identity({"sub": "app", "scp": ["patient/*.rs"], "organization": "org-1",
                                  "patient": "p-9"})
    assert identity.organization == "Organization/org-1"
    assert identity.patient == "Patient/p-9"
    assert identity.scopes == ("patient/*.rs",)
    assert not identity.unrestricted
