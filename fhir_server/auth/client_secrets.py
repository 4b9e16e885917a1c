"""Client secrets: made at random, stored only as a scrypt hash, checked in constant time.

scrypt (RFC 7914, in ``hashlib``) is slow and memory-hard on purpose, so that a copy of the
``auth_client`` table does not yield the secrets. The stored form names its parameters
(``scrypt$n$r$p$salt$hash``), so that they can be raised later without breaking old hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# 16 MiB and some 50 ms per check: paid once per token request, not per API request.
_N, _R, _P = 2**14, 8, 1
_LENGTH = 32


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str | None) -> bool:
    """Whether ``secret`` matches ``stored``. Without a stored hash a dummy hash is still
    computed, so that the answer takes as long for an unknown client as for a known one."""
    if not stored:
        _scrypt(secret, b"\0" * 16, _N, _R, _P)
        return False
    name, n, r, p, salt, digest = stored.split("$")
    if name != "scrypt":
        return False
    computed = _scrypt(secret, _unb64(salt), int(n), int(r), int(p))
    return hmac.compare_digest(computed, _unb64(digest))


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=_LENGTH, maxmem=64 * 1024 * 1024)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
