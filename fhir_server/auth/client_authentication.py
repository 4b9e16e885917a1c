"""How a client proves who it is at the token endpoint.

- ``client_secret_basic``: ``Authorization: Basic base64(client_id:secret)`` (RFC 6749 2.3.1,
  both parts form-urlencoded first);
- ``client_secret_post``: ``client_id`` and ``client_secret`` in the form;
- ``private_key_jwt`` (SMART Backend Services): ``client_assertion_type`` =
  ``urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and ``client_assertion``, a JWT
  signed with a key of the client's registered JWKS, with ``iss`` = ``sub`` = client id,
  ``aud`` = the token endpoint URL, ``exp`` at most five minutes ahead and a ``jti`` never
  used before (kept until it expires, so a replay is refused).

Every failure is the same 401 ``invalid_client`` whatever went wrong, so that an attacker
learns nothing about which clients exist; the log says more.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from datetime import UTC, datetime
from urllib.parse import unquote_plus

import jwt
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from fhir_server.auth.client_secrets import verify_secret
from fhir_server.auth.clients import Client, ClientRegistry
from fhir_server.auth.external import ALGORITHMS
from fhir_server.auth.oauth_errors import OAuthError, invalid_client
from fhir_server.auth.schema import auth_client_assertion

log = logging.getLogger(__name__)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# SMART Backend Services: an assertion expires no more than five minutes after it is made.
MAX_ASSERTION_SECONDS = 300
LEEWAY_SECONDS = 30


class ClientAuthentication:
    def __init__(self, clients: ClientRegistry):
        self.clients = clients

    def authenticate(self, form: dict[str, str], authorization: str | None, token_urls: list[str]) -> Client:
        """The active client the request proves itself to be; ``OAuthError`` otherwise."""
        if form.get("client_assertion") or form.get("client_assertion_type"):
            return self._by_assertion(form, token_urls)
        if authorization and authorization[:6].lower() == "basic ":
            client_id, secret = _basic_credentials(authorization[6:])
            return self._by_secret(client_id, secret, basic=True)
        if form.get("client_id") and form.get("client_secret"):
            return self._by_secret(form["client_id"], form["client_secret"], basic=False)
        raise invalid_client("The client did not authenticate (client_secret_basic, "
                             "client_secret_post or private_key_jwt)")

    def _by_secret(self, client_id: str, secret: str, basic: bool) -> Client:
        client = self.clients.get(client_id)
        matches = verify_secret(secret, client.secret_hash if client else None)
        if client is None or not matches or not client.active:
            log.warning("token request refused: bad client credentials")
            raise invalid_client("Client authentication failed", basic=basic)
        return client

    def _by_assertion(self, form: dict[str, str], token_urls: list[str]) -> Client:
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}, "
                             "with a client_assertion")
        assertion = form["client_assertion"]
        try:
            client_id = str(jwt.decode(assertion, options={"verify_signature": False}).get("iss", ""))
            client = self.clients.get(client_id)
            if client is None or not client.active or not client.jwks:
                raise jwt.InvalidTokenError("no active client with a JWKS has this id")
            if form.get("client_id") not in (None, client_id):
                raise jwt.InvalidTokenError("client_id differs from the assertion's issuer")
            claims = _verified_claims(assertion, client, token_urls)
            self._refuse_replay(client_id, claims)
        except jwt.PyJWTError as exc:
            log.warning("token request refused: bad client assertion (%s)", exc)
            raise invalid_client("Client authentication failed") from None
        return client

    def _refuse_replay(self, client_id: str, claims: dict) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        expires = datetime.fromtimestamp(claims["exp"], UTC).replace(tzinfo=None)
        try:
            with self.clients.db.write() as conn:
                conn.execute(delete(auth_client_assertion).where(auth_client_assertion.c.expires < now))
                conn.execute(auth_client_assertion.insert().values(
                    client_id=client_id, jti=str(claims["jti"])[:256], expires=expires,
                ))
        except IntegrityError:
            raise jwt.InvalidTokenError("the assertion's jti was used before") from None


def _verified_claims(assertion: str, client: Client, token_urls: list[str]) -> dict:
    header = jwt.get_unverified_header(assertion)
    if header.get("alg") not in ALGORITHMS:
        raise jwt.InvalidAlgorithmError(f"algorithm {header.get('alg')!r} is not accepted")
    keys = [k for k in jwt.PyJWKSet.from_dict(client.jwks).keys
            if header.get("kid") in (None, k.key_id)]
    for key in keys:
        try:
            claims = jwt.decode(
                assertion, key.key, algorithms=[header["alg"]], audience=token_urls,
                issuer=client.client_id, leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.InvalidSignatureError:
            continue
        if claims["sub"] != client.client_id:
            raise jwt.InvalidTokenError("sub differs from iss")
        if claims["exp"] > time.time() + MAX_ASSERTION_SECONDS + LEEWAY_SECONDS:
            raise jwt.InvalidTokenError("exp is more than five minutes ahead")
        return claims
    raise jwt.InvalidSignatureError("no key of the client's JWKS verifies the assertion")


def _basic_credentials(encoded: str) -> tuple[str, str]:
    try:
        client_id, colon, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_client("The Basic credentials are not base64 of client_id:secret", basic=True) from None
    if not colon:
        raise invalid_client("The Basic credentials are not base64 of client_id:secret", basic=True)
    return unquote_plus(client_id), unquote_plus(secret)
