"""Training lease: one row saying who trains now, for SQLite.

Revision ID: 4a2f2fef7601
Revises: aeb0df264f34
Create Date: 2026-11-26 06:11:12.675831
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4a2f2fef7601"
down_revision: str | None = "aeb0df264f34"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "training_lease",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_training_lease_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_lease")),
    )
    op.execute("INSERT INTO training_lease (id, holder, expires_at) VALUES (1, NULL, NULL)")


def downgrade() -> None:
    op.drop_table("training_lease")
