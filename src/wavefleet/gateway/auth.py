"""Static API keys: `Authorization: Bearer <key>` must match one of the configured keys.

With no key configured the gateway is open (and `wave serve` then binds loopback only).
`bearer_token` reads the header for this check and for the security layer's authenticator.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from wavefleet.errors import AuthenticationError

__all__ = ["StaticKeyAuth", "bearer_token"]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when the header is absent,
    names another scheme, or carries no token. The scheme is matched in any case (RFC 7235)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class StaticKeyAuth:
    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [k.encode() for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, headers: Mapping[str, str]) -> None:
        """Raise AuthenticationError (401) unless the headers carry a known key."""
        if not self._keys:
            return
        token = bearer_token(headers.get("Authorization"))
        if token is None:
            raise AuthenticationError(
                "missing API key: send `Authorization: Bearer <key>` (the key `wave serve` was given)"
            )
        given = token.encode()
        # compare against every key so the time taken does not say which one was close
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise AuthenticationError("invalid API key")
