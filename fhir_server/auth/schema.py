"""The authentication tables, on the one MetaData of ``fhir_server/storage/schema.py``.

- ``auth_client``: registered clients. A client authenticates with a secret (stored as a
  scrypt hash, never in clear) or with a signed assertion checked against its JWKS (SMART
  Backend Services); ``scopes`` are the most it may be granted, ``organization`` the
  ``Organization/<id>`` its tokens act for; an ``unrestricted`` client (county platform
  administration) is bound to no organisation and sees every organisation's data. A revoked
  client keeps its row (``revoked`` set).
- ``auth_revoked_token``: access tokens revoked before they expire, by ``jti``; a row can go
  once ``expires`` has passed.
- ``auth_client_assertion``: the ``jti`` of every client assertion already used, until it
  expires, so that an assertion cannot be replayed.
- ``auth_signing_key``: the server's token signing key, made on first start. One row
  (``slot`` = ``current``), so that processes starting together agree on one key.

Migration: ``storage/migrations/versions/0002_auth_clients.py`` (branch ``auth``).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, String, Table, Text

from fhir_server.storage.schema import metadata

auth_client = Table(
    "auth_client",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("organization", String(128), nullable=True),
    Column("unrestricted", Boolean, nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated
    Column("secret_hash", String(256), nullable=True),
    Column("jwks", Text, nullable=True),  # JSON Web Key Set, for private_key_jwt
    Column("created", DateTime, nullable=False),
    Column("revoked", DateTime, nullable=True),
)

auth_revoked_token = Table(
    "auth_revoked_token",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("expires", DateTime, nullable=False),
    Index("ix_auth_revoked_token_expires", "expires"),
)

auth_client_assertion = Table(
    "auth_client_assertion",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires", DateTime, nullable=False),
    Index("ix_auth_client_assertion_expires", "expires"),
)

auth_signing_key = Table(
    "auth_signing_key",
    metadata,
    Column("slot", String(16), primary_key=True),
    Column("kid", String(64), nullable=False),
    Column("private_key", Text, nullable=False),  # PEM (PKCS#8)
    Column("created", DateTime, nullable=False),
)
