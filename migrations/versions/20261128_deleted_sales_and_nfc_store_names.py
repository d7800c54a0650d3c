"""Deleted sales, for the live accuracy every process keeps; store names in NFC.

Revision ID: fba6cd6cdd1a
Revises: 4a2f2fef7601
Create Date: 2026-11-28 22:53:33.054206
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fba6cd6cdd1a"
down_revision: str | None = "4a2f2fef7601"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deleted_sales",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sale_id", sa.BigInteger(), nullable=False),
        sa.Column("carats", sa.Double(), nullable=False),
        sa.Column("price_cents", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_deleted_sales")),
    )
    op.create_index(op.f("ix_deleted_sales_deleted_at"), "deleted_sales", ["deleted_at"])

    # Names are compared in NFC from now on; a name that would collide with another once
    # normalised keeps its store id as a suffix, so that no store is lost.
    stores = sa.table("stores", sa.column("id", sa.BigInteger), sa.column("name", sa.String))
    connection = op.get_bind()
    rows = connection.execute(sa.select(stores.c.id, stores.c.name).order_by(stores.c.id))
    taken = set()
    renames = []
    for store_id, name in rows:
        normal = unicodedata.normalize("NFC", name)
        if normal in taken:
            normal = f"{normal[:90]} ({store_id})"
        taken.add(normal)
        if normal != name:
            renames.append({"store_id": store_id, "name": normal})
    if renames:
        rename = stores.update().where(stores.c.id == sa.bindparam("store_id"))
        # Through names no store can have (the API never took control characters), so that
        # no rename collides with one not yet made.
        placeholders = [
            {"store_id": r["store_id"], "name": f"\x01{r['store_id']}"} for r in renames
        ]
        connection.execute(rename, placeholders)
        connection.execute(rename, renames)


def downgrade() -> None:
    op.drop_index(op.f("ix_deleted_sales_deleted_at"), table_name="deleted_sales")
    op.drop_table("deleted_sales")
