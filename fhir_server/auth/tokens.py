"""The access tokens this server issues: JWTs signed with its own key (``signing_key.py``).

A token names its client (``sub``, ``client_id``), the organisation it acts for
(``organization``) or ``unrestricted: true`` for an administration client, the granted scopes (``scope``, space-separated as in OAuth), a unique
``jti`` and its expiry (``exp``, ``settings.auth_token_lifetime_seconds`` after issue). The
issuer is ``<server>/auth`` and the audience the FHIR base URL, both from ``settings.base_url``.

A token is refused once it has expired, once its ``jti`` has been revoked
(``POST /auth/revoke``), and once its client has been revoked (``clients revoke``).

Checking a token costs no database access and no signature check on the hot path: a token's
verified claims are remembered (bounded, by token) and its expiry checked on every use, and the
revocations are held in memory (``Revocations``), reloaded from the database at most every
``REVOCATION_REFRESH_SECONDS``. A revocation made in this process applies at once; one made by
another process (another worker, the ``clients revoke`` command) within that delay.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import jwt
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from fhir_server.auth.clients import Client
from fhir_server.auth.identity import Identity
from fhir_server.auth.schema import auth_client, auth_revoked_token
from fhir_server.auth.signing_key import ALGORITHM, SigningKey
from fhir_server.storage.engine import Database

REVOCATION_REFRESH_SECONDS = 2.0
VERIFIED_CACHE_SIZE = 4096


def server_origin(fhir_base: str) -> str:
    """``http://host:port`` of a FHIR base URL: the OAuth endpoints live under ``/auth`` there."""
    parts = urlsplit(fhir_base)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str


class AccessTokens:
    def __init__(self, db: Database, key: SigningKey, fhir_base: str, lifetime_seconds: int):
        self.db = db
        self.key = key
        self.issuer = server_origin(fhir_base) + "/auth"
        self.audience = fhir_base
        self.lifetime = lifetime_seconds
        self.revocations = Revocations(db)
        self._verified: dict[str, dict] = {}
        self._lock = threading.Lock()

    def issue(self, client: Client, scopes: list[str]) -> IssuedToken:
        now = int(time.time())
        claims = {
            "iss": self.issuer, "aud": self.audience, "sub": client.client_id,
            "client_id": client.client_id, "iat": now, "exp": now + self.lifetime,
            "jti": secrets.token_hex(16), "scope": " ".join(scopes),
        }
        if client.organization:
            claims["organization"] = client.organization
        if client.unrestricted:
            claims["unrestricted"] = True
        token = jwt.encode(claims, self.key.private_key, algorithm=ALGORITHM, headers={"kid": self.key.kid})
        return IssuedToken(token, self.lifetime, claims["scope"])

    def decode(self, token: str, verify_expiry: bool = True) -> dict:
        """The claims of one of our tokens; ``jwt.InvalidTokenError`` if it is not one, or expired."""
        return jwt.decode(
            token, self.key.public_key, algorithms=[ALGORITHM], audience=self.audience,
            issuer=self.issuer,
            options={"require": ["exp", "iat", "jti", "sub"], "verify_exp": verify_expiry},
        )

    def remembers(self, token: str) -> bool:
        """Whether ``token`` is one of ours already verified (a cheap test before any parsing)."""
        return token in self._verified

    def verify(self, token: str) -> dict:
        """``decode`` remembered: the signature is checked once per token, the expiry every time."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self.decode(token)
            with self._lock:
                if len(self._verified) >= VERIFIED_CACHE_SIZE:
                    self._verified.pop(next(iter(self._verified)))  # the oldest
                self._verified[token] = claims
        elif claims["exp"] <= time.time():
            with self._lock:
                self._verified.pop(token, None)
            raise jwt.ExpiredSignatureError("Signature has expired")
        return claims

    @staticmethod
    def identity(claims: dict) -> Identity:
        return Identity(
            subject=claims["sub"], organization=claims.get("organization"),
            scopes=tuple(str(claims.get("scope", "")).split()),
            unrestricted=claims.get("unrestricted") is True,
        )


class Revocations:
    """Revoked token ids and revoked clients, as last loaded from the database."""

    def __init__(self, db: Database):
        self.db = db
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._tokens: frozenset[str] = frozenset()
        self._clients: frozenset[str] = frozenset()

    def fresh(self) -> bool:
        """Whether the next check needs no reload from the database."""
        return time.monotonic() - self._loaded_at <= REVOCATION_REFRESH_SECONDS

    def is_revoked(self, claims: dict) -> bool:
        if not self.fresh():
            self._reload()
        return claims["jti"] in self._tokens or claims["sub"] in self._clients

    def revoke_token(self, claims: dict) -> None:
        """Refuse this token from now on; also forgets revocations whose tokens have expired."""
        now = datetime.now(UTC).replace(tzinfo=None)
        expires = datetime.fromtimestamp(claims["exp"], UTC).replace(tzinfo=None)
        try:
            with self.db.write() as conn:
                conn.execute(delete(auth_revoked_token).where(auth_revoked_token.c.expires < now))
                conn.execute(auth_revoked_token.insert().values(
                    jti=claims["jti"], client_id=claims["sub"], expires=expires,
                ))
        except IntegrityError:
            pass  # revoked already
        self.changed()

    def changed(self) -> None:
        """Reload before the next check (a revocation was just written)."""
        self._loaded_at = float("-inf")

    def _reload(self) -> None:
        with self._lock:
            if time.monotonic() - self._loaded_at <= REVOCATION_REFRESH_SECONDS:
                return  # another thread has just reloaded
            with self.db.read() as conn:
                tokens = conn.execute(select(auth_revoked_token.c.jti)).scalars().all()
                clients = conn.execute(
                    select(auth_client.c.client_id).where(auth_client.c.revoked.is_not(None))
                ).scalars().all()
            self._tokens, self._clients = frozenset(tokens), frozenset(clients)
            self._loaded_at = time.monotonic()
