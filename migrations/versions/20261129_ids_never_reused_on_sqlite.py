"""SQLite: sales and model versions get AUTOINCREMENT, so that no id is ever handed out twice.

Without it SQLite gives the id of a deleted newest row to the next insert, and a retried
DELETE, an Idempotency-Key's replay or a worker's cached model version names another row.
PostgreSQL's sequences never reuse a number: nothing changes there. SQLite cannot add
AUTOINCREMENT to a table, so the two tables are rebuilt (rows, indexes and constraints kept;
the sequence starts above the highest id).

Revision ID: 7f265166f393
Revises: b68826454367
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "7f265166f393"
down_revision: str | None = "b68826454367"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("model_versions", "sales")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # The migration runs in a transaction, where foreign_keys cannot be switched off: defer
    # the checks to the commit instead, when every table is back under its name.
    op.execute("PRAGMA defer_foreign_keys = ON")
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
