"""OIDC bearer tokens (from Authentik, Keycloak, ...), checked against the issuer's published keys.

The verifier reads the issuer's discovery document (`<issuer>/.well-known/openid-configuration`),
follows its `jwks_uri`, and keeps the keys in memory. A token is accepted only if its signature
verifies with one of them under an allowed algorithm (RS256/ES256 by default, never `none` or
HS*), and its `iss`, `aud`, `exp` (and `nbf`, when present) check out, within `leeway_s` of
clock skew.

The issuer is asked again in two cases: the keys are older than `jwks_ttl_s`, or a token names a
`kid` the verifier does not hold (the issuer rotated its keys). Either way there is at most one
fetch in flight (concurrent callers share it) and at most one attempt, failed or not, per
`refresh_min_interval_s`. A token whose `kid` is known never waits on the issuer: stale keys are
refreshed in the background while the keys held keep verifying, until they are `jwks_max_age_s`
old (a day by default); past that, tokens are refused until the issuer answers. Only a token
with an unknown `kid` waits for a refetch. A token that is not a JWT, or names an algorithm that
is not accepted, is refused before the issuer is asked anything.

    verifier = OidcVerifier(OidcConfig(issuer="https://auth.home/application/o/wave/", audience="wave"))
    await verifier.start()
    claims = await verifier.verify(token)       # AuthenticationError if anything is off
    principal = verifier.principal(claims)      # models from the `groups` claim
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt

from wavefleet.errors import AuthenticationError, UsageError
from wavefleet.gateway.addresses import is_loopback
from wavefleet.gateway.security.keys import KeyLimits
from wavefleet.gateway.security.principal import Principal
from wavefleet.gateway.security.settings import OidcConfig

__all__ = ["OidcVerifier", "looks_like_jwt"]

_LOG = logging.getLogger(__name__)

_TOKEN_CACHE_MAX = 4096
_TOKEN_CACHE_S = 60.0  # a verified token is re-checked (signature, keys) at least this often


def looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


class OidcVerifier:
    def __init__(
        self,
        config: OidcConfig,
        session: aiohttp.ClientSession | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for alg in config.algorithms:
            if alg.upper().startswith("HS") or alg.lower() == "none":
                raise UsageError(
                    f"OIDC algorithm {alg!r} is not allowed: use the issuer's public-key algorithms (RS256, ES256)"
                )
        self.config = config
        self._session = session
        self._clock = clock  # monotonic seconds: key ages and refetch spacing
        self._own_session = session is None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")  # last successful fetch
        self._attempted_at = float("-inf")  # last fetch started, whatever came of it
        self._refresh: asyncio.Task[None] | None = None
        self._tokens: dict[str, tuple[dict[str, Any], float]] = {}
        self._group_models = {group: frozenset(models) for group, models in config.group_models.items()}
        lim = config.limits
        self._limits = KeyLimits(
            rpm=lim.get("rpm"),
            tpm=lim.get("tpm"),
            max_concurrent=lim.get("max_concurrent"),
            max_tokens=lim.get("max_tokens"),
        )
        self.fetches = 0  # how many times the keys were fetched (for /health and tests)

    async def start(self) -> None:
        """Fetch the keys once; UsageError if the issuer cannot be reached or answers nonsense."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.http_timeout_s)
            )
        self._attempted_at = self._clock()
        try:
            await self._fetch_keys()
        except AuthenticationError as exc:
            raise UsageError(f"OIDC issuer {self.config.issuer}: {exc.message}") from exc

    async def aclose(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)
        if self._own_session and self._session is not None:
            await self._session.close()

    def _check_url(self, url: str, what: str) -> None:
        if not url.startswith("https://") and not (
            url.startswith("http://") and is_loopback(urlsplit(url).hostname or "")
        ):
            raise AuthenticationError(f"the {what} {url!r} must be https (plain http only on loopback)")

    async def _get_json(self, url: str) -> dict[str, Any]:
        assert self._session is not None, "call start() first"
        try:
            async with self._session.get(
                url, timeout=aiohttp.ClientTimeout(total=self.config.http_timeout_s)
            ) as reply:
                if reply.status != 200:
                    raise AuthenticationError(f"{url} answered {reply.status}")
                data = await reply.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise AuthenticationError(f"cannot read {url}: {exc}") from exc
        if not isinstance(data, dict):
            raise AuthenticationError(f"{url} did not answer a JSON object")
        return data

    async def _fetch_keys(self) -> None:
        issuer = self.config.issuer
        discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        self._check_url(discovery_url, "discovery document")
        discovery = await self._get_json(discovery_url)
        if discovery.get("issuer") != issuer:
            raise AuthenticationError(
                f"the discovery document names issuer {discovery.get('issuer')!r}, not {issuer!r}; "
                "set the issuer exactly as the identity provider publishes it (mind the trailing slash)"
            )
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise AuthenticationError("the discovery document has no jwks_uri")
        self._check_url(jwks_uri, "jwks_uri")
        document = await self._get_json(jwks_uri)
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise AuthenticationError(f"{jwks_uri} has no `keys` list")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or "kid" not in entry:
                continue
            try:
                keys[str(entry["kid"])] = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type or curve we cannot use; others may still be fine
        self._keys = keys
        self._fetched_at = self._clock()
        self.fetches += 1

    def _start_refresh(self) -> asyncio.Task[None] | None:
        """The fetch in flight, else a new one if the last attempt is far enough back, else None."""
        if self._refresh is not None and not self._refresh.done():
            return self._refresh
        if self._clock() - self._attempted_at < self.config.refresh_min_interval_s:
            return None
        self._attempted_at = self._clock()
        self._refresh = asyncio.get_running_loop().create_task(self._refetch())
        return self._refresh

    async def _refetch(self) -> None:
        try:
            await self._fetch_keys()
        except AuthenticationError as exc:
            # the keys held stay in use: an issuer that is briefly down must not lock everyone out
            _LOG.warning(
                "OIDC issuer %s: cannot refresh its keys (%s); next attempt in %g s at the earliest",
                self.config.issuer,
                exc.message,
                self.config.refresh_min_interval_s,
            )

    def _too_old(self) -> bool:
        return self._clock() - self._fetched_at > self.config.jwks_max_age_s

    async def _key_after_refetch(self, kid: str) -> jwt.PyJWK:
        """The key named `kid` once a refetch (shared, rate-limited) is done; only unknown kids wait."""
        task = self._start_refresh()
        if task is not None:
            await asyncio.shield(task)  # the caller going away must not cancel everyone's fetch
        if self._too_old():
            # why the issuer fails goes to the log only: its error may name internal addresses
            raise AuthenticationError(
                "the OIDC issuer's signing keys could not be refreshed for over "
                f"{self.config.jwks_max_age_s:g} s, so no token can be checked until the issuer "
                "answers again (the gateway's log says why it does not)"
            )
        key = self._keys.get(kid)
        if key is None:
            raise AuthenticationError("invalid bearer token: signed with a key the issuer does not publish")
        return key

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, if it is valid now; AuthenticationError saying why not."""
        now = time.time()
        cached = self._tokens.get(token)
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            del self._tokens[token]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthenticationError("invalid bearer token: not a well-formed JWT") from exc
        alg = header.get("alg")
        if alg not in self.config.algorithms:
            raise AuthenticationError(f"invalid bearer token: algorithm {alg!r} is not accepted")
        kid = str(header.get("kid", ""))
        if self._clock() - self._fetched_at > self.config.jwks_ttl_s:
            self._start_refresh()  # in the background: the keys held verify this token meanwhile
        key = None if self._too_old() else self._keys.get(kid)
        if key is None:
            key = await self._key_after_refetch(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=self.config.algorithms,
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationError("invalid bearer token: expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthenticationError("invalid bearer token: not valid yet (nbf/iat in the future)") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthenticationError("invalid bearer token: issued for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthenticationError("invalid bearer token: from another issuer") from exc
        except jwt.PyJWTError as exc:
            raise AuthenticationError(
                "invalid bearer token: its signature or claims do not check out"
            ) from exc
        if len(self._tokens) >= _TOKEN_CACHE_MAX:
            self._tokens.clear()
        self._tokens[token] = (claims, min(float(claims["exp"]) + self.config.leeway_s, now + _TOKEN_CACHE_S))
        return claims

    def principal(self, claims: dict[str, Any]) -> Principal:
        """The principal for verified claims: models from the configured claim's values."""
        models: frozenset[str] | None = None
        if self._group_models:
            raw = claims.get(self.config.models_claim)
            values = (
                raw.split()
                if isinstance(raw, str)
                else [str(v) for v in raw]
                if isinstance(raw, list)
                else []
            )
            allowed: set[str] = set()
            for value in values:
                allowed |= self._group_models.get(value, frozenset())
            models = frozenset(allowed)
        return Principal(ident=f"oidc:{claims['sub']}", kind="oidc", models=models, limits=self._limits)
