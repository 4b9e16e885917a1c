"""The server's token signing key: an EC P-256 key (ES256), made on first start.

The key lives in the database (``auth_signing_key``), so that every worker process and every
server sharing the database signs and checks with the same key, and it never lands in the
repository. Processes starting together race to insert the one ``current`` row; the loser
reads the winner's key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from jwt.utils import base64url_encode
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from fhir_server.auth.schema import auth_signing_key
from fhir_server.storage.engine import Database

ALGORITHM = "ES256"
_SLOT = "current"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()


def load_or_create(db: Database) -> SigningKey:
    key = _load(db)
    if key is not None:
        return key
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
    ).decode()
    row = {"slot": _SLOT, "kid": _thumbprint(private_key.public_key()), "private_key": pem,
           "created": datetime.now(UTC).replace(tzinfo=None)}
    try:
        with db.write() as conn:
            conn.execute(auth_signing_key.insert().values(**row))
    except IntegrityError:
        pass  # another process made the key first: use theirs
    key = _load(db)
    assert key is not None
    return key


def _load(db: Database) -> SigningKey | None:
    with db.read() as conn:
        row = conn.execute(select(auth_signing_key).where(auth_signing_key.c.slot == _SLOT)).first()
    if row is None:
        return None
    private_key = serialization.load_pem_private_key(row.private_key.encode(), password=None)
    return SigningKey(row.kid, private_key)


def _thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """The RFC 7638 JWK thumbprint, used as the key id."""
    jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return base64url_encode(hashlib.sha256(canonical.encode()).digest()).decode()
