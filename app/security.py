"""API keys: random, stored only as hashes, compared in constant time."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from app.errors import Forbidden

# Keys are made by new_key (about 50 characters) or configured (an admin key of 16 or more).
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class Caller:
    role: Literal["admin", "store"]
    store_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def check_store(self, store_id: int | None) -> None:
        """Refuse a store key acting for another store (the admin acts for any)."""
        if not self.is_admin and store_id is not None and store_id != self.store_id:
            raise Forbidden(f"this key belongs to store {self.store_id}, not store {store_id}")

    @property
    def scope(self) -> str:
        """Namespace for things a caller owns, such as idempotency keys."""
        return "admin" if self.is_admin else f"store:{self.store_id}"


def new_key(kind: Literal["admin", "store"]) -> str:
    # 256 random bits; the prefix tells a human which kind of key they hold.
    return f"jf_{kind}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    # Keys carry 256 bits of entropy, so a fast unsalted hash cannot be brute-forced.
    return hashlib.sha256(key.encode()).hexdigest()


def keys_match(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
