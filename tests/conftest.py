"""Shared fixtures: one real server per test session on a real database, emptied between tests.

The database is a SQLite file in a temporary directory, or the PostgreSQL server named by
``FHIR_TEST_DATABASE_URL`` (``.ci/run`` starts one and runs the API suite against it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url

from fhir_server.settings import Settings

BASE = "http://testserver/fhir"


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
def settings(database_url) -> Settings:
    return Settings(database_url=database_url, base_url=BASE)


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


def _truncate(server) -> None:
    from fhir_server.storage.schema import INDEX_TABLES, resource, resource_history

    with server.db.write() as conn:
        if server.db.is_sqlite:
            for table in (*INDEX_TABLES.values(), resource_history, resource):
                conn.execute(delete(table))
        else:
            names = ", ".join(t.name for t in (*INDEX_TABLES.values(), resource_history, resource))
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))


@pytest.fixture(scope="session")
def app(server):
    from fhir_server.api.app import create_app

    return create_app(server)


@pytest.fixture
def client(app, server) -> TestClient:
    with TestClient(app, base_url="http://testserver") as c:
        yield c


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
