"""Security headers on every response, CORS closed unless configured, HSTS only when asked,
XML entities never expanded, and the SMART configuration."""

from __future__ import annotations

import logging

import pytest

from tests.auth.conftest import app_with, bearer

CLINIC_APP = "https://clinic-app.county.example"


def _assert_security_headers(response):
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in response.headers


def test_every_response_carries_the_security_headers(anonymous, client):
    for response in (anonymous.get("/fhir/metadata"), anonymous.get("/fhir/Patient"),
                     client.get("/fhir/Patient"), client.get("/fhir/Patient/none"),
                     anonymous.post("/auth/token", data={}), anonymous.get("/nowhere")):
        _assert_security_headers(response)


def test_authenticated_and_oauth_responses_are_not_cached(anonymous, client):
    assert client.get("/fhir/Patient").headers["Cache-Control"] == "no-store"
    assert client.get("/fhir/metadata").headers["Cache-Control"] == "no-store"
    assert anonymous.post("/auth/token", data={}).headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in anonymous.get("/fhir/metadata").headers


def test_cors_is_closed_by_default(anonymous, client):
    preflight = anonymous.options("/fhir/Patient", headers={
        "Origin": CLINIC_APP, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    response = client.get("/fhir/Patient", headers={"Origin": CLINIC_APP})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_opens_to_the_configured_origins_only(settings, access_token):
    with app_with(settings, cors_origins=f"{CLINIC_APP}, https://other.example") as http:
        preflight = http.options("/fhir/Patient", headers={
            "Origin": CLINIC_APP, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 200
        assert preflight.headers["Access-Control-Allow-Origin"] == CLINIC_APP
        _assert_security_headers(preflight)
        response = http.get("/fhir/Patient", headers={"Origin": CLINIC_APP, **bearer(access_token)})
        assert response.headers["Access-Control-Allow-Origin"] == CLINIC_APP
        assert "ETag" in response.headers["Access-Control-Expose-Headers"]
        stranger = http.options("/fhir/Patient", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        assert "Access-Control-Allow-Origin" not in stranger.headers
        assert http.get("/fhir/metadata").json()["rest"][0]["security"]["cors"] is True


def test_hsts_only_when_configured(settings):
    with app_with(settings, hsts_max_age=31536000) as http:
        assert http.get("/fhir/metadata").headers["Strict-Transport-Security"] == "max-age=31536000"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Patient xmlns="http://hl7.org/fhir"><gender value="&lol2;"/></Patient>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Patient xmlns="http://hl7.org/fhir"><gender value="&xxe;"/></Patient>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_xml_entities_are_refused_not_expanded(client, body):
    response = client.post("/fhir/Patient", content=body, headers={"Content-Type": "application/fhir+xml"})
    assert response.status_code == 400
    assert b"lollol" not in response.content and b"root:" not in response.content
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


@pytest.mark.parametrize("path", ["/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"])
def test_smart_configuration(anonymous, path):
    response = anonymous.get(path)
    assert response.status_code == 200
    config = response.json()
    assert config["token_endpoint"] == "http://testserver/auth/token"
    assert config["revocation_endpoint"] == "http://testserver/auth/revoke"
    assert config["grant_types_supported"] == ["client_credentials"]
    assert set(config["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "private_key_jwt"}
    assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    assert {"client-confidential-symmetric", "client-confidential-asymmetric", "permission-v1",
            "permission-v2"} <= set(config["capabilities"])
    assert "system/*.cruds" in config["scopes_supported"]
    assert anonymous.get(config["jwks_uri"].removeprefix("http://testserver")).status_code == 200


def test_no_auth_serves_without_a_token_and_warns_at_start_and_on_every_request(settings, caplog):
    caplog.set_level(logging.WARNING, logger="fhir_server.api.app")
    with app_with(settings, auth_enabled=False) as http:
        assert any("AUTHENTICATION IS DISABLED" in r.getMessage() for r in caplog.records)
        caplog.clear()
        assert http.get("/fhir/Patient").status_code == 200
        assert http.post("/fhir/Patient", json={"resourceType": "Patient"}).status_code == 201
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2 and all("served without a token" in w for w in warnings)
        assert "security" not in http.get("/fhir/metadata").json()["rest"][0]
