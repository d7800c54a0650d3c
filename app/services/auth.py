"""Who holds a key: the admin, a store, or nobody we know."""

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import Unauthorized
from app.orm import AdminKey, Store
from app.security import MAX_KEY_LENGTH, Caller, hash_key, keys_match, new_key


def presented_key(key: str | None) -> str:
    """The key a request presents in X-API-Key; Unauthorized when it presents none."""
    if not key:
        raise Unauthorized("missing X-API-Key header")
    return key


def authenticate(session: Session, settings: Settings, key: str | None) -> Caller:
    """Who holds the key; Unauthorized for none, or one that is unknown or revoked."""
    key = presented_key(key)
    # No key is longer: a wrong key, not a malformed request.
    caller = identify(session, settings, key) if len(key) <= MAX_KEY_LENGTH else None
    if caller is None:
        raise Unauthorized("unknown or revoked API key")
    return caller


# Built once and run on the session's connection, without the ORM: every request with a key
# asks, and building and running them through the ORM took five times as long (100 us).
_ADMINS, _STORES = AdminKey.__table__, Store.__table__
_ADMIN_HASH = select(_ADMINS.c.key_hash).where(_ADMINS.c.key_hash == bindparam("digest"))
_STORE_HASH = select(_STORES.c.id, _STORES.c.api_key_hash).where(
    _STORES.c.api_key_hash == bindparam("digest")
)


def identify(session: Session, settings: Settings, key: str) -> Caller | None:
    admin_key = settings.ADMIN_API_KEY
    if admin_key is not None and keys_match(key, admin_key.get_secret_value()):
        return Caller("admin")
    digest = hash_key(key)
    connection = session.connection()
    if settings.ADMIN_API_KEY is None:
        admin_hash = connection.execute(_ADMIN_HASH, {"digest": digest}).scalar()
        if admin_hash is not None and keys_match(digest, admin_hash):
            return Caller("admin")
    store = connection.execute(_STORE_HASH, {"digest": digest}).first()
    if store is not None and store.api_key_hash and keys_match(digest, store.api_key_hash):
        return Caller("store", store.id)
    return None


def ensure_admin_key(session: Session, settings: Settings) -> str | None:
    """Generate the admin key on first start when none is configured.

    Returns the new key (to be shown once) or None when one already exists or is configured.
    """
    if settings.ADMIN_API_KEY is not None:
        return None
    if session.scalar(select(AdminKey.id).limit(1)) is not None:
        return None
    return rotate_admin_key(session)


def rotate_admin_key(session: Session) -> str:
    """Replace every stored admin key with a new one and return it."""
    for old in session.scalars(select(AdminKey)):
        session.delete(old)
    key = new_key("admin")
    session.add(AdminKey(key_hash=hash_key(key)))
    session.flush()
    return key
