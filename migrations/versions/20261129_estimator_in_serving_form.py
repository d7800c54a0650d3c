"""Model versions keep their fit report and cost history once: the estimator column holds the
serving form, the metrics and cost_history columns the rest.

Revision ID: b68826454367
Revises: fba6cd6cdd1a
Create Date: 2026-11-29 01:02:47.751532
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b68826454367"
down_revision: str | None = "fba6cd6cdd1a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The formats as they were written when this revision was made (models/serialization.py).
WHOLE, SERVING = "ring-price-regressor/1", "ring-price-regressor/serving-1"

versions = sa.table(
    "model_versions",
    sa.column("version", sa.BigInteger),
    sa.column("estimator", sa.JSON),
    sa.column("metrics", sa.JSON),
    sa.column("cost_history", sa.JSON),
)


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(versions.c.version, versions.c.estimator))
    for version, estimator in rows:
        if estimator.get("format") != WHOLE:
            continue
        serving = {k: v for k, v in estimator.items() if k not in ("cost_history", "report")}
        serving["format"] = SERVING
        connection.execute(
            versions.update().where(versions.c.version == version).values(estimator=serving)
        )


def downgrade() -> None:
    # The whole form again, from the columns that kept the report and the history.
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(
            versions.c.version, versions.c.estimator, versions.c.metrics, versions.c.cost_history
        )
    )
    report_keys = (
        "n_samples", "cost", "mse", "rmse", "mae", "r2", "residual_std_error",
        "silver_std_error", "gold_std_error", "silver_ci", "gold_ci", "level",
    )  # fmt: skip
    for version, estimator, metrics, history in rows:
        if estimator.get("format") != SERVING:
            continue
        whole = {
            **estimator,
            "format": WHOLE,
            "report": {k: metrics.get(k) for k in report_keys},
            "cost_history": {"iterations": history["iterations"], "cost": history["cost"]},
        }
        connection.execute(
            versions.update().where(versions.c.version == version).values(estimator=whole)
        )
