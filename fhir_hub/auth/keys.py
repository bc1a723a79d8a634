"""The server's signing keys and the JWTs it signs (joserfc, the JOSE library of authlib's author).

An RSA key is made at the first start and kept in the store's file (``auth_keys``); the JWKS
lists every stored key, so a key added later (rotation) verifies alongside the old ones while
new tokens are signed with the newest. RS256: the algorithm every SMART client can verify.

Each kind of JWT the server signs has its own ``typ`` header, so one kind cannot stand in for
another (an access token is ``at+jwt``, RFC 9068; the login form's state another type).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

from fhir_hub.auth.storage import AuthStore

ALG = "RS256"
ACCESS_TYP = "at+jwt"


class InvalidToken(Exception):
    """A JWT this server did not sign, or signed for another purpose, or that expired."""


class Keys:
    def __init__(self, store: AuthStore):
        stored = store.keys()
        if not stored:
            key = RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex, "alg": ALG, "use": "sig"})
            store.add_key_if_none(str(key.kid), ALG, key.as_dict(private=True))
            stored = store.keys()
        self._keys = [RSAKey.import_key(jwk) for _, _, jwk in stored]
        self._signing = self._keys[0]
        self._set = KeySet(list(self._keys))  # type: ignore[arg-type]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**k.as_dict(private=False), "alg": ALG, "use": "sig"} for k in self._keys]}

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        return jwt.encode({"alg": ALG, "kid": self._signing.kid, "typ": typ}, claims, self._signing, algorithms=[ALG])

    def verify(self, token: str, typ: str, now: float | None = None) -> dict[str, Any]:
        """The claims of a token of kind ``typ`` signed by one of our keys and not expired."""
        try:
            decoded = jwt.decode(token, self._set, algorithms=[ALG])
        except (JoseError, ValueError) as exc:
            raise InvalidToken(f"the token is not one this server signed ({type(exc).__name__})") from None
        if decoded.header.get("typ") != typ:
            raise InvalidToken("the token is not of the expected kind")
        claims = decoded.claims
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= (time.time() if now is None else now):
            raise InvalidToken("the token has expired")
        return claims


__all__ = ["ACCESS_TYP", "ALG", "InvalidToken", "Keys"]
