"""Registered clients: who may ask for tokens, with which scopes, for which organisation.

A client is registered by an administrator (``python -m fhir_server clients add``); its
secret is shown once and stored only as a hash (``client_secrets.py``). A client registered
with a JWKS has no secret: it proves itself with signed assertions (``assertions.py``).
Revoking a client refuses its token requests and every token it already holds.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import select, update

from fhir_server.auth.client_secrets import hash_secret, new_secret
from fhir_server.auth.identity import Scope
from fhir_server.auth.schema import auth_client
from fhir_server.storage.engine import Database

_ORGANIZATION = re.compile(r"^Organization/[A-Za-z0-9\-.]{1,64}$")


class InvalidClient(ValueError):
    """A registration that cannot be accepted (bad scope, organisation or key set)."""


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    organization: str | None
    unrestricted: bool  # sees every organisation's data (administration); never with an organisation
    scopes: tuple[str, ...]
    secret_hash: str | None
    jwks: dict | None
    created: datetime
    revoked: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked is None


class ClientRegistry:
    def __init__(self, db: Database):
        self.db = db

    def register(
        self, name: str, organization: str | None, scopes: list[str], jwks: dict | None = None,
        unrestricted: bool = False,
    ) -> tuple[Client, str | None]:
        """Store a new client; returns it with its secret (None for a JWKS client), shown once.

        A client acts for an ``organization`` or, when ``unrestricted``, for none (and sees all).
        """
        unknown = [s for s in scopes if Scope.parse(s) is None]
        if not scopes or unknown:
            raise InvalidClient(
                f"Scopes must be SMART resource scopes such as system/Observation.rs; not {unknown or scopes}"
            )
        if (organization is None) == (not unrestricted):
            raise InvalidClient("A client acts either for an organisation or, unrestricted, for the whole server")
        if organization is not None and not _ORGANIZATION.match(organization):
            raise InvalidClient(f"The organisation must be written Organization/<id>, not {organization!r}")
        secret = None if jwks else new_secret()
        row = {
            "client_id": secrets.token_hex(16),
            "name": name,
            "organization": organization,
            "unrestricted": unrestricted,
            "scopes": " ".join(scopes),
            "secret_hash": hash_secret(secret) if secret else None,
            "jwks": json.dumps(jwks) if jwks else None,
            "created": _now(),
            "revoked": None,
        }
        with self.db.write() as conn:
            conn.execute(auth_client.insert().values(**row))
        return _client(row), secret

    def get(self, client_id: str) -> Client | None:
        with self.db.read() as conn:
            row = conn.execute(select(auth_client).where(auth_client.c.client_id == client_id)).first()
        return _client(row._mapping) if row else None

    def all(self) -> list[Client]:
        with self.db.read() as conn:
            rows = conn.execute(select(auth_client).order_by(auth_client.c.created)).all()
        return [_client(r._mapping) for r in rows]

    def revoke(self, client_id: str) -> bool:
        """Revoke an active client; False if there is no such active client."""
        with self.db.write() as conn:
            done = conn.execute(
                update(auth_client)
                .where(auth_client.c.client_id == client_id, auth_client.c.revoked.is_(None))
                .values(revoked=_now())
            )
        return done.rowcount == 1


def public_key_set(text: str) -> dict:
    """A client's public keys as a JWKS, from a JWKS, a single JWK or a PEM public key.

    Private key material is refused: a client registers its public half only.
    """
    if text.lstrip().startswith("-----BEGIN"):
        try:
            key = load_pem_public_key(text.encode())
        except ValueError:
            raise InvalidClient("The PEM text is not a public key") from None
        if isinstance(key, rsa.RSAPublicKey):
            return {"keys": [RSAAlgorithm.to_jwk(key, as_dict=True)]}
        if isinstance(key, ec.EllipticCurvePublicKey):
            return {"keys": [ECAlgorithm.to_jwk(key, as_dict=True)]}
        raise InvalidClient("Only RSA and EC public keys are accepted")
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidClient("The key file is neither JSON (JWKS or JWK) nor a PEM public key") from None
    keys = document.get("keys") if isinstance(document, dict) and "keys" in document else [document]
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise InvalidClient("A JWKS holds a list of keys")
    if any(private in key for key in keys for private in ("d", "p", "q", "k")):
        raise InvalidClient("The key set holds private key material; register the public keys only")
    try:
        jwt.PyJWKSet.from_dict({"keys": keys})
    except jwt.PyJWTError as exc:
        raise InvalidClient(f"The key set is not usable: {exc}") from None
    return {"keys": keys}


def _client(row) -> Client:
    return Client(
        client_id=row["client_id"], name=row["name"], organization=row["organization"],
        unrestricted=row["unrestricted"],
        scopes=tuple(row["scopes"].split()), secret_hash=row["secret_hash"],
        jwks=json.loads(row["jwks"]) if row["jwks"] else None, created=row["created"],
        revoked=row["revoked"],
    )


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
