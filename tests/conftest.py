"""Shared fixtures: one real server per test session on a real database, emptied between tests.

The database is a SQLite file in a temporary directory, or the PostgreSQL server named by
``FHIR_TEST_DATABASE_URL`` (``.ci/run`` starts one and runs the API suite against it).

Authentication is on, as in production: the ``client`` fixture carries a real access token,
obtained once per session from the token endpoint by an unrestricted client (bound to no
organisation, sees all) registered with every scope.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url

import adapters.hl7v2.inbound_store  # noqa: F401 - the HL7 v2 inbound table joins MetaData: emptied between tests
import fhir_server.auth.schema  # noqa: F401 - the auth tables join the shared MetaData, as in the server
from fhir_server.settings import Settings

BASE = "http://testserver/fhir"
ALL_SCOPES = "system/*.cruds"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory, worker_id) -> str:
    url = os.environ.get("FHIR_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite'}"
    if worker_id == "master":
        return url
    return _worker_database(url, worker_id)


def _worker_database(url: str, worker_id: str) -> str:
    """A fresh PostgreSQL database for one pytest-xdist worker, beside the configured one."""
    base = make_url(url)
    name = f"{base.database}_{worker_id}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def settings(database_url, tmp_path_factory) -> Settings:
    # tokens outlive a slow session (the suite's token is fetched once)
    return Settings(database_url=database_url, base_url=BASE, auth_token_lifetime_seconds=3600,
                    hl7_spool_dir=tmp_path_factory.mktemp("hl7-spool"))


@pytest.fixture(scope="session")
def server(settings):
    from fhir_server.server import Server

    srv = Server(settings)
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _empty_database(request):
    """Every test that uses the server starts from an empty store."""
    if "server" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("server")
    _truncate(server)
    yield


# Kept between tests: the registered clients and signing keys (the session's token), and the
# search-parameter keys the server registered at start-up.
_KEPT_TABLES = ("auth_", "search_param")


def _truncate(server) -> None:
    """Empty every table of the schema (resources, indexes, access, adapters' stores...), and
    the HL7 v2 spool files that earlier tests' pipelines left (their deliveries had rows)."""
    from fhir_server.storage.schema import metadata

    for leftover in server.settings.hl7_spool_dir.glob("*.spool"):
        leftover.unlink()

    server.audit.flush()  # queued audit events of the last test must not land in this one
    tables = [t for t in metadata.sorted_tables if not t.name.startswith(_KEPT_TABLES)]
    with server.db.write() as conn:
        if server.db.is_sqlite:
            for table in reversed(tables):
                conn.execute(delete(table))
        else:
            names = ", ".join(t.name for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="session")
def app(server):
    from fhir_server.api.app import create_app

    return create_app(server)


@pytest.fixture
def client(app, server, access_token) -> TestClient:
    with TestClient(app, base_url="http://testserver") as c:
        c.headers["Authorization"] = f"Bearer {access_token}"
        yield c


@pytest.fixture(scope="session")
def access_token(app) -> str:
    """A token with every scope, from the token endpoint (client_secret_basic)."""
    client_id, secret = register_client(app, "test suite", None, ALL_SCOPES)
    with TestClient(app, base_url="http://testserver") as c:
        return get_token(c, client_id, secret)


@pytest.fixture(scope="session")
def auditor_token(app) -> str:
    """A token of an auditor: reads and searches AuditEvents only (bound to no organisation)."""
    client_id, secret = register_client(app, "test auditor", None, "system/AuditEvent.rs")
    with TestClient(app, base_url="http://testserver") as c:
        return get_token(c, client_id, secret)


@pytest.fixture
def auditor(app, server, auditor_token) -> TestClient:
    """The app over HTTP as an auditor (see ``auditor_token``)."""
    with TestClient(app, base_url="http://testserver") as c:
        c.headers["Authorization"] = f"Bearer {auditor_token}"
        yield c


def register_client(app, name: str, organization: str | None, scopes: str) -> tuple[str, str]:
    """A client acting for ``organization``, or unrestricted when it is None."""
    client, secret = app.state.authentication.clients.register(
        name, organization, scopes.split(), unrestricted=organization is None)
    return client.client_id, secret


def get_token(http: TestClient, client_id: str, secret: str, scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    response = http.post("/auth/token", data=form, auth=(client_id, secret))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture
def fhir(client):
    """A tiny FHIR client over the test client: paths are relative to /fhir."""
    return FhirTestClient(client)


class FhirTestClient:
    def __init__(self, client: TestClient):
        self.http = client

    def _url(self, path: str) -> str:
        return "/fhir/" + path.lstrip("/") if path != "/" else "/fhir/"

    def get(self, path, **kw):
        return self.http.get(self._url(path), **kw)

    def post(self, path, json=None, **kw):
        return self.http.post(self._url(path), json=json, **kw)

    def put(self, path, json=None, **kw):
        return self.http.put(self._url(path), json=json, **kw)

    def patch(self, path, json=None, **kw):
        headers = {"Content-Type": "application/json-patch+json", **kw.pop("headers", {})}
        return self.http.patch(self._url(path), json=json, headers=headers, **kw)

    def delete(self, path, **kw):
        return self.http.delete(self._url(path), **kw)

    def create(self, resource: dict) -> dict:
        response = self.post(resource["resourceType"], json=resource)
        assert response.status_code == 201, response.text
        return response.json()

    def search(self, path: str) -> dict:
        response = self.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    def search_ids(self, path: str) -> list[str]:
        bundle = self.search(path)
        return sorted(
            e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"
        )


FIXTURES = Path(__file__).parent / "fixtures"
