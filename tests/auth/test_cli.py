"""``python -m fhir_server clients add / list / revoke`` against a real SQLite file."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from fhir_server.auth.clients import ClientRegistry
from fhir_server.auth.client_secrets import verify_secret
from fhir_server.cli import cli
from fhir_server.storage.engine import Database

runner = CliRunner()


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'clients.sqlite'}"


def _run(*args: str):
    return runner.invoke(cli, ["clients", *args])


@pytest.fixture
def registry(database_url):
    """What the commands stored, read back through a registry of the test's own."""
    db = Database(database_url)
    db.migrate()
    yield ClientRegistry(db)
    db.dispose()


def test_add_prints_the_id_and_secret_once_and_stores_only_a_hash(database_url, registry):
    result = _run("add", "--name", "石门镇卫生院 HIS", "--organization", "Organization/org-township-101",
                  "--scope", "system/Observation.cruds system/Patient.rs", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    client_id = result.stdout.split("client id:")[1].split()[0]
    secret = result.stdout.split("client secret:")[1].split()[0]
    [client] = registry.all()
    assert client.client_id == client_id
    assert client.name == "石门镇卫生院 HIS"
    assert client.organization == "Organization/org-township-101"
    assert client.scopes == ("system/Observation.cruds", "system/Patient.rs")
    assert secret not in client.secret_hash and verify_secret(secret, client.secret_hash)
    listed = _run("list", "--database-url", database_url)
    assert listed.exit_code == 0
    assert client_id in listed.stdout and secret not in listed.stdout


def test_add_with_json_output_and_unrestricted(database_url, registry):
    result = _run("add", "--name", "county platform", "--unrestricted", "--scope", "system/*.cruds",
                  "--database-url", database_url, "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    client = registry.get(printed["client_id"])
    assert client.unrestricted and client.organization is None
    assert verify_secret(printed["client_secret"], client.secret_hash)


def test_add_with_a_public_key_registers_a_private_key_jwt_client(database_url, registry, tmp_path):
    pem = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "lab.pem").write_bytes(pem)
    result = _run("add", "--name", "LIS", "--organization", "Organization/org-county-lab",
                  "--scope", "system/Observation.cu", "--jwks", str(tmp_path / "lab.pem"),
                  "--database-url", database_url, "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["client_secret"] is None
    client = registry.get(printed["client_id"])
    assert client.jwks["keys"][0]["crv"] == "P-384" and client.secret_hash is None


@pytest.mark.parametrize("args", [
    ["--organization", "Organization/x", "--scope", "system/Observation.rs?category=laboratory"],
    ["--organization", "Organization/x", "--scope", "read everything"],
    ["--organization", "x", "--scope", "system/*.rs"],
    ["--scope", "system/*.rs"],  # neither an organisation nor --unrestricted
    ["--organization", "Organization/x", "--unrestricted", "--scope", "system/*.rs"],
])
def test_add_refuses_bad_registrations(database_url, registry, args):
    result = _run("add", "--name", "bad", *args, "--database-url", database_url)
    assert result.exit_code == 2, result.output
    assert registry.all() == []


def test_add_refuses_a_private_key(database_url, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    from jwt.algorithms import ECAlgorithm

    (tmp_path / "private.json").write_text(ECAlgorithm.to_jwk(key))
    result = _run("add", "--name", "bad", "--organization", "Organization/x", "--scope", "system/*.rs",
                  "--jwks", str(tmp_path / "private.json"), "--database-url", database_url)
    assert result.exit_code == 2
    assert "private key" in result.output


def test_revoke(database_url, registry):
    added = json.loads(_run("add", "--name", "n", "--organization", "Organization/x", "--scope",
                            "system/*.rs", "--database-url", database_url, "--json").stdout)
    result = _run("revoke", added["client_id"], "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert not registry.get(added["client_id"]).active
    assert _run("revoke", added["client_id"], "--database-url", database_url).exit_code == 1
    assert _run("revoke", "no-such-client", "--database-url", database_url).exit_code == 1
