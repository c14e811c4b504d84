"""Turning an `Authorization` header into a Principal: static keys, stored keys, OIDC tokens.

The gateway has this one authenticator: with the security layer off it holds the static keys
only (`wave serve --api-key`, the config's api_keys), and no key at all leaves it open.

Every API key goes down one path whatever it is: hash it, look the digest up, compare the
digest found (or a dummy one) with `hmac.compare_digest`, compare it with every static key,
then test revoked/expired. An unknown, a revoked, an expired and a mistyped key all end in
the same AuthenticationError with the same message, after the same work, so neither the
answer nor its timing says whether a key exists.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

from wavefleet.errors import AuthenticationError
from wavefleet.gateway.security.keys import NO_LIMITS, KeyCache, KeyLimits, KeyRecord, digest_of
from wavefleet.gateway.security.oidc import OidcVerifier, looks_like_jwt
from wavefleet.gateway.security.principal import ANONYMOUS, Principal

__all__ = ["INVALID_KEY", "Authenticator", "bearer_token"]

INVALID_KEY = "invalid API key (or it was revoked or has expired)"
# stands in for the record of a key that does not exist: revoked, so it never matches
_DUMMY_RECORD = KeyRecord(
    key_id="",
    name="",
    digest=hashlib.sha256(b"wavefleet: no such key").digest(),
    models=frozenset(),
    expires_at=None,
    limits=NO_LIMITS,
    created_at=0.0,
    revoked_at=0.0,
)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when the header is absent,
    names another scheme, or carries no token. The scheme is matched in any case (RFC 7235)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class Authenticator:
    """Checks credentials; open (everyone is `anonymous`) when nothing is configured."""

    def __init__(
        self,
        *,
        static_keys: Iterable[str] = (),
        cache: KeyCache | None = None,
        oidc: OidcVerifier | None = None,
        static_limits: KeyLimits = NO_LIMITS,
    ) -> None:
        self._static = [digest_of(k) for k in static_keys if k]
        self._cache = cache
        self._oidc = oidc
        self._static_principal = Principal(ident="static", kind="static", models=None, limits=static_limits)
        self._principals: dict[bytes, tuple[KeyRecord, Principal]] = {}
        sources = [
            text
            for text, present in (
                ("the key `wave serve` was given", bool(self._static)),
                ("a key from `wave keys create`", cache is not None),
                ("a token from the OIDC issuer", oidc is not None),
            )
            if present
        ]
        self._missing = f"missing API key: send `Authorization: Bearer <key>` ({' or '.join(sources)})"

    @property
    def enabled(self) -> bool:
        return bool(self._static) or self._cache is not None or self._oidc is not None

    async def authenticate(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        token = bearer_token(authorization)
        if token is None:
            raise AuthenticationError(self._missing)
        if self._oidc is not None and looks_like_jwt(token):
            claims = await self._oidc.verify(token)
            return self._oidc.principal(claims)
        return self.check_key(token)

    def check_key(self, token: str) -> Principal:
        digest = digest_of(token)
        record = self._cache.lookup(digest) if self._cache is not None else None
        candidate = record if record is not None else _DUMMY_RECORD  # the same steps either way
        stored_match = hmac.compare_digest(candidate.digest, digest)
        usable = candidate.usable(time.time())
        static_match = False
        for static in self._static:  # every one, no early exit
            static_match |= hmac.compare_digest(static, digest)
        if stored_match and usable and record is not None:
            known = self._principals.get(digest)
            if known is None or known[0] is not record:  # first use, or the record was reloaded
                known = self._principals[digest] = (
                    record,
                    Principal(
                        ident=f"key:{record.key_id}", kind="key", models=record.models, limits=record.limits
                    ),
                )
            return known[1]
        if static_match:
            return self._static_principal
        raise AuthenticationError(INVALID_KEY)
