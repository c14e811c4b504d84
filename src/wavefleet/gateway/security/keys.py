"""API keys: made here, stored only as SHA-256 digests, checked against an in-memory cache.

A key looks like `wave-3f9a0c1d_<43 characters>`: the `wave-` prefix, a short public key id
(shown by `wave keys list`, recorded in the audit trail) and 32 random bytes from `secrets`.
Only `sha256(key)` is stored. Because the key carries 256 bits of entropy a plain hash is
enough (a slow password hash guards low-entropy secrets, which these are not), and a lookup is
one hash and one dict access, cheap enough for every request.

    store = KeyStore(connect(path))
    created = store.create("laptop", models=["llama-3.1-8b"], limits=KeyLimits(rpm=60))
    print(created.secret)                   # shown once, never stored
    cache = KeyCache(store); cache.refresh()
    record = cache.lookup(digest_of(created.secret))
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import sqlite3
import time
from dataclasses import dataclass, field

from wavefleet.errors import UsageError

__all__ = [
    "KEY_PREFIX",
    "CreatedKey",
    "KeyCache",
    "KeyLimits",
    "KeyRecord",
    "KeyStore",
    "NO_LIMITS",
    "digest_of",
    "estimated_bits",
    "new_key",
]

KEY_PREFIX = "wave-"
_MIN_IMPORTED_BITS = 128
# Printable ASCII without the space, in four classes: what a key can be made of and still travel
# in an `Authorization: Bearer` header unchanged.
_CLASSES = (
    frozenset("abcdefghijklmnopqrstuvwxyz"),
    frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    frozenset("0123456789"),
    frozenset(chr(code) for code in range(0x21, 0x7F) if not chr(code).isalnum()),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyLimits:
    """Per-key limits; None means no limit of that kind."""

    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens (prompt + completion) a minute: reserved, then settled from usage
    max_concurrent: int | None = None
    max_tokens: int | None = None  # cap on a request's max_tokens times n (more is refused)

    @property
    def any(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.max_concurrent is not None


NO_LIMITS = KeyLimits()


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    key_id: str
    name: str
    digest: bytes
    models: frozenset[str] | None  # None: every model
    expires_at: float | None
    limits: KeyLimits
    created_at: float
    revoked_at: float | None = None

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True)
class CreatedKey:
    record: KeyRecord
    secret: str = field(repr=False)


def digest_of(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def estimated_bits(secret: str) -> float:
    """An estimate of a key's entropy in bits, to refuse weak imported keys.

    Each character counts log2 of the alphabet made of the character classes the key uses (lower
    case 26, upper case 26, digits 10, other printable ASCII 32), as if drawn at random from it,
    except a character that extends a run of three (`aaaa`, `abcd`, `dcba`) or completes a
    four-character sequence already seen (`abcdabcd`), which counts nothing. A random key scores
    about its true entropy or a little above (hex counts as 36 symbols, not 16), and chance
    patterns that long are too rare in one to matter; patterns and repetition score far less.
    Words are not recognised: a long string of words can pass.
    """
    alphabet = sum(len(chars) for chars in _CLASSES if any(c in chars for c in secret))
    if alphabet < 2:
        return 0.0
    seen: set[str] = set()
    counted = 0
    for at in range(len(secret)):
        if at >= 3:
            last4 = secret[at - 3 : at + 1]
            steps = {ord(b) - ord(a) for a, b in zip(last4, last4[1:], strict=False)}
            repeated = last4 in seen
            seen.add(last4)
            if repeated or (len(steps) == 1 and abs(next(iter(steps))) <= 1):
                continue
        counted += 1
    return counted * math.log2(alphabet)


def new_key() -> tuple[str, str]:
    """(key id, secret): 32 random bytes behind the prefix and an 8-hex-digit id."""
    key_id = secrets.token_hex(4)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def _record(row: sqlite3.Row | tuple[object, ...]) -> KeyRecord:
    key_id, name, digest, models, expires_at, rpm, tpm, conc, max_tokens, created_at, revoked_at = row
    return KeyRecord(
        key_id=str(key_id),
        name=str(name),
        digest=bytes.fromhex(str(digest)),
        models=frozenset(json.loads(str(models))) if models is not None else None,
        expires_at=float(expires_at) if isinstance(expires_at, int | float) else None,
        limits=KeyLimits(
            rpm=rpm if isinstance(rpm, int) else None,
            tpm=tpm if isinstance(tpm, int) else None,
            max_concurrent=conc if isinstance(conc, int) else None,
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        ),
        created_at=float(created_at),  # type: ignore[arg-type]
        revoked_at=float(revoked_at) if isinstance(revoked_at, int | float) else None,
    )


_COLUMNS = (
    "key_id, name, digest, models, expires_at, rpm, tpm, max_concurrent, max_tokens, created_at, revoked_at"
)


class KeyStore:
    """The api_keys table: create, import, list, revoke. Never holds a secret, only digests."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def create(
        self,
        name: str,
        *,
        models: list[str] | None = None,
        expires_at: float | None = None,
        limits: KeyLimits = NO_LIMITS,
    ) -> CreatedKey:
        key_id, secret = new_key()
        return CreatedKey(self._insert(key_id, name, secret, models, expires_at, limits), secret)

    def import_secret(
        self,
        name: str,
        secret: str,
        *,
        models: list[str] | None = None,
        expires_at: float | None = None,
        limits: KeyLimits = NO_LIMITS,
    ) -> KeyRecord:
        """Store the digest of a key made elsewhere (one kept in Vault, say).

        The key must be printable ASCII without spaces, and its estimated entropy
        (`estimated_bits`) at least 128 bits: the digest is a plain SHA-256, safe only for keys
        that cannot be guessed."""
        if not all("!" <= char <= "~" for char in secret):
            raise UsageError(
                "an imported key must be printable ASCII without spaces or control characters "
                "(it travels in an HTTP Authorization header); make one with `wave keys create "
                "--name NAME`, or `openssl rand -base64 32` and import that"
            )
        bits = estimated_bits(secret)
        if bits < _MIN_IMPORTED_BITS:
            raise UsageError(
                f"this key is too weak to import: about {bits:.0f} bits by estimate, and an imported "
                f"key needs at least {_MIN_IMPORTED_BITS} bits (the estimate counts each character "
                "by the character classes the key uses, and nothing for runs and repeats such as "
                "aaaa, abcd or abcdabcd). Make a strong key with `wave keys create --name NAME` (256 "
                "bits), or `openssl rand -base64 32` (256 bits) and import that"
            )
        return self._insert(secrets.token_hex(4), name, secret, models, expires_at, limits)

    def _insert(
        self,
        key_id: str,
        name: str,
        secret: str,
        models: list[str] | None,
        expires_at: float | None,
        limits: KeyLimits,
    ) -> KeyRecord:
        if not name.strip():
            raise UsageError("a key needs a name (what or who it is for), e.g. --name laptop")
        for label, value in (
            ("rpm", limits.rpm),
            ("tpm", limits.tpm),
            ("max-concurrent", limits.max_concurrent),
            ("max-tokens", limits.max_tokens),
        ):
            if value is not None and value < 1:
                raise UsageError(f"--{label} must be at least 1 (leave it out for no limit)")
        now = time.time()
        record = KeyRecord(
            key_id=key_id,
            name=name,
            digest=digest_of(secret),
            models=frozenset(models) if models is not None else None,
            expires_at=expires_at,
            limits=limits,
            created_at=now,
        )
        try:
            self._db.execute(
                f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    key_id,
                    name,
                    record.digest.hex(),
                    json.dumps(sorted(models)) if models is not None else None,
                    expires_at,
                    limits.rpm,
                    limits.tpm,
                    limits.max_concurrent,
                    limits.max_tokens,
                    now,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise UsageError("that key is already stored (same digest); make a new one") from exc
        return record

    def list(self, *, include_revoked: bool = False) -> list[KeyRecord]:
        sql = f"SELECT {_COLUMNS} FROM api_keys"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        return [_record(row) for row in self._db.execute(sql + " ORDER BY created_at")]

    def revoke(self, key_id_or_name: str) -> KeyRecord:
        """Revoke one key by id (or by name, when exactly one live key has it)."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE revoked_at IS NULL AND (key_id = ? OR name = ?)",
            (key_id_or_name, key_id_or_name),
        ).fetchall()
        if not rows:
            known = [r.key_id for r in self.list()]
            hint = f"; live keys: {', '.join(known)}" if known else "; there are no live keys"
            raise UsageError(f"no live key with id or name {key_id_or_name!r}{hint} (`wave keys list`)")
        if len(rows) > 1:
            ids = ", ".join(str(r[0]) for r in rows)
            raise UsageError(f"{len(rows)} live keys are named {key_id_or_name!r} ({ids}): revoke by id")
        record = _record(rows[0])
        self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ?", (time.time(), record.key_id))
        return record

    def all_by_digest(self) -> dict[bytes, KeyRecord]:
        """Every key, revoked ones included (they are refused on the same path as unknown ones)."""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM api_keys")
        return {rec.digest: rec for rec in map(_record, rows)}

    def version(self) -> int:
        """Changes whenever another connection commits (PRAGMA data_version): a cheap staleness test."""
        row = self._db.execute("PRAGMA data_version").fetchone()
        return int(row[0])


class KeyCache:
    """digest -> KeyRecord in memory, reloaded when the database changed.

    `refresh()` does the SQLite work and is meant for a background thread (KeyRefresher or
    asyncio.to_thread); `lookup()` is a dict access and never touches SQLite.
    """

    def __init__(self, store: KeyStore) -> None:
        self._store = store
        self._by_digest: dict[bytes, KeyRecord] = {}
        self._version: int | None = None

    def refresh(self) -> bool:
        """Reload if the database changed since the last load; True if it reloaded."""
        version = self._store.version()
        if version == self._version:
            return False
        table = self._store.all_by_digest()
        self._by_digest = table  # one reference swap: readers see the old table or the new one
        self._version = version
        return True

    def force_refresh(self) -> None:
        self._version = None
        self.refresh()

    def lookup(self, digest: bytes) -> KeyRecord | None:
        return self._by_digest.get(digest)

    def __len__(self) -> int:
        return len(self._by_digest)
