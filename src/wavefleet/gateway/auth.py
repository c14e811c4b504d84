"""Static API keys: `Authorization: Bearer <key>` must match one of the configured keys.

With no key configured the gateway is open (and `wave serve` then binds loopback only).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from wavefleet.errors import AuthenticationError

__all__ = ["StaticKeyAuth"]


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
        header = headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise AuthenticationError(
                "missing API key: send `Authorization: Bearer <key>` (the key `wave serve` was given)"
            )
        given = header[7:].strip().encode()
        # compare against every key so the time taken does not say which one was close
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise AuthenticationError("invalid API key")
