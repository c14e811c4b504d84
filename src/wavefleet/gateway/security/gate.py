"""The security layer as one object the gateway calls: who is asking, may they, and a record of it.

    gate = SecurityGate.build(config.security, static_keys)
    await gate.start()
    principal = await gate.authenticate(request.headers.get("Authorization"))
    admission = await gate.admit(principal, "chat/completions", payload)   # 403/400/429 raise
    ...                                                                   # forward the request
    await gate.finish(admission, 20)                  # settle: 20 tokens used, the rest refunded
    await gate.aclose()

Nothing here touches SQLite on the request path: keys come from an in-memory cache that a
background thread refreshes, and audit rows go to a queue that a writer thread drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wavefleet.errors import BadRequestError, PermissionDeniedError
from wavefleet.extras import require
from wavefleet.gateway.security.audit import AuditRecord, AuditWriter
from wavefleet.gateway.security.authn import Authenticator
from wavefleet.gateway.security.db import connect, resolve_db_path
from wavefleet.gateway.security.keys import KeyCache, KeyLimits, KeyStore
from wavefleet.gateway.security.limits import LocalLimiter, RateLimiter, Ticket
from wavefleet.gateway.security.oidc import OidcVerifier
from wavefleet.gateway.security.principal import Principal
from wavefleet.gateway.security.screening import CLEAN, Screener, Verdict, prompt_texts
from wavefleet.gateway.security.settings import SecurityConfig

__all__ = ["CHARS_PER_TOKEN", "DEFAULT_COMPLETION_RESERVE", "Admission", "SecurityGate", "reserve_tokens"]

CHARS_PER_TOKEN = 4  # the gateway's prompt estimate everywhere: no tokenizer (see api.estimate_prompt)
DEFAULT_COMPLETION_RESERVE = 512  # per choice, for a request that names no max_tokens under a key with no cap
_COMPLETION_FIELDS = ("max_tokens", "max_completion_tokens")
_PROMPT_PARAM = {"chat/completions": "messages", "completions": "prompt", "embeddings": "input"}


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _asked(payload: dict[str, Any]) -> tuple[str, int] | None:
    """The completion length the request names (the larger, when it names both fields)."""
    named = [(v, name) for name in _COMPLETION_FIELDS if (v := _count(payload.get(name))) is not None]
    if not named:
        return None
    value, name = max(named)
    return name, max(0, value)


def _choices(endpoint: str, payload: dict[str, Any]) -> int:
    """How many completions the engine generates: `n`, or `best_of` for /v1/completions when larger."""
    n = _count(payload.get("n")) or 1
    if endpoint == "completions":
        n = max(n, _count(payload.get("best_of")) or 1)
    return max(1, n)


def reserve_tokens(endpoint: str, payload: dict[str, Any], texts: Iterable[str], limits: KeyLimits) -> int:
    """Tokens to reserve for a request under `limits.tpm`: its prompt estimate (`texts` at 4
    characters a token) plus, per choice, its max_tokens, or the key's cap, or 512 when it names
    none. A request that can never fit the tpm is refused (400); a default that does not fit is
    cut to the tpm, since it is only a guess and the real usage is settled at the end."""
    tpm = limits.tpm
    if tpm is None:
        return 0
    prompt = sum(len(t) for t in texts) // CHARS_PER_TOKEN
    if prompt > tpm:
        raise BadRequestError(
            f"the prompt is about {prompt} tokens (at {CHARS_PER_TOKEN} characters a token); this key allows "
            f"{tpm} tokens per minute: shorten the prompt",
            param=_PROMPT_PARAM.get(endpoint),
        )
    if endpoint == "embeddings":
        return prompt
    choices = _choices(endpoint, payload)
    asked = _asked(payload)
    if asked is not None:
        name, each = asked
        total = prompt + each * choices
        if total > tpm:
            per_choice = f" for each of {choices} choices" if choices > 1 else ""
            raise BadRequestError(
                f"this request may use {total} tokens (a prompt of about {prompt} plus `{name}` {each}"
                f"{per_choice}); this key allows {tpm} tokens per minute: lower `{name}`",
                param=name,
            )
        return total
    each = limits.max_tokens if limits.max_tokens is not None else DEFAULT_COMPLETION_RESERVE
    return min(tpm, prompt + each * choices)


@dataclass(kw_only=True, slots=True)
class Admission:
    """One admitted request: what the finish step needs to release limits and write the audit row."""

    principal: Principal
    model: str | None = None
    ticket: Ticket | None = None
    verdict: Verdict = CLEAN
    prompt: str | None = None


class SecurityGate:
    def __init__(
        self,
        *,
        authenticator: Authenticator,
        limiter: RateLimiter,
        screener: Screener,
        audit: AuditWriter | None = None,
        key_cache: KeyCache | None = None,
        keys_refresh_s: float = 1.0,
        oidc: OidcVerifier | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.screener = screener
        self.audit = audit
        self._cache = key_cache
        self._oidc = oidc
        self._refresh_s = keys_refresh_s
        self._refresher: asyncio.Task[None] | None = None

    @classmethod
    def build(cls, config: SecurityConfig, static_keys: Iterable[str] = ()) -> SecurityGate:
        """Everything from the config: the key cache (loaded now), the audit writer, the limiter."""
        cache = None
        if config.db is not None:
            cache = KeyCache(KeyStore(connect(config.db.expanduser())))
            cache.refresh()
        audit = None
        if config.audit:
            path = config.audit_db or config.db or resolve_db_path(None)  # None: where `wave audit` reads
            audit = AuditWriter(
                path.expanduser(),
                interval_s=config.audit_interval_s,
                prompts=config.audit_prompts,
                max_pending=config.audit_max_pending,
            )
        limiter: RateLimiter
        if config.redis_url:
            require("redis", needed_by="--redis-url (limits shared through Redis)")
            from wavefleet.gateway.security.limits_redis import RedisLimiter

            limiter = RedisLimiter(config.redis_url)
        else:
            limiter = LocalLimiter()
        oidc = OidcVerifier(config.oidc) if config.oidc is not None else None
        sl = config.static_limits
        authenticator = Authenticator(
            static_keys=static_keys,
            cache=cache,
            oidc=oidc,
            static_limits=KeyLimits(
                rpm=sl.rpm, tpm=sl.tpm, max_concurrent=sl.max_concurrent, max_tokens=sl.max_tokens
            ),
        )
        return cls(
            authenticator=authenticator,
            limiter=limiter,
            screener=Screener(config.screening),
            audit=audit,
            key_cache=cache,
            keys_refresh_s=config.keys_refresh_s,
            oidc=oidc,
        )

    @property
    def auth_enabled(self) -> bool:
        return self.authenticator.enabled

    async def start(self) -> None:
        if self._oidc is not None:
            await self._oidc.start()
        if self.audit is not None:
            self.audit.start()
        if self._cache is not None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_keys())

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self._oidc is not None:
            await self._oidc.aclose()
        await self.limiter.aclose()
        if self.audit is not None:
            await asyncio.to_thread(self.audit.close)

    async def _refresh_keys(self) -> None:
        """Reload keys when the database changed: a revoked key stops working within keys_refresh_s."""
        assert self._cache is not None
        while True:
            await asyncio.sleep(self._refresh_s)
            with contextlib.suppress(Exception):  # a locked database now is fine: try again next time
                await asyncio.to_thread(self._cache.refresh)

    async def authenticate(self, authorization: str | None) -> Principal:
        return await self.authenticator.authenticate(authorization)

    async def admit(self, principal: Principal, endpoint: str, payload: dict[str, Any]) -> Admission:
        """Check model, max_tokens cap (times `n`), the tokens it may use against the tpm, screening,
        then limits (last, so a refused request costs no quota); the ticket holds what it reserved."""
        admission = self.admission(principal, payload)
        await self.check(admission, endpoint, payload)
        return admission

    @staticmethod
    def admission(principal: Principal, payload: dict[str, Any]) -> Admission:
        model = payload.get("model")
        return Admission(principal=principal, model=model if isinstance(model, str) else None)

    async def check(self, admission: Admission, endpoint: str, payload: dict[str, Any]) -> None:
        """Fill `admission` (verdict, ticket) or raise; the verdict is set even when the request is refused."""
        principal = admission.principal
        if admission.model is not None and not principal.may_use(admission.model):
            raise PermissionDeniedError(
                f"this key may not use model {admission.model!r}; it may use: "
                f"{', '.join(sorted(principal.models or ())) or 'no models'}",
                param="model",
            )
        limits = principal.limits
        cap = limits.max_tokens
        if cap is not None:
            choices = _choices(endpoint, payload)
            for name in _COMPLETION_FIELDS:
                asked = _count(payload.get(name))
                if asked is not None and asked * choices > cap:
                    each = f" for each of {choices} choices ({asked * choices} tokens)" if choices > 1 else ""
                    raise BadRequestError(
                        f"`{name}` is {asked}{each}; this key allows at most {cap}", param=name
                    )
        screen = self.screener.enabled or (self.audit is not None and self.audit.prompts)
        texts = list(prompt_texts(endpoint, payload)) if screen or limits.tpm is not None else []
        reserve = reserve_tokens(endpoint, payload, texts, limits)
        if screen:
            admission.verdict = self.screener.screen(texts)
            if self.audit is not None and self.audit.prompts:
                admission.prompt = "\n".join(texts)
            if admission.verdict.blocked is not None:
                raise self.screener.refuse(admission.verdict)
        if limits.any:
            admission.ticket = await self.limiter.admit(principal.ident, limits, reserve=reserve)

    async def finish(self, admission: Admission | None, tokens: int | None) -> None:
        """Release the request's concurrency slot and settle its tokens: charge `tokens` in place
        of what was reserved at admission, or keep the reservation when `tokens` is None (an engine
        worked on the request but its usage is unknown)."""
        if admission is not None and admission.ticket is not None:
            await self.limiter.finish(admission.ticket, tokens)

    def record(self, row: AuditRecord) -> None:
        if self.audit is not None:
            self.audit.record(row)

    @staticmethod
    def now() -> float:
        return time.time()
