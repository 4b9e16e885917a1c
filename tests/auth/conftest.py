"""Fixtures for the authentication tests: tokens with chosen scopes, a client without a token,
and servers built with other auth settings (same database, real Server and app)."""

from __future__ import annotations

import contextlib

import pytest
from fastapi.testclient import TestClient

from tests.conftest import get_token, register_client


@pytest.fixture
def anonymous(app):
    """The app over HTTP with no credentials at all."""
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture(scope="session")
def _tokens() -> dict:
    return {}


@pytest.fixture
def token_for(app, _tokens):
    """``token_for("system/Patient.rs", organization=None)``: a real token from the token
    endpoint for a client registered with exactly those scopes (cached per session)."""

    def make(scopes: str, organization: str | None = None) -> str:
        key = (scopes, organization)
        if key not in _tokens:
            client_id, secret = register_client(app, f"client {scopes}", organization, scopes)
            with TestClient(app, base_url="http://testserver") as http:
                _tokens[key] = get_token(http, client_id, secret)
        return _tokens[key]

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def app_with(settings, **changes):
    """A real Server and app on the test database with some settings changed."""
    from fhir_server.api.app import create_app
    from fhir_server.server import Server

    server = Server(settings.model_copy(update=changes))
    try:
        with TestClient(create_app(server), base_url="http://testserver") as http:
            yield http
    finally:
        server.close()
