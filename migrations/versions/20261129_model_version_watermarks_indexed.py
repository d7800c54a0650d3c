"""Model versions' watermarks get an index: each process's live accuracy refresh reads every
version's trained_through_sale_id, and the index holds them without the large JSON columns
(fit report, cost history, estimator) a scan of the table would read with them.

Every other query the service makes already had its index; README.md lists them ("How it
works").

Revision ID: 3c1d52e0a9b7
Revises: 7f265166f393
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3c1d52e0a9b7"
down_revision: str | None = "7f265166f393"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_model_versions_trained_through_sale_id"


def upgrade() -> None:
    op.create_index(INDEX, "model_versions", ["trained_through_sale_id"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="model_versions")
