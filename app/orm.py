"""Tables, as SQLAlchemy 2.x typed ORM classes. Alembic migrations create them."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.fields import NAME_MAX_LENGTH

# BIGINT ids, except that SQLite only auto-increments an INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")
# Without AUTOINCREMENT SQLite gives the id of a deleted newest row to the next one: a retried
# DELETE, an Idempotency-Key's replay or a cached model version would then name another row.
# (PostgreSQL's sequences never hand a number out twice.)
NEVER_REUSED_IDS = {"sqlite_autoincrement": True}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UTCDateTime}


class Store(Base):
    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # SHA-256 of the key; NULL once the key is revoked.
    api_key_hash: Mapped[str | None] = mapped_column(String(64), unique=True)


class AdminKey(Base):
    """The admin key generated at first start when none is configured."""

    __tablename__ = "admin_keys"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Sale(Base):
    __tablename__ = "sales"
    __table_args__ = (
        CheckConstraint("carats > 0", name="carats_positive"),
        CheckConstraint("price_cents > 0", name="price_positive"),
        Index("ix_sales_store_id_id", "store_id", "id"),
        Index("ix_sales_sold_at", "sold_at"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="RESTRICT"))
    carats: Mapped[float] = mapped_column(Double)
    # Money is exact: whole cents in a 64-bit integer.
    price_cents: Mapped[int] = mapped_column(BigInteger)
    sold_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeletedSale(Base):
    """What a deleted sale was, so that every process can take it out of the live accuracy
    it keeps (app/services/live.py); purged after a day."""

    __tablename__ = "deleted_sales"

    seq: Mapped[int] = mapped_column(Id, primary_key=True)
    sale_id: Mapped[int] = mapped_column(BigInteger)
    carats: Mapped[float] = mapped_column(Double)
    price_cents: Mapped[int] = mapped_column(BigInteger)
    deleted_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class IdempotencyKey(Base):
    """A client's Idempotency-Key with the response it got, committed with the write itself."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    scope: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class VersionStatus(StrEnum):
    """How a training run ended: at its tolerance, at the end of a fixed budget it was given
    (tolerance 0, or epochs), or out of iterations before its tolerance (never activated)."""

    converged = "converged"
    completed = "completed"
    not_converged = "not_converged"


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (NEVER_REUSED_IDS,)

    version: Mapped[int] = mapped_column(Id, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[VersionStatus] = mapped_column(
        Enum(VersionStatus, native_enum=False, create_constraint=False, length=20)
    )
    method: Mapped[str] = mapped_column(String(20))
    parameters: Mapped[dict[str, Any]]
    filters: Mapped[dict[str, Any]]
    silver_price: Mapped[float] = mapped_column(Double)
    gold_price_per_carat: Mapped[float] = mapped_column(Double)
    metrics: Mapped[dict[str, Any]]
    iterations: Mapped[int] = mapped_column(Integer)
    converged: Mapped[bool] = mapped_column(Boolean)
    n_samples: Mapped[int] = mapped_column(BigInteger)
    training_seconds: Mapped[float] = mapped_column(Double)
    cost_history: Mapped[dict[str, Any]]
    # The fitted estimator's serialised form: what a worker loads to predict.
    estimator: Mapped[dict[str, Any]]
    # Highest sale id when the fit read the sales; later sales measure how it does live.
    # Indexed: the live accuracy reads every version's, and the index holds them alone.
    trained_through_sale_id: Mapped[int | None] = mapped_column(BigInteger, index=True)


class ActiveModel(Base):
    """The one pointer to the serving version; activation is an UPDATE of this row."""

    __tablename__ = "active_model"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    version: Mapped[int | None] = mapped_column(ForeignKey("model_versions.version"))
    activated_at: Mapped[datetime | None]


class TrainingLease(Base):
    """Who is training now, on SQLite (PostgreSQL uses an advisory lock instead).

    A lease that outlives a killed process expires and can be taken over.
    """

    __tablename__ = "training_lease"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    holder: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None]
