"""Gateway keys: issued to a tenant, presented on every request, stored only as a hash.

A key reads `cg_<key_id>_<secret>`: `key_id` is 12 lowercase hex characters that name the key in
listings, logs and `costgate keys revoke`; `secret` is `secrets.token_urlsafe(32)` (256 random bits).
The store keeps sha256(whole key) and never the key itself. A slow password KDF (bcrypt, scrypt,
argon2) exists to protect low-entropy secrets against guessing; a 256-bit random secret cannot be
guessed, so one sha256 is enough and keeps authentication to a hash and a key lookup. For the same
reason looking the hash up in the table leaks nothing a timing attack could use.

`authenticate` keeps the keys it found in a warm-container cache for at most 30 seconds (by the
injected clock): a revoked key stops working within 30 s in every warm Lambda container. Lookups
that find nothing are not cached, so a key works as soon as `costgate keys create` has printed it.
"""

import hashlib
import re
import secrets
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from costgate.errors import AuthenticationError, InvalidRequestError, NotFoundError
from costgate.gateway.model import GatewayKey
from costgate.gateway.ports import KeyStore
from costgate.observability import logger

KEY_PREFIX = "cg"
CACHE_TTL = timedelta(seconds=30)
_KEY_ID = re.compile(r"[0-9a-f]{12}")
# token_urlsafe(32): 32 bytes in unpadded base64url, 43 characters; '_' may occur inside the secret.
_API_KEY = re.compile(r"cg_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})")
_BEARER = "bearer"
# DynamoDB numbers hold at most 38 significant digits.


MISSING_KEY_MESSAGE = "missing API key: send it as x-api-key or Authorization: Bearer"
INVALID_KEY_MESSAGE = "invalid API key"  # never echoes the key, not even part of it
REVOKED_KEY_MESSAGE = "API key has been revoked"


def hash_key(api_key: str) -> str:
    """The stored form of a key: sha256 of the whole key, as 64 lowercase hex characters."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """(key_id, api_key) for a fresh key: `cg_<12 hex>_<token_urlsafe(32)>`."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries: `x-api-key`, else `Authorization: Bearer <key>`; None if neither.

    Header names must already be lower case. An empty value counts as absent, as does an
    Authorization header with another scheme (Basic, …). The Bearer scheme is case-insensitive.
    """
    api_key = headers.get("x-api-key", "").strip()
    if api_key:
        return api_key
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != _BEARER:
        return None
    return token.strip() or None


def issue_key(
    store: KeyStore,
    *,
    tenant: str,
    feature: str | None = None,
    daily_budget_usd: Decimal | None = None,
    monthly_budget_usd: Decimal | None = None,
    now: datetime,
) -> tuple[str, GatewayKey]:
    """Create a key for the tenant; returns (the plaintext key, to be shown once, and the stored key)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    key_id, api_key = new_api_key()
    key = GatewayKey(
        key_id=key_id,
        tenant=tenant,
        feature=feature,
        daily_budget_usd=daily_budget_usd,
        monthly_budget_usd=monthly_budget_usd,
        created_at=now.astimezone(UTC),
    )
    store.create(key, hash_key(api_key))
    logger.info("keys: key issued", extra={"key_id": key_id, "tenant": tenant})
    return api_key, key


class KeyCache:
    """Keys found by hash, each kept for CACHE_TTL from when it was looked up. Thread-safe, bounded."""

    def __init__(self, ttl: timedelta = CACHE_TTL, max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: dict[str, tuple[datetime, GatewayKey]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str, now: datetime) -> GatewayKey | None:
        with self._lock:
            entry = self._entries.get(key_hash)
            if entry is None:
                return None
            if not self._fresh(entry[0], now):
                del self._entries[key_hash]
                return None
            return entry[1]

    def put(self, key_hash: str, key: GatewayKey, now: datetime) -> None:
        with self._lock:
            self._entries.pop(key_hash, None)
            if len(self._entries) >= self._max_entries:
                for stale in [h for h, (at, _) in self._entries.items() if not self._fresh(at, now)]:
                    del self._entries[stale]
            while len(self._entries) >= self._max_entries:
                del self._entries[next(iter(self._entries))]  # the oldest lookup
            self._entries[key_hash] = (now, key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _fresh(self, cached_at: datetime, now: datetime) -> bool:
        # A clock that went backwards also expires the entry: "at most 30 s" must hold either way.
        return cached_at <= now < cached_at + self._ttl


# One per warm container: module state survives between invocations of the same Lambda instance.
_WARM_CACHE = KeyCache()


def authenticate(
    store: KeyStore, headers: Mapping[str, str], now: datetime, *, cache: KeyCache = _WARM_CACHE
) -> GatewayKey:
    """The active key the request presents (lower-case header names), or AuthenticationError (401).

    A key found in the store is cached for 30 s, so a revocation takes effect within 30 s;
    a key not found is looked up again on every request. No message contains key material.
    """
    api_key = presented_key(headers)
    if api_key is None:
        raise AuthenticationError(MISSING_KEY_MESSAGE)
    if not _API_KEY.fullmatch(api_key):
        raise AuthenticationError(INVALID_KEY_MESSAGE)
    key_hash = hash_key(api_key)
    key = cache.get(key_hash, now)
    if key is None:
        key = store.find(key_hash)
        if key is None:
            raise AuthenticationError(INVALID_KEY_MESSAGE)
        cache.put(key_hash, key, now)
    # Revoked whatever revoked_at says relative to `now`: the operator's clock may run ahead of ours.
    if key.revoked_at is not None:
        logger.info("keys: revoked key presented", extra={"key_id": key.key_id, "tenant": key.tenant})
        raise AuthenticationError(REVOKED_KEY_MESSAGE)
    return key


def revoke_key(store: KeyStore, key_id: str, now: datetime) -> GatewayKey:
    """Revoke the key (NotFoundError if there is none). Revoking a revoked key keeps its first revocation time."""
    if not _KEY_ID.fullmatch(key_id):
        # Don't echo: the argument may be a whole API key pasted by mistake.
        raise InvalidRequestError("a key id is 12 lowercase hex characters (the part after 'cg_' in the key)")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    key = store.revoke(key_id, now.astimezone(UTC))
    if key is None:
        raise NotFoundError(f"no gateway key with id {key_id}")
    logger.info("keys: key revoked", extra={"key_id": key_id, "tenant": key.tenant})
    return key


def list_keys(store: KeyStore) -> list[GatewayKey]:
    """Every key, revoked ones included, by tenant then creation time."""
    return sorted(store.list_keys(), key=lambda key: (key.tenant, key.created_at, key.key_id))
